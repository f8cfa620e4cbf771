"""Llama on a layer stack: RMSNorm, grouped-query attention, rotary, SwiGLU.

Module and param names follow Hugging Face's (``self_attn.q_proj``,
``mlp.gate_proj`` ...). Dense kernels are ``(in, out)``: Hugging Face's
``nn.Linear`` weights are ``(out, in)``, so the key map transposes them.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax

from .._options import Remat
from ._attention import apply_rotary, causal_attention, kv_cache
from ._config import LlamaConfig
from ._layers import apply_layers, positions_of

__all__ = ["Llama", "LlamaBlock"]

_init = nn.initializers.normal(0.02)
_dense = functools.partial(nn.Dense, use_bias=False, kernel_init=_init)


def _rms_norm(config: LlamaConfig, name: str) -> nn.RMSNorm:
    return nn.RMSNorm(epsilon=config.rms_norm_eps, use_fast_variance=False, name=name)


class LlamaAttention(nn.Module):
    config: LlamaConfig
    decode: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, positions: jax.Array) -> jax.Array:
        c = self.config
        t, hd = x.shape[0], c.head_dim
        q = _dense(c.num_attention_heads * hd, name="q_proj")(x).reshape(t, -1, hd)
        k = _dense(c.num_key_value_heads * hd, name="k_proj")(x).reshape(t, -1, hd)
        v = _dense(c.num_key_value_heads * hd, name="v_proj")(x).reshape(t, -1, hd)
        q = apply_rotary(q, positions, c.rope_theta)
        k = apply_rotary(k, positions, c.rope_theta)
        k_pos = positions
        if self.decode:
            k, v, k_pos = kv_cache(self, k, v, positions)
        out = causal_attention(q, k, v, positions, k_pos)
        return _dense(c.hidden_size, name="o_proj")(out)


class LlamaMLP(nn.Module):
    config: LlamaConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.config
        gate = jax.nn.silu(_dense(c.intermediate_size, name="gate_proj")(x))
        up = _dense(c.intermediate_size, name="up_proj")(x)
        return _dense(c.hidden_size, name="down_proj")(gate * up)


class LlamaBlock(nn.Module):
    """One Llama layer on one sequence: carry ``(x (T, D), positions (T,))`` -> same."""

    config: LlamaConfig
    decode: bool = False

    @nn.compact
    def __call__(self, carry, _):
        x, positions = carry
        attn = LlamaAttention(self.config, self.decode, name="self_attn")
        x = x + attn(_rms_norm(self.config, "input_layernorm")(x), positions)
        h = _rms_norm(self.config, "post_attention_layernorm")(x)
        x = x + LlamaMLP(self.config, name="mlp")(h)
        return (x, positions), None


class Llama(nn.Module):
    """Llama language model: ``ids (B, T)`` (and ``positions (B, T)``) -> logits ``(B, T, V)``.

    ``scan_layers=False`` unrolls the layers (params ``layers_0 ..``); ``remat`` rematerialises
    each layer with that policy (for training); ``decode=True``
    keeps a per-layer KV cache in the ``cache`` collection (see ``models.generate``).
    """

    config: LlamaConfig
    scan_layers: bool = True
    decode: bool = False
    remat: Remat = Remat.NONE

    @nn.compact
    def __call__(self, ids: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        c = self.config
        positions = positions_of(ids, positions)
        embed = nn.Embed(c.vocab_size, c.hidden_size, embedding_init=_init, name="embed_tokens")
        fields: dict[str, Any] = dict(config=c, decode=self.decode)
        carry = (embed(ids), positions)
        x, _ = apply_layers(
            LlamaBlock, c.num_hidden_layers, self.scan_layers, carry, remat=self.remat, **fields
        )
        x = _rms_norm(c, "norm")(x)
        if c.tie_word_embeddings:
            return embed.attend(x)
        return _dense(c.vocab_size, name="lm_head")(x)
