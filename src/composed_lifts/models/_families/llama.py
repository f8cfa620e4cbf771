"""Llama: RMSNorm, grouped-query attention, rotary (split halves), SwiGLU."""

from __future__ import annotations

import dataclasses

from .._decoder import Decoder
from .._decoder_config import DecoderConfig, decoder_param_count
from .._decoder_hf import (
    DECODER_KEYMAP,
    DECODER_PARAM_AXES,
    decoder_fields,
    decoder_to_hf,
    decoder_values,
)
from .._family import Family
from .._fields import Fixed

__all__ = ["FAMILY", "Llama", "LlamaConfig"]


@dataclasses.dataclass(frozen=True)
class LlamaConfig(DecoderConfig):
    """Llama: RMSNorm, grouped-query attention, rotary (split halves), SwiGLU."""


class Llama(Decoder):
    """Llama language model: ``ids (B, T)`` (and ``positions (B, T)``) -> logits ``(B, T, V)``.

    ``scan_layers=False`` unrolls the layers (params ``layers_0 ..``); decoding with a
    :class:`KVCache` as :class:`~composed_lifts.models.Decoder` does (see ``models.generate``).
    """


FIELDS = (
    *decoder_fields(),
    Fixed("hidden_act", ("silu",)),
    Fixed("attention_bias", (False,)),
    Fixed("mlp_bias", (False,)),
    Fixed("pretraining_tp", (1,)),
)


def _from_fields(values: dict, hf: dict) -> LlamaConfig:
    return LlamaConfig(**decoder_values(values))


def _to_hf(config: LlamaConfig) -> dict:
    return {
        **decoder_to_hf(config),
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
    }


FAMILY = Family(
    model_type="llama",
    architecture="LlamaForCausalLM",
    config_class=LlamaConfig,
    from_fields=_from_fields,
    to_hf=_to_hf,
    model=Llama,
    keymap=DECODER_KEYMAP,
    param_axes=DECODER_PARAM_AXES,
    fields=FIELDS,
    param_count=decoder_param_count,
)
