"""Gemma: Llama's shape with the embedding scaled by sqrt(hidden), RMSNorm by (1 + w), GeGLU
(gelu, tanh approximation) and ``head_dim`` apart from hidden / heads."""

from __future__ import annotations

import dataclasses

from .._decoder import Decoder
from .._decoder_config import Activation, DecoderConfig, DecoderSpec, decoder_param_count
from .._decoder_hf import (
    DECODER_KEYMAP,
    DECODER_PARAM_AXES,
    decoder_fields,
    decoder_to_hf,
    decoder_values,
)
from .._family import Family
from .._fields import Fixed, Ignored, Read, boolean, choice

__all__ = ["FAMILY", "Gemma", "GemmaConfig"]


@dataclasses.dataclass(frozen=True)
class GemmaConfig(DecoderConfig):
    """Gemma. ``hidden_act`` "gelu" means the tanh approximation, as in ``GemmaConfig``."""

    attention_bias: bool = False
    tie_word_embeddings: bool = True

    @property
    def spec(self) -> DecoderSpec:
        bias = self.attention_bias
        return DecoderSpec(
            attn_scale=self.head_dim**-0.5,
            qkv_bias=bias,
            o_bias=bias,
            norm_offset=True,
            activation=Activation.GELU_TANH,
            embed_scale=True,
        )


class Gemma(Decoder):
    """Gemma language model (see :class:`Decoder`)."""


FIELDS = (
    *decoder_fields(head_dim=256, max_position_embeddings=8192, tie_word_embeddings=True),
    Read("hidden_act", choice("gelu_pytorch_tanh", "gelu"), "gelu_pytorch_tanh"),
    Read("attention_bias", boolean(), False),
    Fixed("use_bidirectional_attention", (None, False)),
    # transformers 5's GemmaMLP reads hidden_act only (hub configs of v4 also carry this).
    Ignored("hidden_activation"),
)


def _from_fields(values: dict, hf: dict) -> GemmaConfig:
    return GemmaConfig(**decoder_values(values), attention_bias=values["attention_bias"])


def _to_hf(config: GemmaConfig) -> dict:
    return {
        **decoder_to_hf(config),
        "hidden_act": "gelu_pytorch_tanh",
        "attention_bias": config.attention_bias,
    }


FAMILY = Family(
    model_type="gemma",
    architecture="GemmaForCausalLM",
    config_class=GemmaConfig,
    from_fields=_from_fields,
    to_hf=_to_hf,
    model=Gemma,
    keymap=DECODER_KEYMAP,
    param_axes=DECODER_PARAM_AXES,
    fields=FIELDS,
    param_count=decoder_param_count,
)
