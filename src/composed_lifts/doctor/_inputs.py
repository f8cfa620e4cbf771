"""The doctor's inputs made uniform: a block (class and fields) and an abstract batched carry."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from .._block_probe import check_block_step, check_same_batch
from .._errors import ArgumentTypeError, BatchSizeError
from .._options import BatchMode, StackOptions
from ._spec import Composition

__all__ = ["BlockSpec", "as_block", "as_carry", "check_one_layer", "per_example", "with_batch"]


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """A Linen block class and the field values to build it with."""

    cls: type[nn.Module]
    fields: tuple[tuple[str, object], ...]

    @property
    def name(self) -> str:
        return self.cls.__name__

    def make(self) -> nn.Module:
        return self.cls(**dict(self.fields), parent=None)

    def text(self) -> str:
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in self.fields)})"


def as_block(block) -> BlockSpec:
    """Accept a Linen module instance (``Block(features=8)``) or a class without required fields."""
    if isinstance(block, type) and issubclass(block, nn.Module):
        try:
            block = block()
        except TypeError as err:
            raise ArgumentTypeError(
                f"block {block.__name__} needs field values ({err}); pass an instance, e.g. "
                f"{block.__name__}(features=8), and the doctor will use its fields"
            ) from None
    if not isinstance(block, nn.Module):
        raise ArgumentTypeError(
            f"block must be a Linen module instance such as Block(features=8), got "
            f"{type(block).__name__} {block!r}"
        )
    cls = type(block)
    fields = tuple(
        (f.name, getattr(block, f.name))
        for f in dataclasses.fields(cls)
        if f.init and f.name not in ("parent", "name")
    )
    return BlockSpec(cls, fields)


def _abstract(leaf):
    if isinstance(leaf, jax.ShapeDtypeStruct):
        return leaf
    if isinstance(leaf, (jax.Array, np.ndarray, np.generic)):
        return jax.ShapeDtypeStruct(np.shape(leaf), leaf.dtype)
    raise ArgumentTypeError(
        f"carry leaves must be arrays or jax.ShapeDtypeStruct, got {type(leaf).__name__} "
        f"{leaf!r}; for one float32 carry pass its shape, e.g. carry=(4, 8)"
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
            f"carry must hold at least one array, got {carry!r}; e.g. carry=(4, 8) for a "
            f"batch of 4 examples of width 8"
        )
    for path, leaf in leaves:
        if len(leaf.shape) == 0 or leaf.shape[0] < 1:
            raise BatchSizeError(
                f"carry{jax.tree_util.keystr(path)} has shape {leaf.shape}; the doctor needs the "
                f"batch on axis 0 with at least one example, e.g. carry=(4, 8)"
            )
    check_same_batch(abstract, None, StackOptions(num_layers=1))
    return abstract, leaves[0][1].shape[0]


def with_batch(carry, batch: int):
    """The abstract carry with axis 0 resized to ``batch``."""
    return jax.tree_util.tree_map(
        lambda s: jax.ShapeDtypeStruct((batch,) + tuple(s.shape[1:]), s.dtype), carry
    )


def check_one_layer(block: BlockSpec, carry, composition: Composition) -> None:
    """Evaluate one layer on one example abstractly; raise if it breaks the scan's contract.

    Raises ``BlockOutputError`` when the block does not return ``(carry, y)``
    and ``CarryChangedError`` when the carry changes structure, shape or dtype:
    the same probe (:func:`composed_lifts._block_probe.check_block_step`) the stacks
    run before tracing, here on the block as the doctor was given it.
    """
    batch = BatchMode.SHARED if composition.batched else BatchMode.NONE
    key = jax.random.PRNGKey(0)

    def step(c, x, index):
        return block.make().init_with_output(key, c, None)[0]

    check_block_step(step, carry, None, StackOptions(num_layers=1, batch=batch))


def per_example(carry, composition: Composition):
    """The carry one block sees: without the batch axis under a vmap, whole otherwise."""
    if not composition.batched:
        return carry
    return jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(s.shape[1:], s.dtype), carry)
