"""Causal self-attention of one sequence, with grouped-query heads, rotary and a KV cache.

Everything here maps ONE sequence (no batch axis): the stack's vmap adds the
batch. Positions travel with the sequence, so the same code serves a full
forward pass (keys are the sequence itself) and decoding (keys are the cache,
``max_len`` long, written at the tokens' positions).
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["apply_rotary", "causal_attention", "kv_cache", "rotary_attention"]


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
    x1, x2 = jnp.split(x, 2, axis=-1)
    rotated = jnp.concatenate([-x2, x1], axis=-1)
    return x * cos + rotated * sin


def causal_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    q_pos: jax.Array,
    k_pos: jax.Array,
    *,
    scale: float | None = None,
    window=None,
    softcap: float | None = None,
) -> jax.Array:
    """Softmax attention of ``q`` ``(T, H, hd)`` over ``k, v`` ``(S, KV, hd)``, ``H = KV * groups``.

    Query ``t`` sees key ``s`` when ``k_pos[s] <= q_pos[t]`` and, with a ``window`` W (an
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
    scores = jnp.where(visible[None, None], scores, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    out = jnp.einsum("kgts,skd->tkgd", weights, v)
    return out.reshape(t, heads * head_dim)


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
    cache: Callable | None = None,
) -> jax.Array:
    """Rotary on ``q`` and ``k``, the ``cache`` (when decoding), then :func:`causal_attention`.

    The attention of every rotary model here (Linen and NNX alike). ``cache(k, v,
    positions)`` returns the keys, values and key positions to attend over (e.g.
    ``functools.partial(kv_cache, module)``); without it the keys are the sequence itself.
    """
    q = apply_rotary(q, positions, rope_theta)
    k = apply_rotary(k, positions, rope_theta)
    k_pos = positions
    if cache is not None:
        k, v, k_pos = cache(k, v, positions)
    return causal_attention(q, k, v, positions, k_pos, scale=scale, window=window, softcap=softcap)


def kv_cache(module: nn.Module, k: jax.Array, v: jax.Array, positions: jax.Array):
    """Write ``k, v`` ``(T, KV, hd)`` into ``module``'s ``cache`` at ``positions[0]``.

    Returns the keys, values and key positions to attend over. The cache's
    length is fixed when it is created (``init`` with a ``(max_len,)`` sequence),
    so decoding runs with fixed shapes; the tokens of one call are consecutive.
    """
    cached_k = module.variable("cache", "key", jnp.zeros, k.shape, k.dtype)
    cached_v = module.variable("cache", "value", jnp.zeros, v.shape, v.dtype)
    start = (positions[0], 0, 0)
    cached_k.value = jax.lax.dynamic_update_slice(
        cached_k.value, k.astype(cached_k.value.dtype), start
    )
    cached_v.value = jax.lax.dynamic_update_slice(
        cached_v.value, v.astype(cached_v.value.dtype), start
    )
    k_pos = jnp.arange(cached_k.value.shape[0], dtype=positions.dtype)
    return cached_k.value, cached_v.value, k_pos
