"""Gemma 3 text (``Gemma3ForCausalLM``): Gemma 2's layers with RMSNorm (1 + w) of each query
and key head before rotary, five sliding layers to one global one, and the sliding layers'
own rope base ``rope_local_base_freq``; no soft-caps by default."""

from __future__ import annotations

import dataclasses
from typing import Any

from ...errors import ConfigValueError, UnsupportedConfigError
from .._decoder import Decoder
from .._decoder_config import DecoderConfig, DecoderSpec, LayerKind, decoder_param_count
from .._decoder_hf import (
    DECODER_KEYMAP,
    DECODER_PARAM_AXES,
    decoder_fields,
    decoder_to_hf,
    decoder_values,
    rope_params_check,
)
from .._family import Family
from .._fields import Fixed, Ignored, Read, integer, optional, real, shown
from .gemma2 import _gemma2_spec, gemma_layer_kinds, gemma_sliding_fields, gemma_to_hf, gemma_values

__all__ = ["FAMILY", "Gemma3", "Gemma3TextConfig"]


@dataclasses.dataclass(frozen=True)
class Gemma3TextConfig(DecoderConfig):
    """Gemma 3 text. Layer ``i`` slides as ``layer_types[i]`` says, by default iff
    ``(i + 1) % sliding_window_pattern``; sliding layers use ``rope_local_base_freq``,
    global ones ``rope_theta``."""

    rope_theta: float = 1_000_000.0
    tie_word_embeddings: bool = True
    hidden_activation: str = "gelu_pytorch_tanh"
    query_pre_attn_scalar: int | float = 256
    sliding_window: int | None = 4096
    layer_types: tuple[str, ...] | None = None
    final_logit_softcapping: float | None = None
    attention_bias: bool = False
    rope_local_base_freq: float = 10_000.0
    sliding_window_pattern: int = 6

    @property
    def attn_logit_softcapping(self) -> None:
        return None  # Gemma3Attention passes no softcap to its attention (transformers 5.24)

    @property
    def spec(self) -> DecoderSpec:
        return _gemma2_spec(self, qk_norm=True)

    def layer_kinds(self) -> tuple[LayerKind, ...]:
        p = self.sliding_window_pattern
        default = tuple(
            "sliding_attention" if (i + 1) % p else "full_attention"
            for i in range(self.num_hidden_layers)
        )
        return gemma_layer_kinds(self, default, self.rope_local_base_freq)


class Gemma3(Decoder):
    """Gemma 3 text language model (see :class:`Decoder`)."""


def _rope_check(field: str, value: Any) -> dict | None:
    """Gemma 3's ``rope_parameters``: ``{"full_attention": {...}, "sliding_attention": {...}}``,
    each of the default type."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigValueError(field, shown(value), "a JSON object")
    for key, params in value.items():
        if key not in ("full_attention", "sliding_attention"):
            raise UnsupportedConfigError(
                f"{field}.{key}", params, "'full_attention' and 'sliding_attention' entries"
            )
        rope_params_check(f"{field}.{key}", params)
    return value


FIELDS = (
    *(
        e
        for e in decoder_fields(
            head_dim=256, max_position_embeddings=131_072, tie_word_embeddings=True
        )
        if e.name != "rope_parameters"
    ),
    Read("rope_parameters", _rope_check, None),
    Read("rope_local_base_freq", optional(real()), None),
    Read("sliding_window_pattern", integer(), 6),
    *gemma_sliding_fields(None),
    Fixed("attn_logit_softcapping", (None,)),
    Ignored("_sliding_window_pattern"),  # transformers keeps it, reads sliding_window_pattern
)


def _from_fields(values: dict, hf: dict) -> Gemma3TextConfig:
    if values["sliding_window"] is None and values["layer_types"] is None:
        raise ConfigValueError("sliding_window", "None", "a window for the sliding layers")
    rope = values["rope_parameters"] or {}
    full = rope.get("full_attention") or {}
    sliding = rope.get("sliding_attention") or {}
    base = decoder_values({**values, "rope_parameters": full}, theta_default=1_000_000.0)
    local = values["rope_local_base_freq"]
    return Gemma3TextConfig(
        **base,
        **gemma_values(values),
        rope_local_base_freq=sliding.get("rope_theta", 10_000.0 if local is None else local),
        sliding_window_pattern=values["sliding_window_pattern"],
    )


def _to_hf(config: Gemma3TextConfig) -> dict:
    out = {**decoder_to_hf(config), **gemma_to_hf(config)}
    out["rope_parameters"] = {
        "full_attention": {"rope_type": "default", "rope_theta": config.rope_theta},
        "sliding_attention": {"rope_type": "default", "rope_theta": config.rope_local_base_freq},
    }
    out["sliding_window_pattern"] = config.sliding_window_pattern
    return out


FAMILY = Family(
    model_type="gemma3_text",
    architecture="Gemma3ForCausalLM",
    config_class=Gemma3TextConfig,
    from_fields=_from_fields,
    to_hf=_to_hf,
    model=Gemma3,
    keymap=DECODER_KEYMAP,
    param_axes=DECODER_PARAM_AXES,
    fields=FIELDS,
    param_count=decoder_param_count,
)
