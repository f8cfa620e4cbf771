"""Checks a stack runs on its arguments before the scan is traced.

``check_block_step`` evaluates one layer of the block abstractly
(``jax.eval_shape``, so nothing is computed) on one example's carry and one
layer's inputs, and reports a carry that changes type across a layer, a block
that does not return ``(carry, y)``, or an RNG stream the call does not
provide, naming the leaf and the fix, before ``jax.lax.scan`` fails with its
own message.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from ._errors import (
    BatchSizeError,
    BlockOutputError,
    CarryChangedError,
    LayerInputsError,
)
from ._options import BatchMode, LayerInputs, StackOptions

__all__ = ["check_block_step", "check_layer_inputs", "check_same_batch"]


def _leaves(tree):
    return jax.tree_util.tree_flatten_with_path(tree)[0]


def _batched(options: StackOptions) -> bool:
    return options.batch is not BatchMode.NONE


def _xs_per_example(options: StackOptions) -> bool:
    return _batched(options) and options.layer_inputs is LayerInputs.PER_EXAMPLE


def check_same_batch(carry, xs, options: StackOptions) -> None:
    """Every batched leaf (the carry's, and per-example ``xs``) has the same leading size."""
    if not _batched(options):
        return
    named = [("carry" + jax.tree_util.keystr(p), leaf) for p, leaf in _leaves(carry)]
    if _xs_per_example(options):
        named += [("xs" + jax.tree_util.keystr(p), leaf) for p, leaf in _leaves(xs)]
    sizes = {}
    for name, leaf in named:
        if jnp.ndim(leaf) == 0:
            raise BatchSizeError(
                f"{name} is a scalar, but the stack is batched ({options.batch}) and maps over "
                f"axis 0 of every carry leaf; give it a leading batch axis, or use "
                f"StackOptions(batch=BatchMode.NONE)"
            )
        sizes.setdefault(jnp.shape(leaf)[0], name)
    if len(sizes) > 1:
        seen = ", ".join(f"{name} has {size}" for size, name in sizes.items())
        raise BatchSizeError(
            f"the batch axis (axis 0) must have the same size in every carry leaf"
            f"{' and xs leaf' if _xs_per_example(options) else ''}: {seen}"
        )


def check_layer_inputs(xs, options: StackOptions) -> None:
    """Each leaf of ``xs`` has ``num_layers`` entries along its layer axis."""
    axis = 1 if _xs_per_example(options) else 0
    where = "(B, N, ...)" if axis else "(N, ...)"
    for path, leaf in _leaves(xs):
        shape = jnp.shape(leaf)
        if len(shape) <= axis or shape[axis] != options.num_layers:
            raise LayerInputsError(
                f"per-layer input xs{jax.tree_util.keystr(path)} has shape {shape}, but its "
                f"layer axis (axis {axis}, layout {where}) must be num_layers="
                f"{options.num_layers} long; give one slice per layer (e.g. jnp.stack of "
                f"{options.num_layers} arrays), or close over inputs that every layer shares"
            )


def _drop_axis(tree, axis: int):
    def drop(leaf):
        shape = jnp.shape(leaf)
        return jax.ShapeDtypeStruct(shape[:axis] + shape[axis + 1 :], jnp.result_type(leaf))

    return jax.tree_util.tree_map(drop, tree)


def check_block_step(step: Callable, carry, xs, options: StackOptions) -> None:
    """Evaluate one layer abstractly and check it returns ``(carry, y)`` with an unchanged carry.

    ``step(carry, x, index)`` runs one layer on one example (under a vmap of size
    1 when the stack is batched) and returns what the block returns.
    """
    batched = _batched(options)

    def abstract(leaf):
        shape = jnp.shape(leaf)
        shape = (1,) + shape[1:] if batched else shape
        return jax.ShapeDtypeStruct(shape, jnp.result_type(leaf))

    # One example (a batch of 1 under the vmap) and one layer's slice of xs.
    carry_one = jax.tree_util.tree_map(abstract, carry)
    x_one = _drop_axis(xs, 1 if _xs_per_example(options) else 0)
    if _xs_per_example(options):
        x_one = jax.tree_util.tree_map(
            lambda s: jax.ShapeDtypeStruct((1,) + s.shape[1:], s.dtype), x_one
        )

    def one(c, x):
        return step(c, x, jnp.zeros((), jnp.int32))

    if batched:
        one = jax.vmap(
            one,
            in_axes=(0, 0 if _xs_per_example(options) else None),
            axis_name=options.batch_axis_name,
        )
    out = jax.eval_shape(one, carry_one, x_one)
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        what = (
            "a single array"
            if isinstance(out, jax.ShapeDtypeStruct)
            else f"a {type(out).__name__}"
            + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else "")
        )
        raise BlockOutputError(
            f"the block must return a pair (carry, y) (y may be None), but returned {what}; "
            f"end its __call__ with `return carry, None` for a carry-only layer"
        )
    new_carry = out[0]
    before = jax.tree_util.tree_structure(carry_one)
    after = jax.tree_util.tree_structure(new_carry)
    if before != after:
        raise CarryChangedError(
            f"the block returns a carry with structure {after} but was given {before}; a scan "
            f"needs the carry to keep its structure from layer to layer: return the carry "
            f"with the same keys and nesting, and put other outputs in y"
        )
    strip = (lambda s: s.shape[1:]) if batched else (lambda s: s.shape)
    for (path, old), new in zip(_leaves(carry_one), jax.tree_util.tree_leaves(new_carry)):
        if strip(old) != strip(new) or old.dtype != new.dtype:
            old_t = f"{jnp.dtype(old.dtype).name}{list(strip(old))}"
            new_t = f"{jnp.dtype(new.dtype).name}{list(strip(new))}"
            what = "shape" if strip(old) != strip(new) else "dtype"
            fix = (
                "make the block's output width equal to its input width (for a Dense "
                "layer, features == x.shape[-1]), or project the input to that width before "
                "the stack"
                if what == "shape"
                else "cast the block's output back to the carry's dtype"
            )
            raise CarryChangedError(
                f"the block changes carry{jax.tree_util.keystr(path)} from {old_t} to "
                f"{new_t} across one layer (per example); a scan needs the carry to keep its "
                f"{what} from layer to layer: {fix}"
            )
