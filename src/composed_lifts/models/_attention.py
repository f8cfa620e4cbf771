"""Causal self-attention of one sequence, with grouped-query heads, rotary and a KV cache.

Everything here maps ONE sequence (no batch axis): the stack's vmap adds the
batch. Positions travel with the sequence, so the same code serves a full
forward pass (keys are the sequence itself) and decoding (keys are the cache,
``max_len`` long, written at the tokens' positions).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["apply_rotary", "causal_attention", "kv_cache"]


def apply_rotary(x: jax.Array, positions: jax.Array, theta: float) -> jax.Array:
    """Rotary embedding in Hugging Face's split-halves layout (``rotate_half``).

    ``x`` is ``(T, heads, head_dim)``, ``positions`` is ``(T,)``. Pair ``j`` is
    ``(x[..., j], x[..., j + head_dim // 2])``, rotated by ``positions * theta ** (-2j / head_dim)``.
    """
    head_dim = x.shape[-1]
    inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    angles = positions.astype(jnp.float32)[:, None] * inv_freq[None, :]  # (T, hd/2)
    angles = jnp.concatenate([angles, angles], axis=-1)[:, None, :]  # (T, 1, hd)
    cos, sin = jnp.cos(angles).astype(x.dtype), jnp.sin(angles).astype(x.dtype)
    x1, x2 = jnp.split(x, 2, axis=-1)
    rotated = jnp.concatenate([-x2, x1], axis=-1)
    return x * cos + rotated * sin


def causal_attention(
    q: jax.Array, k: jax.Array, v: jax.Array, q_pos: jax.Array, k_pos: jax.Array
) -> jax.Array:
    """Softmax attention of ``q`` ``(T, H, hd)`` over ``k, v`` ``(S, KV, hd)``, ``H = KV * groups``.

    Query ``t`` sees key ``s`` when ``k_pos[s] <= q_pos[t]``; query heads
    ``h * groups .. (h + 1) * groups - 1`` share kv head ``h`` (Hugging Face's
    ``repeat_kv``). Scores and softmax are float32. Returns ``(T, H * hd)``.
    """
    t, heads, head_dim = q.shape
    kv_heads = k.shape[1]
    q = q.reshape(t, kv_heads, heads // kv_heads, head_dim)
    scores = jnp.einsum("tkgd,skd->kgts", q, k, preferred_element_type=jnp.float32)
    scores = scores / jnp.sqrt(jnp.float32(head_dim))
    visible = k_pos[None, :] <= q_pos[:, None]  # (T, S)
    scores = jnp.where(visible[None, None], scores, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    out = jnp.einsum("kgts,skd->tkgd", weights, v)
    return out.reshape(t, heads * head_dim)


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
