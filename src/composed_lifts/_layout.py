"""Param layout: each leaf's path, shape, dtype and the name of each axis.

Axis names follow Flax conventions for the trailing (per-layer) axes:
``kernel`` leaves end in ``(in..., out)``, ``bias`` in ``(out,)``, anything
else in ``feature`` axes; the leading axes the lifts add are named by the
caller (``("layer",)`` for a scanned stack, ``("batch", "layer")`` for an
ensemble).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

__all__ = ["LeafLayout", "param_layout"]


@dataclasses.dataclass(frozen=True)
class LeafLayout:
    """One param leaf: where it lives, its shape and dtype, and what each axis means."""

    path: str
    shape: tuple[int, ...]
    dtype: str
    axes: tuple[str, ...]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize

    def as_dict(self) -> dict:
        return {
            "path": self.path,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "axes": list(self.axes),
            "size": self.size,
            "bytes": self.nbytes,
        }


def _trailing_names(leaf_name: str, ndim: int) -> tuple[str, ...]:
    if ndim <= 0:
        return ()
    if leaf_name == "kernel":
        return ("in",) * (ndim - 1) + ("out",) if ndim > 1 else ("out",)
    if leaf_name == "bias":
        return ("feature",) * (ndim - 1) + ("out",)
    return ("feature",) * ndim


def param_layout(variables, leading_axes: tuple[str, ...] = ()) -> list[LeafLayout]:
    """Describe every leaf of ``variables`` (arrays or ``jax.ShapeDtypeStruct``).

    >>> import jax.numpy as jnp
    >>> tree = {"params": {"Dense_0": {"kernel": jnp.zeros((4, 8, 8)), "bias": jnp.zeros((4, 8))}}}
    >>> for leaf in param_layout(tree, leading_axes=("layer",)):
    ...     print(leaf.path, leaf.shape, leaf.axes)
    params/Dense_0/bias (4, 8) ('layer', 'out')
    params/Dense_0/kernel (4, 8, 8) ('layer', 'in', 'out')
    """
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]:
        keys = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]
        shape = tuple(int(d) for d in leaf.shape)
        lead = leading_axes[: len(shape)]
        names = lead + _trailing_names(keys[-1] if keys else "", len(shape) - len(lead))
        out.append(LeafLayout("/".join(keys), shape, np.dtype(leaf.dtype).name, names))
    return out
