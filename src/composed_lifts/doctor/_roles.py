"""Axis roles found by probing: which axes move when the number of layers or the batch size moves.

A pure function of three shape trees, the same stack evaluated abstractly at
``(N, B)``, at ``(N + 1, B)`` and at ``(N, B + 2)``: an axis that follows N is
the layer axis, one that follows B a batch (ensemble) axis, one that follows
neither a feature axis. Nothing is guessed from names or sizes, so it works on
any block, and when N == B (or either equals a feature width).
"""

from __future__ import annotations

import enum
from typing import Any

import jax

from ..errors import LayoutProbeError

__all__ = ["AxisRole", "axis_roles", "path_name", "probe_sizes"]


class AxisRole(enum.Enum):
    """What one axis of a param leaf indexes.

    - ``LAYER``: the layer (scan) axis, of size N.
    - ``BATCH``: a batch (vmap) axis, of size B: one slice per example, an ensemble.
    - ``FEATURE``: an axis of the block's own param (a Dense kernel's in or out).
    - ``MIXED``: an axis that moves with both N and B (no lift built here makes one).
    """

    LAYER = "layer"
    BATCH = "batch"
    FEATURE = "feature"
    MIXED = "mixed"

    @property
    def letter(self) -> str:
        """``N``, ``B``, ``F`` or ``?``: the short label used in tables and plots."""
        return {"layer": "N", "batch": "B", "feature": "F", "mixed": "?"}[self.value]


def probe_sizes(num_layers: int, batch: int) -> tuple[int, int]:
    """The probe's other N and B: ``N + 1`` and ``B + 2`` (each differs from its base)."""
    return num_layers + 1, batch + 2


def _shapes(tree):
    return jax.tree_util.tree_flatten_with_path(tree)


def path_name(path) -> str:
    """A leaf's key path as ``params/Dense_0/kernel``."""
    keys = (getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in path)
    return "/".join(str(k) for k in keys)


def axis_roles(
    base: Any, more_layers: Any, more_batch: Any
) -> list[tuple[str, tuple[AxisRole, ...]]]:
    """Each leaf's path and axis roles from three evaluations of the same stack.

    The trees hold anything with a ``.shape`` (arrays, ``jax.ShapeDtypeStruct``).

    >>> import numpy as np
    >>> base = {"w": np.zeros((3, 3, 8))}                     # N == B == 3
    >>> more_layers = {"w": np.zeros((4, 3, 8))}
    >>> more_batch = {"w": np.zeros((3, 5, 8))}
    >>> for path, roles in axis_roles(base, more_layers, more_batch):
    ...     print(path, [r.value for r in roles])
    w ['layer', 'batch', 'feature']
    """
    leaves, treedef = _shapes(base)
    out = []
    for name, other in (("N + 1 layers", more_layers), ("B + 2 examples", more_batch)):
        if jax.tree_util.tree_structure(other) != treedef:
            raise LayoutProbeError(
                "the param tree",
                f"changes structure when the stack is evaluated with {name}: {treedef} vs "
                f"{jax.tree_util.tree_structure(other)}",
            )
    n_leaves = jax.tree_util.tree_leaves(more_layers)
    b_leaves = jax.tree_util.tree_leaves(more_batch)
    for (path, leaf), n_leaf, b_leaf in zip(leaves, n_leaves, b_leaves):
        shape, n_shape, b_shape = tuple(leaf.shape), tuple(n_leaf.shape), tuple(b_leaf.shape)
        if not len(shape) == len(n_shape) == len(b_shape):
            raise LayoutProbeError(
                f"param {path_name(path)}",
                f"has shape {shape}, but {n_shape} with one more layer and {b_shape} with two "
                f"more examples: its rank changes, so its axes have no fixed roles",
            )
        roles = []
        for d, dn, db in zip(shape, n_shape, b_shape):
            moves_n, moves_b = d != dn, d != db
            if moves_n and moves_b:
                roles.append(AxisRole.MIXED)
            elif moves_n:
                roles.append(AxisRole.LAYER)
            elif moves_b:
                roles.append(AxisRole.BATCH)
            else:
                roles.append(AxisRole.FEATURE)
        out.append((path_name(path), tuple(roles)))
    return out
