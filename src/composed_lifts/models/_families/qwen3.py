"""Qwen3: Qwen2's sliding layers, RMSNorm of each query and key head before rotary, no q/k/v
biases unless ``attention_bias`` (then on the output projection too)."""

from __future__ import annotations

import dataclasses

from .._decoder import Decoder
from .._decoder_config import DecoderConfig, DecoderSpec, LayerKind, decoder_param_count
from .._decoder_hf import (
    DECODER_KEYMAP,
    DECODER_PARAM_AXES,
    decoder_fields,
    decoder_to_hf,
    decoder_values,
)
from .._family import Family
from .._fields import Read, boolean
from .qwen2 import QWEN_SLIDING_FIELDS, qwen_fields, qwen_layer_kinds, qwen_sliding_to_hf

__all__ = ["FAMILY", "Qwen3", "Qwen3Config"]


@dataclasses.dataclass(frozen=True)
class Qwen3Config(DecoderConfig):
    """Qwen3: ``q_norm``/``k_norm`` (Llama RMSNorm over ``head_dim``) before rotary."""

    sliding_window: int | None = None
    use_sliding_window: bool = False
    max_window_layers: int = 28
    layer_types: tuple[str, ...] | None = None
    attention_bias: bool = False

    @property
    def spec(self) -> DecoderSpec:
        bias = self.attention_bias
        return DecoderSpec(attn_scale=self.head_dim**-0.5, qkv_bias=bias, o_bias=bias, qk_norm=True)

    def layer_kinds(self) -> tuple[LayerKind, ...]:
        return qwen_layer_kinds(self)


class Qwen3(Decoder):
    """Qwen3 language model (see :class:`Decoder`)."""


FIELDS = (
    *decoder_fields(head_dim=128, max_position_embeddings=32768),
    *QWEN_SLIDING_FIELDS,
    Read("attention_bias", boolean(), False),
)


def _from_fields(values: dict, hf: dict) -> Qwen3Config:
    return Qwen3Config(
        **decoder_values(values), **qwen_fields(values), attention_bias=values["attention_bias"]
    )


def _to_hf(config: Qwen3Config) -> dict:
    return {
        **decoder_to_hf(config),
        **qwen_sliding_to_hf(config),
        "attention_bias": config.attention_bias,
    }


FAMILY = Family(
    model_type="qwen3",
    architecture="Qwen3ForCausalLM",
    config_class=Qwen3Config,
    from_fields=_from_fields,
    to_hf=_to_hf,
    model=Qwen3,
    keymap=DECODER_KEYMAP,
    param_axes=DECODER_PARAM_AXES,
    fields=FIELDS,
    param_count=decoder_param_count,
)
