"""The config of a Llama-like decoder, and what sets one family's math apart from another's.

Llama, Mistral, Qwen2, Qwen3, Gemma, Gemma 2 and Gemma 3 share one shape: RMSNorm,
grouped-query attention with rotary, a gated MLP. Each family's config subclasses
:class:`DecoderConfig` with its own Hugging Face fields, and says in
:attr:`DecoderConfig.spec` (a :class:`DecoderSpec`) which options of the shared
code it uses, and in :meth:`DecoderConfig.layer_kinds` each layer's attention kind
(a :class:`LayerKind`: sliding window or global, and its rope base).
"""

from __future__ import annotations

import dataclasses
import enum

__all__ = ["Activation", "DecoderConfig", "DecoderSpec", "LayerKind", "decoder_param_count"]


class Activation(enum.Enum):
    """The MLP's gate activation (``transformers``' ``ACT2FN`` names)."""

    SILU = "silu"
    GELU_TANH = "gelu_pytorch_tanh"
    GELU = "gelu"


@dataclasses.dataclass(frozen=True)
class LayerKind:
    """One layer's attention: ``window`` (the last W tokens incl. itself; None: global) and
    the rope base ``rope_theta``."""

    window: int | None
    rope_theta: float


@dataclasses.dataclass(frozen=True)
class DecoderSpec:
    """The options of the shared decoder code a family uses.

    Attributes:
      attn_scale: scores are multiplied by this (``head_dim ** -0.5``, Gemma 2/3:
        ``query_pre_attn_scalar ** -0.5``).
      qkv_bias, o_bias: biases on the q/k/v and on the output projections.
      qk_norm: RMSNorm over ``head_dim`` of each query and key head, before rotary.
      norm_offset: RMSNorms scale by ``1 + weight`` (weights start at 0; Gemma).
      sandwich_norms: norms before and after each sub-block (Gemma 2/3):
        ``x += post_attention_layernorm(attn(input_layernorm(x)))``,
        ``x += post_feedforward_layernorm(mlp(pre_feedforward_layernorm(x)))``.
      activation: the MLP's gate activation.
      embed_scale: the embedding is multiplied by ``sqrt(hidden_size)`` in its dtype.
      attn_softcap, final_softcap: ``tanh(s / cap) * cap`` on the attention scores (after
        scaling, before the mask) and on the logits.
    """

    attn_scale: float
    qkv_bias: bool = False
    o_bias: bool = False
    qk_norm: bool = False
    norm_offset: bool = False
    sandwich_norms: bool = False
    activation: Activation = Activation.SILU
    embed_scale: bool = False
    attn_softcap: float | None = None
    final_softcap: float | None = None


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
    """The fields every Llama-like family has (Hugging Face's names); families add theirs."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    max_position_embeddings: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False
    bos_token_id: int | tuple[int, ...] | None = None
    eos_token_id: int | tuple[int, ...] | None = None

    @property
    def num_layers(self) -> int:
        return self.num_hidden_layers

    @property
    def max_positions(self) -> int:
        return self.max_position_embeddings

    @property
    def spec(self) -> DecoderSpec:
        """Llama's: no biases, no q/k norms, SiLU, ``head_dim ** -0.5``."""
        return DecoderSpec(attn_scale=self.head_dim**-0.5)

    def layer_kinds(self) -> tuple[LayerKind, ...]:
        """Each layer's attention kind (Llama's: every layer global, one rope base)."""
        return (LayerKind(None, self.rope_theta),) * self.num_hidden_layers


def decoder_param_count(config: DecoderConfig) -> int:
    """The number of params of the decoder of ``config``, from its sizes alone."""
    c, spec = config, config.spec
    d, q_out = c.hidden_size, c.num_attention_heads * c.head_dim
    kv_out = c.num_key_value_heads * c.head_dim
    attention = d * q_out + 2 * d * kv_out + q_out * d
    if spec.qkv_bias:
        attention += q_out + 2 * kv_out
    if spec.o_bias:
        attention += d
    if spec.qk_norm:
        attention += 2 * c.head_dim
    norms = (4 if spec.sandwich_norms else 2) * d
    layer = attention + norms + 3 * d * c.intermediate_size
    outside = c.vocab_size * d + d + (0 if c.tie_word_embeddings else d * c.vocab_size)
    return outside + c.num_hidden_layers * layer
