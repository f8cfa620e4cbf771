"""The Llama-like decoder on a layer stack, with each family's differences as options.

One block class serves every layer of every Llama-like family: the family's
:class:`~._decoder_config.DecoderSpec` picks biases, q/k norms, ``(1 + w)`` norms,
sandwich norms, the activation and soft-caps; each layer's attention kind (window,
rope base) is static when all layers share it, else a per-layer input of the
scan (``xs``), so layers that differ only in their kind still form one
``nn.scan`` (one compiled layer, flat in the depth).

Module and param names follow Hugging Face's (``self_attn.q_proj``,
``mlp.gate_proj``, ``pre_feedforward_layernorm`` ...). Dense kernels are
``(in, out)``: Hugging Face's ``nn.Linear`` weights are ``(out, in)``, so the key
map transposes them.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from .._options import Remat
from ._attention import KVCache, decoding_carry, layer_cache, rotary_attention, with_cache
from ._decoder_config import Activation, DecoderConfig, LayerKind
from ._layers import apply_layers, positions_of

__all__ = ["Decoder", "DecoderBlock", "RMSNorm", "activation_fn"]

_init = nn.initializers.normal(0.02)
_GLOBAL = np.iinfo(np.int32).max  # the window of a global layer among sliding ones


def activation_fn(activation: Activation):
    """The gate activation as a function (``transformers``' ``ACT2FN`` of the same name)."""
    if activation is Activation.SILU:
        return jax.nn.silu
    return functools.partial(jax.nn.gelu, approximate=activation is Activation.GELU_TANH)


class RMSNorm(nn.Module):
    """RMSNorm over the last axis, in float32: ``w * x_norm`` (Llama: ``x_norm`` cast back
    to the input dtype first), or ``x_norm * (1 + w)`` cast at the end (``offset``: Gemma,
    whose weights start at 0)."""

    eps: float
    offset: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        init = nn.initializers.zeros if self.offset else nn.initializers.ones
        scale = self.param("scale", init, (x.shape[-1],))
        scale = scale.reshape((1,) * (x.ndim - 1) + scale.shape)  # explicit: no rank promotion
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        if self.offset:
            return (normed * (1.0 + scale.astype(jnp.float32))).astype(x.dtype)
        return scale * normed.astype(x.dtype)


def _norm(config: DecoderConfig, name: str) -> RMSNorm:
    return RMSNorm(config.rms_norm_eps, config.spec.norm_offset, name=name)


class DecoderAttention(nn.Module):
    config: DecoderConfig

    @nn.compact
    def __call__(self, x: jax.Array, positions: jax.Array, window, rope_theta, cache=None):
        c, spec = self.config, self.config.spec
        t, hd = x.shape[0], c.head_dim
        dense = functools.partial(nn.Dense, kernel_init=_init)
        q_bias, kv_out = spec.qkv_bias, c.num_key_value_heads * hd
        q = dense(c.num_attention_heads * hd, use_bias=q_bias, name="q_proj")(x)
        k = dense(kv_out, use_bias=q_bias, name="k_proj")(x)
        v = dense(kv_out, use_bias=q_bias, name="v_proj")(x)
        q, k, v = (a.reshape(t, -1, hd) for a in (q, k, v))
        if spec.qk_norm:
            q, k = _norm(c, "q_norm")(q), _norm(c, "k_norm")(k)
        out, cache = rotary_attention(
            q,
            k,
            v,
            positions,
            rope_theta=rope_theta,
            scale=spec.attn_scale,
            window=window,
            softcap=spec.attn_softcap,
            cache=cache,
        )
        return dense(c.hidden_size, use_bias=spec.o_bias, name="o_proj")(out), cache


class DecoderMLP(nn.Module):
    config: DecoderConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.config
        dense = functools.partial(nn.Dense, use_bias=False, kernel_init=_init)
        gate = activation_fn(c.spec.activation)(dense(c.intermediate_size, name="gate_proj")(x))
        up = dense(c.intermediate_size, name="up_proj")(x)
        return dense(c.hidden_size, name="down_proj")(gate * up)


class DecoderBlock(nn.Module):
    """One layer on one sequence: carry ``(x (T, D), positions (T,))`` -> same.

    The layer's attention kind is ``kind`` (static), or ``xs = {"window", "rope_theta"}``
    (this layer's slice of the scan's per-layer inputs; a global layer's window is the
    int32 maximum). Decoding, the carry also holds the KV cache and ``xs`` the slot and
    the layer's index (see ``_layers.py``).
    """

    config: DecoderConfig
    kind: LayerKind | None = None

    @nn.compact
    def __call__(self, carry, xs=None):
        x, positions = carry[0], carry[1]
        if self.kind is not None:
            window, theta = self.kind.window, self.kind.rope_theta
        else:
            assert xs is not None  # the model gives a kind or xs, never neither
            window, theta = xs["window"], xs["rope_theta"]
        c = self.config
        attn = DecoderAttention(c, name="self_attn")
        mlp = DecoderMLP(c, name="mlp")
        cache = layer_cache(carry, xs)
        h, cache = attn(_norm(c, "input_layernorm")(x), positions, window, theta, cache)
        if c.spec.sandwich_norms:
            x = x + _norm(c, "post_attention_layernorm")(h)
            h = mlp(_norm(c, "pre_feedforward_layernorm")(x))
            x = x + _norm(c, "post_feedforward_layernorm")(h)
        else:
            x = x + h
            x = x + mlp(_norm(c, "post_attention_layernorm")(x))
        return with_cache(carry, x, cache), None


def _kinds(config: DecoderConfig) -> tuple[LayerKind | None, dict | None]:
    """The static kind every layer shares, or the per-layer kinds as the scan's ``xs``."""
    kinds = config.layer_kinds()
    if len(set(kinds)) == 1:
        return kinds[0], None
    xs = {
        "window": np.array([_GLOBAL if k.window is None else k.window for k in kinds], np.int32),
        "rope_theta": np.array([k.rope_theta for k in kinds], np.float32),
    }
    return None, xs


class Decoder(nn.Module):
    """A Llama-like language model: ``ids (B, T)`` (and ``positions (B, T)``) -> logits ``(B, T, V)``.

    ``scan_layers=False`` unrolls the layers (params ``layers_0 ..``); ``remat``
    rematerialises each layer with that policy (for training). Decoding:
    ``model(ids, positions, cache=cache, slot=slot, mask=mask)`` writes the
    tokens' keys and values into the :class:`KVCache` at ``slot`` and attends
    over the slots ``mask (B, S)`` keeps (within a sliding layer's window); it
    returns ``(logits, cache)`` (see ``models.generate``). ``last=True`` gives the
    last position's logits only.
    """

    config: DecoderConfig
    scan_layers: bool = True
    remat: Remat = Remat.NONE

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
        c, spec = self.config, self.config.spec
        positions = positions_of(ids, positions)
        embed = nn.Embed(c.vocab_size, c.hidden_size, embedding_init=_init, name="embed_tokens")
        x = embed(ids)
        if spec.embed_scale:  # sqrt(hidden) rounded to the embedding's dtype, as transformers
            x = x * jnp.asarray(c.hidden_size**0.5, x.dtype)
        kind, xs = _kinds(c)
        fields: dict[str, Any] = dict(config=c, kind=kind)
        carry = (x, positions) if cache is None else decoding_carry(x, positions, cache, mask)
        carry = apply_layers(
            DecoderBlock,
            c.num_hidden_layers,
            self.scan_layers,
            carry,
            xs,
            remat=self.remat,
            slot=None if cache is None else (0 if slot is None else slot),
            **fields,
        )
        x = carry[0][:, -1:] if last else carry[0]
        x = _norm(c, "norm")(x)
        if c.tie_word_embeddings:
            logits = embed.attend(x)
        else:
            logits = nn.Dense(c.vocab_size, use_bias=False, kernel_init=_init, name="lm_head")(x)
        if spec.final_softcap is not None:
            cap = jnp.float32(spec.final_softcap)
            logits = (jnp.tanh(logits.astype(jnp.float32) / cap) * cap).astype(logits.dtype)
        return logits if cache is None else (logits, KVCache(*carry[2][:2]))
