"""The decoder's layers: one block class, scanned (``linen_stack``) or unrolled.

A block maps one sequence: its carry is ``(x, positions)`` with ``x`` of shape
``(T, D)`` and ``positions`` of shape ``(T,)``. Scanned, ``linen_stack`` builds
``nn.vmap(nn.scan(block))`` exactly as the seed does: params ``(N, ...)`` under
``layers``, shared by the batch, and the ``cache`` collection ``(B, N, ...)``.
Unrolled, each layer is the same batch vmap (the lift arguments come from the
same :class:`~composed_lifts.StackOptions`), named ``layers_0 .. layers_{N-1}``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from .._lifts import stack_lifts
from .._options import StackOptions
from .._stack_linen import linen_stack
from ..layout import Stack, layer_name

__all__ = ["apply_layers", "positions_of"]

STACKS = (Stack("layers"),)
"""Where the models' stacked layers are in their params (``params/layers``, scanned)."""


_SCANNED: dict[tuple[type[nn.Module], int], type[nn.Module]] = {}
_BATCHED: dict[type[nn.Module], type[nn.Module]] = {}


def _scanned(block: type[nn.Module], num_layers: int) -> type[nn.Module]:
    """The scanned stack of ``block``, built once per class and depth."""
    if (block, num_layers) not in _SCANNED:
        _SCANNED[block, num_layers] = linen_stack(block, StackOptions(num_layers=num_layers))
    return _SCANNED[block, num_layers]


def _batched(block: type[nn.Module]) -> type[nn.Module]:
    """One layer of ``block`` under the stack's batch lift (the same ``nn.vmap`` arguments)."""
    if block not in _BATCHED:
        vmap = stack_lifts(StackOptions(num_layers=1)).vmap  # only its batch lift is used
        assert vmap is not None  # the default batch mode (shared params) has a vmap
        _BATCHED[block] = nn.vmap(block, **vmap)
    return _BATCHED[block]


def apply_layers(block: type[nn.Module], num_layers: int, scan: bool, carry, xs=None, **fields):
    """Run ``num_layers`` layers of ``block(**fields)`` on a batched carry (inside a compact method).

    ``xs``: per-layer inputs shared by the batch (leading axis ``num_layers``), e.g. each
    layer's attention kind; layer ``i`` is called with ``xs[i]`` (``None`` without them).
    """
    if scan:
        carry, _ = _scanned(block, num_layers)(**fields, name=STACKS[0].path)(carry, xs)
        return carry
    for i in range(num_layers):
        xs_i = None if xs is None else jax.tree_util.tree_map(lambda a: a[i], xs)  # noqa: B023
        carry, _ = _batched(block)(**fields, name=layer_name(i))(carry, xs_i)
    return carry


def positions_of(ids: jax.Array, positions: jax.Array | None = None) -> jax.Array:
    """``positions`` if given, else ``0 .. T-1`` for every sequence of ``ids (B, T)``."""
    if positions is not None:
        return positions
    return jnp.broadcast_to(jnp.arange(ids.shape[1], dtype=jnp.int32), ids.shape)
