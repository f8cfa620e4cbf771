"""Llama on a layer stack: RMSNorm, grouped-query attention, rotary, SwiGLU.

Module and param names follow Hugging Face's (``self_attn.q_proj``,
``mlp.gate_proj`` ...). Dense kernels are ``(in, out)``: Hugging Face's
``nn.Linear`` weights are ``(out, in)``, so the key map transposes them.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax

from ._attention import KVCache, apply_rotary, attend, decoding_carry, layer_cache, with_cache
from ._config import LlamaConfig
from ._layers import apply_layers, positions_of

__all__ = ["Llama", "LlamaBlock"]

_init = nn.initializers.normal(0.02)
_dense = functools.partial(nn.Dense, use_bias=False, kernel_init=_init)


def _rms_norm(config: LlamaConfig, name: str) -> nn.RMSNorm:
    return nn.RMSNorm(epsilon=config.rms_norm_eps, use_fast_variance=False, name=name)


class LlamaAttention(nn.Module):
    config: LlamaConfig

    @nn.compact
    def __call__(self, x: jax.Array, positions: jax.Array, cache=None):
        c = self.config
        t, hd = x.shape[0], c.head_dim
        q = _dense(c.num_attention_heads * hd, name="q_proj")(x).reshape(t, -1, hd)
        k = _dense(c.num_key_value_heads * hd, name="k_proj")(x).reshape(t, -1, hd)
        v = _dense(c.num_key_value_heads * hd, name="v_proj")(x).reshape(t, -1, hd)
        q = apply_rotary(q, positions, c.rope_theta)
        k = apply_rotary(k, positions, c.rope_theta)
        out, cache = attend(q, k, v, positions, cache)
        return _dense(c.hidden_size, name="o_proj")(out), cache


class LlamaMLP(nn.Module):
    config: LlamaConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.config
        gate = jax.nn.silu(_dense(c.intermediate_size, name="gate_proj")(x))
        up = _dense(c.intermediate_size, name="up_proj")(x)
        return _dense(c.hidden_size, name="down_proj")(gate * up)


class LlamaBlock(nn.Module):
    """One Llama layer on one sequence: carry ``(x (T, D), positions (T,))`` -> same.

    Decoding, the carry also holds the KV cache and the block is called with the
    slot and its layer index (see ``_layers.py``).
    """

    config: LlamaConfig

    @nn.compact
    def __call__(self, carry, slot=None, layer=None):
        x, positions = carry[0], carry[1]
        attn = LlamaAttention(self.config, name="self_attn")
        h, cache = attn(
            _rms_norm(self.config, "input_layernorm")(x),
            positions,
            layer_cache(carry, slot, layer),
        )
        x = x + h
        h = _rms_norm(self.config, "post_attention_layernorm")(x)
        x = x + LlamaMLP(self.config, name="mlp")(h)
        return with_cache(carry, x, cache), None


class Llama(nn.Module):
    """Llama language model: ``ids (B, T)`` (and ``positions (B, T)``) -> logits ``(B, T, V)``.

    ``scan_layers=False`` unrolls the layers (params ``layers_0 ..``). Decoding:
    ``model(ids, positions, cache=cache, slot=slot, mask=mask)`` writes the
    tokens' keys and values into the :class:`KVCache` at ``slot`` and attends
    over the slots ``mask (B, S)`` keeps; it returns ``(logits, cache)`` (see
    ``models.generate``). ``last=True`` gives the last position's logits only.
    """

    config: LlamaConfig
    scan_layers: bool = True

    @nn.compact
    def __call__(
        self,
        ids: jax.Array,
        positions: jax.Array | None = None,
        cache: KVCache | None = None,
        slot: jax.Array | None = None,
        mask: jax.Array | None = None,
        last: bool = False,
    ):
        c = self.config
        positions = positions_of(ids, positions)
        embed = nn.Embed(c.vocab_size, c.hidden_size, embedding_init=_init, name="embed_tokens")
        x = embed(ids)
        carry = (x, positions) if cache is None else decoding_carry(x, positions, cache, mask)
        n = c.num_hidden_layers
        carry = apply_layers(LlamaBlock, n, self.scan_layers, carry, slot, config=c)
        x = carry[0][:, -1:] if last else carry[0]
        x = _rms_norm(c, "norm")(x)
        if c.tie_word_embeddings:
            logits = embed.attend(x)
        else:
            logits = _dense(c.vocab_size, name="lm_head")(x)
        return logits if cache is None else (logits, KVCache(*carry[2][:2]))
