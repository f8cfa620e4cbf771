"""Llama as a Flax NNX module on ``nnx_stack``: the same block, layers stacked for ``nnx.scan``.

Attribute names match the Linen model's submodule names, so Linen params (from
:func:`~composed_lifts.models.from_hf`) move over exactly: the stack's part
with :func:`~composed_lifts.linen_to_nnx`, the embedding, final norm and head
directly. The attention is the Linen model's function (``_attention.rotary_attention``).
Decoding with a KV cache is the Linen model's (``models.generate``).
"""

from __future__ import annotations

import jax
from flax import nnx

from .._convert_nnx import linen_to_nnx
from .._options import StackOptions
from .._stack_nnx import nnx_stack
from ..errors import ArgumentTypeError, LayoutMismatchError
from ..layout import layer_name
from ._attention import rotary_attention
from ._families.llama import LlamaConfig
from ._layers import positions_of

__all__ = ["NNXLlama", "NNXLlamaBlock", "nnx_llama"]


def _linear(n_in: int, n_out: int, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(n_in, n_out, use_bias=False, rngs=rngs)


def _rms_norm(config: LlamaConfig, rngs: nnx.Rngs) -> nnx.RMSNorm:
    return nnx.RMSNorm(
        config.hidden_size, epsilon=config.rms_norm_eps, use_fast_variance=False, rngs=rngs
    )


class _Attention(nnx.Module):
    def __init__(self, c: LlamaConfig, rngs: nnx.Rngs):
        self.rope_theta, self.head_dim, self.scale = c.rope_theta, c.head_dim, c.spec.attn_scale
        self.q_proj = _linear(c.hidden_size, c.num_attention_heads * c.head_dim, rngs)
        self.k_proj = _linear(c.hidden_size, c.num_key_value_heads * c.head_dim, rngs)
        self.v_proj = _linear(c.hidden_size, c.num_key_value_heads * c.head_dim, rngs)
        self.o_proj = _linear(c.num_attention_heads * c.head_dim, c.hidden_size, rngs)

    def __call__(self, x: jax.Array, positions: jax.Array) -> jax.Array:
        t, hd = x.shape[0], self.head_dim
        q, k, v = (p(x).reshape(t, -1, hd) for p in (self.q_proj, self.k_proj, self.v_proj))
        out, _ = rotary_attention(q, k, v, positions, rope_theta=self.rope_theta, scale=self.scale)
        return self.o_proj(out)


class _MLP(nnx.Module):
    def __init__(self, c: LlamaConfig, rngs: nnx.Rngs):
        self.gate_proj = _linear(c.hidden_size, c.intermediate_size, rngs)
        self.up_proj = _linear(c.hidden_size, c.intermediate_size, rngs)
        self.down_proj = _linear(c.intermediate_size, c.hidden_size, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class NNXLlamaBlock(nnx.Module):
    """One Llama layer on one sequence: carry ``(x (T, D), positions (T,))`` -> same."""

    def __init__(self, config: LlamaConfig, rngs: nnx.Rngs):
        self.input_layernorm = _rms_norm(config, rngs)
        self.self_attn = _Attention(config, rngs)
        self.post_attention_layernorm = _rms_norm(config, rngs)
        self.mlp = _MLP(config, rngs)

    def __call__(self, carry, _):
        x, positions = carry
        x = x + self.self_attn(self.input_layernorm(x), positions)
        x = x + self.mlp(self.post_attention_layernorm(x))
        return (x, positions), None


class NNXLlama(nnx.Module):
    """Llama in NNX: ``ids (B, T)`` -> logits ``(B, T, V)``; layers built by ``nnx_stack``."""

    def __init__(self, config: LlamaConfig, *, rngs: nnx.Rngs):
        c = self.config = config
        self.embed_tokens = nnx.Embed(c.vocab_size, c.hidden_size, rngs=rngs)
        options = StackOptions(num_layers=c.num_hidden_layers)
        self.layers = nnx_stack(lambda r: NNXLlamaBlock(c, r), options, rngs=rngs)
        self.norm = _rms_norm(c, rngs)
        self.lm_head = None if c.tie_word_embeddings else _linear(c.hidden_size, c.vocab_size, rngs)

    def __call__(self, ids: jax.Array) -> jax.Array:
        (x, _), _ = self.layers((self.embed_tokens(ids), positions_of(ids)))
        x = self.norm(x)
        return self.embed_tokens.attend(x) if self.lm_head is None else self.lm_head(x)


def nnx_llama(config: LlamaConfig, params: dict) -> NNXLlama:
    """An :class:`NNXLlama` holding the scanned Linen ``params`` of :class:`Llama` (exact copies)."""
    if not isinstance(config, LlamaConfig):
        raise ArgumentTypeError("config", "a models.LlamaConfig", type(config).__name__)
    want = {"embed_tokens", "layers", "norm"} | set(
        () if config.tie_word_embeddings else ("lm_head",)
    )
    if set(params) != want:
        raise LayoutMismatchError(
            "keys",
            "the top-level keys of params",
            "the scanned Linen Llama of this config (from_hf(folder))",
            missing=sorted(want - set(params)),
            unexpected=sorted(set(params) - want),
            fix=f"stack unrolled params ({layer_name(0)}, ...) with composed_lifts.stack_params",
        )
    model = NNXLlama(config, rngs=nnx.Rngs(0))
    model.layers = linen_to_nnx({"params": params["layers"]}, model.layers)
    model.embed_tokens.embedding.set_value(params["embed_tokens"]["embedding"])
    assert model.norm.scale is not None  # RMSNorm's default use_scale=True
    model.norm.scale.set_value(params["norm"]["scale"])
    if model.lm_head is not None:
        model.lm_head.kernel.set_value(params["lm_head"]["kernel"])
    return model
