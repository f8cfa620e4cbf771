"""Gemma 2: Gemma with sliding and global layers alternating (even layers slide), soft-capped
attention scores and logits, norms before and after each sub-block, and scores scaled by
``query_pre_attn_scalar ** -0.5``."""

from __future__ import annotations

import dataclasses

from ...errors import ConfigValueError
from .._decoder import Decoder
from .._decoder_config import (
    Activation,
    DecoderConfig,
    DecoderSpec,
    LayerKind,
    decoder_param_count,
)
from .._decoder_hf import (
    DECODER_KEYMAP,
    DECODER_PARAM_AXES,
    decoder_fields,
    decoder_to_hf,
    decoder_values,
    layer_types,
)
from .._family import Family
from .._fields import Fixed, Ignored, Read, boolean, choice, integer, optional, real

__all__ = ["FAMILY", "Gemma2", "Gemma2Config", "gemma_layer_kinds", "gemma_sliding_fields"]

_ACTIVATIONS = {"gelu_pytorch_tanh": Activation.GELU_TANH, "gelu": Activation.GELU}


@dataclasses.dataclass(frozen=True)
class Gemma2Config(DecoderConfig):
    """Gemma 2. Layer ``i`` slides (the last ``sliding_window`` tokens) as ``layer_types[i]``
    says, by default iff ``i`` is even."""

    tie_word_embeddings: bool = True
    hidden_activation: str = "gelu_pytorch_tanh"
    query_pre_attn_scalar: int | float = 256
    sliding_window: int | None = 4096
    layer_types: tuple[str, ...] | None = None
    attn_logit_softcapping: float | None = 50.0
    final_logit_softcapping: float | None = 30.0
    attention_bias: bool = False

    @property
    def spec(self) -> DecoderSpec:
        return _gemma2_spec(self, qk_norm=False)

    def layer_kinds(self) -> tuple[LayerKind, ...]:
        default = tuple(
            "sliding_attention" if i % 2 == 0 else "full_attention"
            for i in range(self.num_hidden_layers)
        )
        return gemma_layer_kinds(self, default, self.rope_theta)


def _gemma2_spec(config, *, qk_norm: bool) -> DecoderSpec:
    return DecoderSpec(
        attn_scale=config.query_pre_attn_scalar**-0.5,
        qkv_bias=config.attention_bias,
        o_bias=config.attention_bias,
        qk_norm=qk_norm,
        norm_offset=True,
        sandwich_norms=True,
        activation=_ACTIVATIONS[config.hidden_activation],
        embed_scale=True,
        attn_softcap=config.attn_logit_softcapping,
        final_softcap=config.final_logit_softcapping,
    )


def gemma_layer_kinds(config, default: tuple[str, ...], local_theta: float):
    """Sliding layers (``layer_types``, else ``default``) get the window and ``local_theta``,
    the others no window and ``config.rope_theta``."""
    types = config.layer_types or default
    return tuple(
        LayerKind(config.sliding_window, local_theta)
        if kind == "sliding_attention"
        else LayerKind(None, config.rope_theta)
        for kind in types
    )


class Gemma2(Decoder):
    """Gemma 2 language model (see :class:`Decoder`)."""


def gemma_sliding_fields(final_cap: float | None):
    """The fields Gemma 2 and 3 share (the final soft-cap's default differs)."""
    return (
        Read("hidden_activation", choice(*_ACTIVATIONS), "gelu_pytorch_tanh"),
        Read("query_pre_attn_scalar", real(keep_int=True), 256),
        Read("sliding_window", optional(integer()), 4096),
        layer_types(),
        Read("final_logit_softcapping", optional(real()), final_cap),
        Read("attention_bias", boolean(), False),
        Fixed("use_bidirectional_attention", (None, False)),
        # transformers 5 reads hidden_activation only; v4 hub configs carry these too.
        Ignored("hidden_act"),
        Ignored("cache_implementation"),
        Ignored("sliding_window_size"),
    )


FIELDS = (
    *decoder_fields(head_dim=256, max_position_embeddings=8192, tie_word_embeddings=True),
    *gemma_sliding_fields(30.0),
    Read("attn_logit_softcapping", optional(real()), 50.0),
)

_OWN = (
    "hidden_activation",
    "query_pre_attn_scalar",
    "sliding_window",
    "layer_types",
    "final_logit_softcapping",
    "attention_bias",
)


def gemma_values(values: dict) -> dict:
    """Gemma 2/3's own fields, checked against each other."""
    types = values["layer_types"]
    if values["sliding_window"] is None and types is not None and "sliding_attention" in types:
        raise ConfigValueError(
            "sliding_window", "None", "a window for the layers layer_types says slide"
        )
    return {name: values[name] for name in _OWN}


def gemma_to_hf(config) -> dict:
    out = {name: getattr(config, name) for name in _OWN}
    if config.layer_types is None:
        del out["layer_types"]
    else:
        out["layer_types"] = list(config.layer_types)
    return out


def _from_fields(values: dict, hf: dict) -> Gemma2Config:
    if values["sliding_window"] is None and values["layer_types"] is None:
        raise ConfigValueError("sliding_window", "None", "a window for the even layers")
    return Gemma2Config(
        **decoder_values(values),
        **gemma_values(values),
        attn_logit_softcapping=values["attn_logit_softcapping"],
    )


def _to_hf(config: Gemma2Config) -> dict:
    return {
        **decoder_to_hf(config),
        **gemma_to_hf(config),
        "attn_logit_softcapping": config.attn_logit_softcapping,
    }


FAMILY = Family(
    model_type="gemma2",
    architecture="Gemma2ForCausalLM",
    config_class=Gemma2Config,
    from_fields=_from_fields,
    to_hf=_to_hf,
    model=Gemma2,
    keymap=DECODER_KEYMAP,
    param_axes=DECODER_PARAM_AXES,
    fields=FIELDS,
    param_count=decoder_param_count,
)
