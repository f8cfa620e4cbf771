"""The decoder's layers: one block class, scanned (``linen_stack``) or unrolled.

A block maps one sequence: its carry is ``(x, positions)`` with ``x`` of shape
``(T, D)`` and ``positions`` of shape ``(T,)``; when decoding, ``(x, positions,
(key, value, mask))`` with the sequence's stacked KV cache ``(N, S, KV, hd)`` and
padding mask ``(S,)``, and the layer's per-layer inputs ``xs`` also hold
``"slot"`` (the slot of the call's first token, the same for every layer and
sequence) and ``"layer"`` (the layer's index), so that it writes its keys in
place (``_attention.kv_cache``). Scanned, ``linen_stack`` builds
``nn.vmap(nn.scan(block))`` exactly as the seed does: params ``(N, ...)`` under
``layers``, shared by the batch.
Unrolled, each layer is the same batch vmap (the lift arguments come from the
same :class:`~composed_lifts.StackOptions`), named ``layers_0 .. layers_{N-1}``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from .._lifts import stack_lifts
from .._options import Remat, StackOptions
from .._stack_linen import linen_stack
from ..layout import Stack, layer_name

__all__ = ["apply_layers", "positions_of"]

STACKS = (Stack("layers"),)
"""Where the models' stacked layers are in their params (``params/layers``, scanned)."""


_SCANNED: dict[tuple[type[nn.Module], int, Remat], type[nn.Module]] = {}
_BATCHED: dict[tuple[type[nn.Module], Remat], type[nn.Module]] = {}


def _scanned(block: type[nn.Module], num_layers: int, remat: Remat) -> type[nn.Module]:
    """The scanned stack of ``block``, built once per class, depth and remat policy."""
    key = (block, num_layers, remat)
    if key not in _SCANNED:
        _SCANNED[key] = linen_stack(block, StackOptions(num_layers=num_layers, remat=remat))
    return _SCANNED[key]


def _batched(block: type[nn.Module], remat: Remat) -> type[nn.Module]:
    """One layer of ``block`` under the stack's batch lift (the same ``nn.vmap`` arguments)."""
    if (block, remat) not in _BATCHED:
        lifts = stack_lifts(StackOptions(num_layers=1, remat=remat))  # its batch lift only
        assert lifts.vmap is not None  # the default batch mode (shared params) has a vmap
        target = block
        if remat is not Remat.NONE:  # the same policy the scanned stack applies per layer
            target = nn.remat(block, policy=remat.policy(), prevent_cse=False)
        _BATCHED[block, remat] = nn.vmap(target, **lifts.vmap)
    return _BATCHED[block, remat]


def apply_layers(
    block: type[nn.Module],
    num_layers: int,
    scan: bool,
    carry,
    xs=None,
    remat: Remat = Remat.NONE,
    slot=None,
    **fields,
):
    """Run ``num_layers`` layers of ``block(**fields)`` on a batched carry (inside a compact method).

    ``xs``: per-layer inputs shared by the batch (leading axis ``num_layers``), e.g. each
    layer's attention kind; layer ``i`` is called with ``xs[i]`` (``None`` without them).
    ``remat`` rematerialises each layer with that policy (``StackOptions.remat``).
    With ``slot`` (decoding: the carry holds the stacked KV cache), ``xs`` is a dict
    (``{}`` without other inputs) to which ``"slot"`` and ``"layer"`` are added.
    """
    if slot is not None:
        xs = {
            **(xs or {}),
            "slot": jnp.broadcast_to(jnp.asarray(slot, jnp.int32), (num_layers,)),
            "layer": jnp.arange(num_layers, dtype=jnp.int32),
        }
    if scan:
        carry, _ = _scanned(block, num_layers, remat)(**fields, name=STACKS[0].path)(carry, xs)
        return carry
    for i in range(num_layers):
        xs_i = None if xs is None else jax.tree_util.tree_map(lambda a: a[i], xs)  # noqa: B023
        carry, _ = _batched(block, remat)(**fields, name=layer_name(i))(carry, xs_i)
    return carry


def positions_of(ids: jax.Array, positions: jax.Array | None = None) -> jax.Array:
    """``positions`` if given, else ``0 .. T-1`` for every sequence of ``ids (B, T)``."""
    if positions is not None:
        return positions
    return jnp.broadcast_to(jnp.arange(ids.shape[1], dtype=jnp.int32), ids.shape)
