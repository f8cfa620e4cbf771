"""Qwen2: Llama with q/k/v biases, and a sliding window on the layers ``layer_types`` names."""

from __future__ import annotations

import dataclasses

from ...errors import ConfigValueError
from .._decoder import Decoder
from .._decoder_config import DecoderConfig, DecoderSpec, LayerKind, decoder_param_count
from .._decoder_hf import (
    DECODER_KEYMAP,
    DECODER_PARAM_AXES,
    decoder_fields,
    decoder_to_hf,
    decoder_values,
    layer_types,
)
from .._family import Family
from .._fields import Fixed, Read, boolean, integer, optional

__all__ = ["FAMILY", "Qwen2", "Qwen2Config", "qwen_layer_kinds"]


@dataclasses.dataclass(frozen=True)
class Qwen2Config(DecoderConfig):
    """Qwen2: q/k/v biases; the window (``sliding_window`` when ``use_sliding_window``) on the
    layers ``layer_types`` says, by default those from ``max_window_layers`` on."""

    sliding_window: int | None = None
    use_sliding_window: bool = False
    max_window_layers: int = 28
    layer_types: tuple[str, ...] | None = None

    @property
    def spec(self) -> DecoderSpec:
        return DecoderSpec(attn_scale=self.head_dim**-0.5, qkv_bias=True)

    def layer_kinds(self) -> tuple[LayerKind, ...]:
        return qwen_layer_kinds(self)


def qwen_layer_kinds(config) -> tuple[LayerKind, ...]:
    """``Qwen2Config.__post_init__``'s rule: window iff ``use_sliding_window``; layer ``i``
    slides as ``layer_types[i]`` says, by default iff ``i >= max_window_layers``."""
    window = config.sliding_window if config.use_sliding_window else None
    types = config.layer_types or tuple(
        "sliding_attention"
        if window is not None and i >= config.max_window_layers
        else "full_attention"
        for i in range(config.num_hidden_layers)
    )
    return tuple(
        LayerKind(window if kind == "sliding_attention" else None, config.rope_theta)
        for kind in types
    )


class Qwen2(Decoder):
    """Qwen2 language model (see :class:`Decoder`)."""


def qwen_fields(values: dict) -> dict:
    """The sliding-window fields of a Qwen config, checked against each other."""
    window = values["sliding_window"] if values["use_sliding_window"] else None
    types = values["layer_types"]
    if window is None and types is not None and "sliding_attention" in types:
        raise ConfigValueError(
            "layer_types",
            f"sliding_attention at layer {types.index('sliding_attention')}",
            "full_attention only while there is no window (use_sliding_window false or "
            "sliding_window null)",
        )
    return {
        name: values[name]
        for name in ("sliding_window", "use_sliding_window", "max_window_layers", "layer_types")
    }


def qwen_sliding_to_hf(config) -> dict:
    out = {
        "sliding_window": config.sliding_window,
        "use_sliding_window": config.use_sliding_window,
        "max_window_layers": config.max_window_layers,
        "hidden_act": "silu",
    }
    if config.layer_types is not None:
        out["layer_types"] = list(config.layer_types)
    return out


QWEN_SLIDING_FIELDS = (
    Read("sliding_window", optional(integer()), 4096),
    Read("use_sliding_window", boolean(), False),
    Read("max_window_layers", integer(minimum=0), 28),
    layer_types(),
    Fixed("hidden_act", ("silu",)),
)

FIELDS = (*decoder_fields(max_position_embeddings=32768), *QWEN_SLIDING_FIELDS)


def _from_fields(values: dict, hf: dict) -> Qwen2Config:
    return Qwen2Config(**decoder_values(values), **qwen_fields(values))


def _to_hf(config: Qwen2Config) -> dict:
    return {**decoder_to_hf(config), **qwen_sliding_to_hf(config)}


FAMILY = Family(
    model_type="qwen2",
    architecture="Qwen2ForCausalLM",
    config_class=Qwen2Config,
    from_fields=_from_fields,
    to_hf=_to_hf,
    model=Qwen2,
    keymap=DECODER_KEYMAP,
    param_axes=DECODER_PARAM_AXES,
    fields=FIELDS,
    param_count=decoder_param_count,
)
