"""Exact conversions between an NNX stack and the Linen stack: ``nnx_to_linen`` / ``linen_to_nnx``.

They move params between an :class:`~composed_lifts.NNXStack` and the Linen
stack's ``{"params": ...}`` tree, when the NNX block's attribute names match the
Linen block's submodule names (``self.Dense_0 = nnx.Linear(...)``). Arrays are
moved, never recomputed, so round trips are exact (``==``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from ._stack_nnx import NNXStack
from .errors import ArgumentTypeError, LayoutMismatchError

__all__ = ["linen_to_nnx", "nnx_to_linen"]


def _flat(tree):
    return jax.tree_util.tree_flatten_with_path(tree)[0]


def nnx_to_linen(stack: NNXStack) -> dict[str, Any]:
    """The params of an NNX stack as the Linen stack's variables ``{"params": {...}}``."""
    return {"params": nnx.to_pure_dict(nnx.state(_layers(stack), nnx.Param))}


def linen_to_nnx(variables: Mapping[str, Any], stack: NNXStack) -> NNXStack:
    """A copy of NNX ``stack`` holding the params of Linen ``variables`` (``{"params": ...}``).

    Structure, shapes and dtypes must match exactly; the first difference is
    reported by path. Other state (RNG streams) is copied from ``stack``.
    """
    if not isinstance(variables, Mapping) or "params" not in variables:
        raise ArgumentTypeError(
            "variables",
            "a Linen variables dict with a 'params' collection",
            type(variables).__name__,
        )
    params = variables["params"]
    want = nnx.to_pure_dict(nnx.state(_layers(stack), nnx.Param))
    got_paths = {jax.tree_util.keystr(p): leaf for p, leaf in _flat(params)}
    want_paths = {jax.tree_util.keystr(p): leaf for p, leaf in _flat(want)}
    if set(got_paths) != set(want_paths):
        missing = sorted(set(want_paths) - set(got_paths))
        extra = sorted(set(got_paths) - set(want_paths))
        raise LayoutMismatchError(
            "keys",
            "the Linen params",
            "the NNX stack's params",
            missing=missing,
            unexpected=extra,
            fix="name the NNX block's attributes as the Linen block's submodules (e.g. "
            "self.Dense_0 = nnx.Linear(...))",
        )
    for path, leaf in got_paths.items():
        ref = want_paths[path]
        if jnp.shape(leaf) != jnp.shape(ref) or jnp.result_type(leaf) != jnp.result_type(ref):
            raise LayoutMismatchError(
                "leaf",
                f"params{path}",
                "the NNX stack",
                seen=f"{jnp.result_type(leaf)}{jnp.shape(leaf)}",
                expected=f"{jnp.result_type(ref)}{jnp.shape(ref)}",
            )
    graphdef, state = nnx.split(stack)
    param_state = nnx.state(_layers(stack), nnx.Param)
    nnx.replace_by_pure_dict(param_state, params)
    new = nnx.merge(graphdef, state, copy=True)  # never share Variables with `stack`
    nnx.update(_layers(new), param_state)
    return new


def _layers(stack):
    layers = getattr(stack, "layers", None)
    if not isinstance(layers, nnx.Module):
        raise ArgumentTypeError("stack", "an NNXStack made by nnx_stack", type(stack).__name__)
    return layers
