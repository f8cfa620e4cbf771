"""Causal self-attention of one sequence, with grouped-query heads, rotary and a KV cache.

Everything here maps ONE sequence (no batch axis): the stack's vmap adds the
batch. Causality (and a sliding window) is decided on cache *slots* when
decoding (the index of a token in the sequence as stored, left pads included),
like ``transformers``' masks; rotary and learned embeddings use *positions*
(``cumsum(mask) - 1``), which differ from slots by a row's number of left pads
(the same for every real token of a row, so a window on slots is the window on
positions).

Decoding keeps every layer's keys and values in ONE stacked cache per sequence,
``(N, S, KV, hd)``, carried through the layer scan (a loop carry, so XLA
updates it in place): layer ``i`` writes its new keys at ``[i, slot]`` with a
``dynamic_update_slice`` and reads its own ``[i]``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "KVCache",
    "LayerCache",
    "apply_rotary",
    "attend",
    "causal_attention",
    "decoding_carry",
    "kv_cache",
    "layer_cache",
    "rotary_attention",
    "with_cache",
]


def apply_rotary(x: jax.Array, positions: jax.Array, theta) -> jax.Array:
    """Rotary embedding in Hugging Face's split-halves layout (``rotate_half``).

    ``x`` is ``(T, heads, head_dim)``, ``positions`` is ``(T,)``. Pair ``j`` is
    ``(x[..., j], x[..., j + head_dim // 2])``, rotated by ``positions * theta ** (-2j / head_dim)``;
    ``theta`` is a float, or a float32 scalar traced per layer.
    """
    head_dim = x.shape[-1]
    exponents = jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim
    inv_freq = 1.0 / (jnp.asarray(theta, jnp.float32) ** exponents)
    angles = positions.astype(jnp.float32)[:, None] * inv_freq[None, :]  # (T, hd/2)
    angles = jnp.concatenate([angles, angles], axis=-1)[:, None, :]  # (T, 1, hd)
    cos, sin = jnp.cos(angles).astype(x.dtype), jnp.sin(angles).astype(x.dtype)
    half = head_dim // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


def causal_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    q_pos: jax.Array,
    k_pos: jax.Array,
    mask: jax.Array | None = None,
    *,
    scale: float | None = None,
    window=None,
    softcap: float | None = None,
) -> jax.Array:
    """Softmax attention of ``q`` ``(T, H, hd)`` over ``k, v`` ``(S, KV, hd)``, ``H = KV * groups``.

    Query ``t`` sees key ``s`` when ``k_pos[s] <= q_pos[t]``, ``mask[s]`` (a ``(S,)``
    bool, default all true: False marks a padding slot) and, with a ``window`` W (an
    int, or a traced one per layer), ``q_pos[t] - k_pos[s] < W``: the last W tokens
    including itself (``transformers``' ``sliding_window_overlay``). Query heads ``h *
    groups .. (h + 1) * groups - 1`` share kv head ``h`` (``repeat_kv``). Scores are
    float32, multiplied by ``scale`` (default ``head_dim ** -0.5``), then soft-capped as
    ``tanh(s / softcap) * softcap`` when ``softcap`` is given, then masked. Returns
    ``(T, H * hd)``.
    """
    t, heads, head_dim = q.shape
    kv_heads = k.shape[1]
    scale = head_dim**-0.5 if scale is None else scale
    q = q.reshape(t, kv_heads, heads // kv_heads, head_dim)
    scores = jnp.einsum("tkgd,skd->kgts", q, k, preferred_element_type=jnp.float32)
    scores = scores * jnp.float32(scale)
    if softcap is not None:
        scores = jnp.tanh(scores / jnp.float32(softcap)) * jnp.float32(softcap)
    visible = k_pos[None, :] <= q_pos[:, None]  # (T, S)
    if window is not None:
        visible = visible & (q_pos[:, None] - k_pos[None, :] < window)
    if mask is not None:
        visible = visible & mask[None, :]
    scores = jnp.where(visible[None, None], scores, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    out = jnp.einsum("kgts,skd->tkgd", weights, v)
    return out.reshape(t, heads * head_dim)


class LayerCache(NamedTuple):
    """One sequence's decoding state, as a block sees it inside the layer scan.

    ``key``, ``value``: every layer's ``(N, S, KV, hd)``; ``mask``: ``(S,)``, False
    at padding slots; ``slot``: ``()`` int32, the slot of the call's first token;
    ``layer``: ``()`` int32, the layer being run.
    """

    key: jax.Array
    value: jax.Array
    mask: jax.Array
    slot: jax.Array
    layer: jax.Array


def kv_cache(cache: LayerCache, k: jax.Array, v: jax.Array):
    """Write ``k, v`` ``(T, KV, hd)`` at ``[cache.layer, cache.slot]``: returns ``(cache, k, v)``.

    The returned keys and values are the layer's whole ``(S, KV, hd)`` cache,
    the tokens of this call included; the tokens of one call are consecutive.
    """
    start = (cache.layer, cache.slot, 0, 0)
    key = jax.lax.dynamic_update_slice(cache.key, k[None].astype(cache.key.dtype), start)
    value = jax.lax.dynamic_update_slice(cache.value, v[None].astype(cache.value.dtype), start)
    layer_k = jax.lax.dynamic_index_in_dim(key, cache.layer, keepdims=False)
    layer_v = jax.lax.dynamic_index_in_dim(value, cache.layer, keepdims=False)
    return cache._replace(key=key, value=value), layer_k, layer_v


def attend(
    q,
    k,
    v,
    positions,
    cache: LayerCache | None,
    *,
    scale: float | None = None,
    window=None,
    softcap: float | None = None,
):
    """Causal attention of one sequence, through ``cache`` when decoding: ``(out, cache)``.

    Without a cache the keys are the sequence itself, causal on ``positions``;
    with one, ``k, v`` are written into it and the queries (slots ``slot ..
    slot + T - 1``) attend over every slot of the layer not masked as padding
    (and within ``window`` slots, for a sliding layer).
    """
    options = dict(scale=scale, window=window, softcap=softcap)
    if cache is None:
        return causal_attention(q, k, v, positions, positions, **options), None
    cache, k, v = kv_cache(cache, k, v)
    q_slots = cache.slot + jnp.arange(q.shape[0], dtype=jnp.int32)
    k_slots = jnp.arange(k.shape[0], dtype=jnp.int32)
    k, v = k.astype(q.dtype), v.astype(q.dtype)
    out = causal_attention(q, k, v, q_slots, k_slots, cache.mask, **options)
    return out, cache


def rotary_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    positions: jax.Array,
    *,
    rope_theta,
    scale: float | None = None,
    window=None,
    softcap: float | None = None,
    cache: LayerCache | None = None,
):
    """Rotary on ``q`` and ``k`` at ``positions``, then :func:`attend`: ``(out, cache)``.

    The attention of every rotary model here (Linen and NNX alike); without a
    ``cache`` the keys are the sequence itself (and the returned cache is ``None``).
    """
    q = apply_rotary(q, positions, rope_theta)
    k = apply_rotary(k, positions, rope_theta)
    return attend(q, k, v, positions, cache, scale=scale, window=window, softcap=softcap)


class KVCache(NamedTuple):
    """The decoding state of a batch: every layer's keys and values, ``(B, N, S, KV, hd)`` each.

    ``S`` is fixed when it is made (:func:`~composed_lifts.models.init_cache`), so
    decoding runs with fixed shapes. Slot ``s`` of row ``b`` holds the keys of
    the ``s``-th token of that row as stored (left pads included).
    """

    key: jax.Array
    value: jax.Array


def decoding_carry(x, positions, cache: KVCache, mask: jax.Array | None):
    """The batched layer-stack carry for a decoding call: ``(x, positions, (key, value, mask))``.

    ``mask`` ``(B, S)`` is False at padding slots (default: none).
    """
    if mask is None:
        mask = jnp.ones(cache.key.shape[:1] + cache.key.shape[2:3], bool)
    return (x, positions, (cache.key, cache.value, mask))


def layer_cache(carry, xs) -> LayerCache | None:
    """The block's view of the carry's cache (``None`` when the carry holds none).

    ``xs`` is the layer's per-layer inputs, which hold ``"slot"`` and ``"layer"``
    when decoding (``_layers.apply_layers``).
    """
    if len(carry) == 2:
        return None
    key, value, mask = carry[2]
    return LayerCache(key, value, mask, xs["slot"], xs["layer"])


def with_cache(carry, x, cache: LayerCache | None):
    """The carry a block returns: ``x`` replaced, and the cache when decoding."""
    if cache is None:
        return (x, carry[1])
    return (x, carry[1], (cache.key, cache.value, cache.mask))
