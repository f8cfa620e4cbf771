"""The seed's block and its composition of lifts, exactly as the problem states them.

``seed_model(num_layers, features)`` is::

    ScanLayer = nn.scan(Block, variable_axes={"params": 0},
                        split_rngs={"params": True}, length=num_layers)
    BatchedScanLayer = nn.vmap(ScanLayer, in_axes=0, out_axes=0,
                               variable_axes={"params": None},
                               split_rngs={"params": False})
    model = BatchedScanLayer(features=features)
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax

from ._options import StackOptions
from ._stack_linen import linen_stack

__all__ = ["Block", "seed_model"]


class Block(nn.Module):
    """One layer of the seed: ``Dense(features)`` then ``relu``; carry-only, returns ``(x, None)``.

    >>> import jax, jax.numpy as jnp
    >>> block = Block(features=3)
    >>> params = block.init(jax.random.PRNGKey(0), jnp.ones((3,)), None)
    >>> jax.tree_util.tree_map(jnp.shape, params)
    {'params': {'Dense_0': {'bias': (3,), 'kernel': (3, 3)}}}
    """

    features: int

    @nn.compact
    def __call__(self, x: jax.Array, _: None) -> tuple[jax.Array, None]:
        x = nn.relu(nn.Dense(self.features)(x))
        return x, None


def seed_model(num_layers: int, features: int) -> nn.Module:
    """The seed's ``nn.vmap(nn.scan(Block))`` module: ``num_layers`` layers shared across the batch.

    Its params are ``{'params': {'Dense_0': {'kernel': (N, F, F), 'bias': (N, F)}}}``.
    Call it as ``model.apply(params, x_batch, None)``; it returns ``(final, None)``.
    """
    return _seed_stack(num_layers)(features=features)


@functools.cache
def _seed_stack(num_layers: int, block: type[nn.Module] = Block) -> type[nn.Module]:
    """The seed's lifts around ``block`` (the seed's own :class:`Block` by default), built once per N.

    Every trace of the forward reuses the class; ``_fast_init`` lifts a key-capturing
    twin of :class:`Block` through the same lifts.
    """
    return linen_stack(block, StackOptions(num_layers=num_layers))
