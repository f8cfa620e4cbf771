"""Mistral: Llama with sliding-window attention on every layer when ``sliding_window`` is set."""

from __future__ import annotations

import dataclasses

from .._decoder import Decoder
from .._decoder_config import DecoderConfig, LayerKind, decoder_param_count
from .._decoder_hf import (
    DECODER_KEYMAP,
    DECODER_PARAM_AXES,
    decoder_fields,
    decoder_to_hf,
    decoder_values,
)
from .._family import Family
from .._fields import Fixed, Ignored, Read, integer, optional

__all__ = ["FAMILY", "Mistral", "MistralConfig"]


@dataclasses.dataclass(frozen=True)
class MistralConfig(DecoderConfig):
    """Mistral: Llama's math; every layer attends to the last ``sliding_window`` tokens
    (including itself) when it is set, to all of them when it is None."""

    sliding_window: int | None = None

    def layer_kinds(self) -> tuple[LayerKind, ...]:
        return (LayerKind(self.sliding_window, self.rope_theta),) * self.num_hidden_layers


class Mistral(Decoder):
    """Mistral language model (see :class:`Decoder`)."""


FIELDS = (
    *decoder_fields(max_position_embeddings=4096 * 32),
    Read("sliding_window", optional(integer()), 4096),
    Fixed("hidden_act", ("silu",)),
    # MistralModel reads config.sliding_window for every layer; layer_types is not read.
    Ignored("layer_types"),
)


def _from_fields(values: dict, hf: dict) -> MistralConfig:
    return MistralConfig(**decoder_values(values), sliding_window=values["sliding_window"])


def _to_hf(config: MistralConfig) -> dict:
    return {**decoder_to_hf(config), "hidden_act": "silu", "sliding_window": config.sliding_window}


FAMILY = Family(
    model_type="mistral",
    architecture="MistralForCausalLM",
    config_class=MistralConfig,
    from_fields=_from_fields,
    to_hf=_to_hf,
    model=Mistral,
    keymap=DECODER_KEYMAP,
    param_axes=DECODER_PARAM_AXES,
    fields=FIELDS,
    param_count=decoder_param_count,
)
