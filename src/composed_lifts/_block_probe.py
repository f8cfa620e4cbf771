"""The block probe: one layer evaluated abstractly before a stack's scan is traced.

``check_block_step`` evaluates one layer of the block abstractly
(``jax.eval_shape``, so nothing is computed) on one example's carry and one
layer's inputs, and reports a carry that changes type across a layer, a block
that does not return ``(carry, y)``, a carry without a batch axis, or a shared
collection updated per example, naming the leaf and the fix, before
``jax.lax.scan`` or ``jax.vmap`` fail with their own messages. The checks take
only what they need: whether a vmap maps the batch (``batched``), whether it maps
``xs`` too (``xs_per_example``), and the vmap's ``axis_name``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from .errors import (
    BatchSizeError,
    BlockOutputError,
    CarryChangedError,
    ComposedLiftsError,
    LayerInputsError,
    MissingBatchAxisError,
    SharedCollectionError,
)

__all__ = [
    "check_block_step",
    "check_layer_inputs",
    "check_same_batch",
    "drop_axis",
    "leaf_type",
]


def _leaves(tree):
    return jax.tree_util.tree_flatten_with_path(tree)[0]


def leaf_type(shape, dtype) -> str:
    """``float32[4, 8]``: a leaf's dtype and shape as the checks print them."""
    return f"{jnp.dtype(dtype).name}{list(shape)}"


def check_same_batch(carry, xs, *, batched: bool, xs_per_example: bool) -> None:
    """Every batched leaf (the carry's, and per-example ``xs``) has the same leading size."""
    if not batched:
        return
    named = [("carry" + jax.tree_util.keystr(p), leaf) for p, leaf in _leaves(carry)]
    if xs_per_example:
        named += [("xs" + jax.tree_util.keystr(p), leaf) for p, leaf in _leaves(xs)]
    sizes: dict[int, str] = {}
    for name, leaf in named:
        if jnp.ndim(leaf) == 0:
            raise MissingBatchAxisError(name, ())
        sizes.setdefault(jnp.shape(leaf)[0], name)
    if len(sizes) > 1:
        raise BatchSizeError({name: size for size, name in sizes.items()})


def check_layer_inputs(xs, *, num_layers: int, xs_per_example: bool) -> None:
    """Each leaf of ``xs`` has ``num_layers`` entries along its layer axis."""
    axis = 1 if xs_per_example else 0
    for path, leaf in _leaves(xs):
        shape = jnp.shape(leaf)
        if len(shape) <= axis or shape[axis] != num_layers:
            raise LayerInputsError(f"xs{jax.tree_util.keystr(path)}", shape, axis, num_layers)


def drop_axis(tree, axis: int):
    """Abstract leaves of ``tree`` without ``axis`` (one layer's slice of ``xs``)."""

    def drop(leaf):
        shape = jnp.shape(leaf)
        return jax.ShapeDtypeStruct(shape[:axis] + shape[axis + 1 :], jnp.result_type(leaf))

    return jax.tree_util.tree_map(drop, tree)


def _pair_text(out: Any) -> str:
    if isinstance(out, jax.ShapeDtypeStruct):
        return "a single array"
    length = f" of length {len(out)}" if isinstance(out, (tuple, list)) else ""
    return f"a {type(out).__name__}{length}"


def check_block_step(
    step: Callable,
    carry,
    xs,
    *,
    batched: bool,
    xs_per_example: bool = False,
    axis_name: str | None = None,
    per_example_state: bool = True,
) -> None:
    """Evaluate one layer abstractly and check it returns ``(carry, y)`` with an unchanged carry.

    ``step(carry, x, index)`` runs one layer on one example (under a vmap of size
    1 named ``axis_name`` when ``batched``) and returns ``(out, shared)``: what the
    block returns, and the updated values of the collections a batched stack
    shares across the batch (a dict, empty when none), which must not depend on
    the example. ``per_example_state``: whether the stack can keep such a collection
    per example instead (Linen's ``collection_axes``), for the error's fix.
    """

    def abstract(leaf):
        shape = jnp.shape(leaf)
        shape = (1,) + shape[1:] if batched else shape
        return jax.ShapeDtypeStruct(shape, jnp.result_type(leaf))

    # One example (a batch of 1 under the vmap) and one layer's slice of xs.
    carry_one = jax.tree_util.tree_map(abstract, carry)
    x_one = drop_axis(xs, 1 if xs_per_example else 0)
    if xs_per_example:
        x_one = jax.tree_util.tree_map(
            lambda s: jax.ShapeDtypeStruct((1,) + s.shape[1:], s.dtype), x_one
        )

    def one(c, x):
        return step(c, x, jnp.zeros((), jnp.int32))

    def lifted(out_axes):
        if not batched:
            return one
        xs_axis = 0 if xs_per_example else None
        return jax.vmap(one, in_axes=(0, xs_axis), out_axes=out_axes, axis_name=axis_name)

    try:
        out, shared = jax.eval_shape(lifted(0), carry_one, x_one)
    except ComposedLiftsError:
        raise
    except Exception as err:  # the block failed on one example: a carry without a batch axis?
        leaves = _leaves(carry)
        if batched and all(jnp.ndim(leaf) == 1 for _, leaf in leaves):
            path, leaf = leaves[0]
            cause = f"{type(err).__name__}: {str(err).splitlines()[0]}"
            leaf_name = "carry" + jax.tree_util.keystr(path)
            raise MissingBatchAxisError(leaf_name, jnp.shape(leaf), cause) from err
        raise
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise BlockOutputError(_pair_text(out))
    new_carry = out[0]
    before = jax.tree_util.tree_structure(carry_one)
    after = jax.tree_util.tree_structure(new_carry)
    if before != after:  # type: ignore[operator]  # PyTreeDef compares; its stub does not say
        raise CarryChangedError("structure", "carry", str(before), str(after))
    strip = (lambda s: s.shape[1:]) if batched else (lambda s: s.shape)
    for (path, old), new in zip(_leaves(carry_one), jax.tree_util.tree_leaves(new_carry)):
        if strip(old) != strip(new) or old.dtype != new.dtype:
            kind = "shape" if strip(old) != strip(new) else "dtype"
            raise CarryChangedError(
                kind,
                "carry" + jax.tree_util.keystr(path),
                leaf_type(strip(old), old.dtype),
                leaf_type(strip(new), new.dtype),
            )
    if batched and shared:
        try:  # the shared collections' updates must not be mapped over the batch
            jax.eval_shape(lifted((0, None)), carry_one, x_one)
        except ValueError as err:
            raise SharedCollectionError(
                sorted(shared), axis_name or "batch", per_example_state
            ) from err
