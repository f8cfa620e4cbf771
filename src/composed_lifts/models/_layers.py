"""The decoder's layers: one block class, scanned (``linen_stack``) or unrolled.

A block maps one sequence: its carry is ``(x, positions)`` with ``x`` of shape
``(T, D)`` and ``positions`` of shape ``(T,)``; when decoding, ``(x, positions,
(key, value, mask))`` with the sequence's stacked KV cache ``(N, S, KV, hd)`` and
padding mask ``(S,)``, and the block is called as ``block(carry, slot, layer)``:
the slot of the call's first token (the same for every layer and sequence) and
the layer's index, so that it writes its keys in place (``_attention.kv_cache``). Scanned, ``linen_stack`` builds
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

__all__ = ["apply_layers", "positions_of"]


_SCANNED: dict[tuple[type[nn.Module], int, bool], type[nn.Module]] = {}
_BATCHED: dict[tuple[type[nn.Module], bool], type[nn.Module]] = {}


def _scanned(block: type[nn.Module], num_layers: int, indexed: bool) -> type[nn.Module]:
    """The scanned stack of ``block``, built once per class, depth and call form."""
    key = (block, num_layers, indexed)
    if key not in _SCANNED:
        _SCANNED[key] = linen_stack(block, StackOptions(num_layers=num_layers, layer_index=indexed))
    return _SCANNED[key]


def _batched(block: type[nn.Module], indexed: bool) -> type[nn.Module]:
    """One layer of ``block`` under the stack's batch lift (the same ``nn.vmap`` arguments)."""
    if (block, indexed) not in _BATCHED:
        options = StackOptions(num_layers=1, layer_index=indexed)
        vmap = stack_lifts(options).vmap  # only its batch lift is used
        assert vmap is not None  # the default batch mode (shared params) has a vmap
        _BATCHED[block, indexed] = nn.vmap(block, **vmap)
    return _BATCHED[block, indexed]


def apply_layers(block: type[nn.Module], num_layers: int, scan: bool, carry, slot=None, **fields):
    """Run ``num_layers`` layers of ``block(**fields)`` on a batched carry (inside a compact method).

    With ``slot`` (decoding: the carry holds the stacked KV cache), each layer is
    called as ``block(carry, slot, layer)``.
    """
    indexed = slot is not None
    if scan:
        stack = _scanned(block, num_layers, indexed)(**fields, name="layers")
        if not indexed:
            return stack(carry)[0]
        return stack(carry, jnp.broadcast_to(slot, (num_layers,)))[0]
    for i in range(num_layers):
        layer = _batched(block, indexed)(**fields, name=f"layers_{i}")
        if indexed:
            carry, _ = layer(carry, slot, jnp.int32(i))
        else:
            carry, _ = layer(carry, None)
    return carry


def positions_of(ids: jax.Array, positions: jax.Array | None = None) -> jax.Array:
    """``positions`` if given, else ``0 .. T-1`` for every sequence of ``ids (B, T)``."""
    if positions is not None:
        return positions
    return jnp.broadcast_to(jnp.arange(ids.shape[1], dtype=jnp.int32), ids.shape)
