"""The doctor's inputs made uniform: a block (class and fields) and an abstract batched carry."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from .._block_probe import check_block_step, check_same_batch, leaf_type
from .._block_spec import BlockSpec
from ..errors import ArgumentRangeError, ArgumentTypeError, BlockCallError, ComposedLiftsError
from ._spec import Composition

__all__ = [
    "BlockSpec",
    "as_block",
    "as_carry",
    "carry_text",
    "check_one_layer",
    "one_layer_init",
    "per_example",
    "with_batch",
]


def as_block(block) -> BlockSpec:
    """Accept a Linen module instance (``Block(features=8)``) or a class without required fields."""
    if isinstance(block, type) and issubclass(block, nn.Module):
        try:
            block = block()
        except TypeError as err:
            raise ArgumentTypeError(
                "block",
                "a module instance with its field values",
                f"the class {block.__name__}, which needs field values ({err})",
                f"pass an instance, e.g. {block.__name__}(features=8)",
            ) from None
    if not isinstance(block, nn.Module):
        raise ArgumentTypeError(
            "block",
            "a Linen module instance such as Block(features=8)",
            f"{type(block).__name__} {block!r}",
        )
    return BlockSpec.of(block)


def _abstract(leaf):
    if isinstance(leaf, jax.ShapeDtypeStruct):
        return leaf
    if isinstance(leaf, (jax.Array, np.ndarray, np.generic)):
        return jax.ShapeDtypeStruct(np.shape(leaf), leaf.dtype)
    raise ArgumentTypeError(
        "carry leaves",
        "arrays or jax.ShapeDtypeStruct",
        f"{type(leaf).__name__} {leaf!r}",
        "for one float32 carry pass its shape, e.g. carry=(4, 8)",
    )


def as_carry(carry, composition: Composition):
    """An abstract carry (a pytree of ``ShapeDtypeStruct``) and its batch size B.

    ``carry`` is a shape tuple (float32), an array, a ``ShapeDtypeStruct`` or a
    pytree of those, each leaf with the batch on axis 0.
    """
    if (
        isinstance(carry, tuple)
        and carry
        and all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in carry)
    ):
        carry = jax.ShapeDtypeStruct(tuple(int(d) for d in carry), jnp.float32)
    abstract = jax.tree_util.tree_map(_abstract, carry)
    leaves = jax.tree_util.tree_flatten_with_path(abstract)[0]
    if not leaves:
        raise ArgumentTypeError(
            "carry",
            "at least one array",
            repr(carry),
            "e.g. carry=(4, 8) for a batch of 4 examples of width 8",
        )
    for path, leaf in leaves:
        if len(leaf.shape) and leaf.shape[0] < 1:
            raise ArgumentRangeError(
                f"carry{jax.tree_util.keystr(path)}",
                "at least one example on axis 0",
                f"shape {leaf.shape}",
                "e.g. carry=(4, 8)",
            )
    check_same_batch(abstract, None, batched=True, xs_per_example=False)
    return abstract, leaves[0][1].shape[0]


def carry_text(abstract) -> str:
    """``float32[4, 8]`` for one leaf, a dict of those for a pytree carry."""
    text = jax.tree_util.tree_map(lambda s: leaf_type(s.shape, s.dtype), abstract)
    return text if isinstance(text, str) else str(text)


def with_batch(carry, batch: int):
    """The abstract carry with axis 0 resized to ``batch``."""
    return jax.tree_util.tree_map(
        lambda s: jax.ShapeDtypeStruct((batch,) + tuple(s.shape[1:]), s.dtype), carry
    )


def check_one_layer(block: BlockSpec, carry, composition: Composition) -> None:
    """Evaluate one layer on one example abstractly; raise if it breaks the scan's contract.

    Raises ``BlockOutputError`` when the block does not return ``(carry, y)``,
    ``CarryChangedError`` when the carry changes structure, shape or dtype (the
    same probe, :func:`composed_lifts._block_probe.check_block_step`, that the
    stacks run before tracing), and ``BlockCallError`` when the block fails on
    the carry at all (a residual ``x + Dense(features)(x)`` of another width), and
    ``SharedCollectionError`` when an applied layer updates, per example, a collection
    the composition's vmap shares across the batch (``BatchNorm`` without ``axis_name``).
    """
    key = jax.random.PRNGKey(0)
    lifts = composition.lifts()

    def step(c, x, index):
        out, variables = block.make().init_with_output(key, c, None)
        shared = [
            name
            for name in variables
            if name != "params" and lifts.lifted(name) and lifts.batch_axis(name) is None
        ]
        if not (composition.batched and shared):
            return out, {}
        out, state = block.make().apply(variables, c, None, mutable=True)
        return out, {name: state[name] for name in shared if name in state}

    try:
        check_block_step(
            step,
            carry,
            None,
            batched=composition.batched,
            axis_name=composition.batch_axis_name,
        )
    except ComposedLiftsError:
        raise
    except Exception as err:  # the block's own failure, reported with the block and carry
        cause = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        one = per_example(carry, composition)
        raise BlockCallError(block.text(), carry_text(one), cause) from err


def one_layer_init(block: BlockSpec, composition: Composition):
    """``init(key, carry)`` of one block on one example's carry (under a vmap of one example
    named ``batch_axis_name`` when the composition is batched, so that collectives resolve)."""

    def init(key, carry):
        return block.make().init(key, carry, None)

    if not composition.batched:
        return init

    def one(key, carry):
        batched = jax.tree_util.tree_map(lambda a: a[None], carry)
        variables = jax.vmap(init, in_axes=(None, 0), axis_name=composition.batch_axis_name)(
            key, batched
        )
        return jax.tree_util.tree_map(lambda a: a[0], variables)

    return one


def per_example(carry, composition: Composition):
    """The carry one block sees: without the batch axis under a vmap, whole otherwise."""
    if not composition.batched:
        return carry
    return jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(s.shape[1:], s.dtype), carry)
