"""What the Llama-like families share in Hugging Face's files: fields, rope, key map, axes.

:func:`decoder_fields` is the field table every Llama-like config starts from (the
family adds and overrides entries); :func:`decoder_values` turns its checked values
into :class:`~._decoder_config.DecoderConfig` keyword arguments, checking the fields
that constrain each other; :func:`decoder_to_hf` is its inverse. :data:`DECODER_KEYMAP`
and :data:`DECODER_PARAM_AXES` serve every Llama-like family (a rule for a param a
family does not have matches nothing).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .._keymap import KeyMap, Rule, Transpose
from ..errors import ConfigValueError, UnsupportedConfigError
from ..layout import layer_name
from ._decoder_config import DecoderConfig
from ._fields import Entry, Fixed, Read, boolean, choice, integer, optional, real, shown, token_ids
from ._layers import STACKS

__all__ = [
    "DECODER_KEYMAP",
    "DECODER_PARAM_AXES",
    "decoder_fields",
    "decoder_to_hf",
    "decoder_values",
    "layer_types",
    "per_layer",
    "rope_theta",
]


def per_layer(prefix: str, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
    """``rules`` for a layer's params, scanned (``layers/...``) and unrolled (``layers_{i}/...``)."""
    return tuple(
        Rule(where + rule.path, prefix + rule.key, rule.ops)
        for where in (f"{STACKS[0].path}/", f"{layer_name('{i}')}/")
        for rule in rules
    )


DECODER_KEYMAP = KeyMap(
    (
        Rule("embed_tokens/embedding", "model.embed_tokens.weight"),
        Rule("norm/scale", "model.norm.weight"),
        Rule("lm_head/kernel", "lm_head.weight", (Transpose(),)),  # absent when tied
        *per_layer(
            "model.layers.{i}.",
            (
                Rule("{*m}/scale", "{m}.weight"),  # the RMSNorms (q_norm, k_norm per head)
                Rule("{*m}/kernel", "{m}.weight", (Transpose(),)),  # nn.Linear: (out, in)
                Rule("{*m}/bias", "{m}.bias"),  # Qwen2's q/k/v, attention_bias
            ),
        ),
    )
)

DECODER_PARAM_AXES = (
    (r"embed_tokens.*embedding", ("vocab", "embed")),
    (r"(q_proj|k_proj|v_proj).*kernel", ("embed", "heads")),
    (r"(q_proj|k_proj|v_proj).*bias", ("heads",)),
    (r"o_proj.*kernel", ("heads", "embed")),
    (r"o_proj.*bias", ("embed",)),
    (r"(gate_proj|up_proj).*kernel", ("embed", "mlp")),
    (r"down_proj.*kernel", ("mlp", "embed")),
    (r"(q_norm|k_norm).*scale", (None,)),  # over head_dim
    (r"norm.*scale", ("embed",)),
    (r"lm_head.*kernel", ("embed", "vocab")),
)


def rope_params_check(field: str, value: Any) -> dict | None:
    """``rope_parameters`` of the default type only: ``{"rope_type": "default", "rope_theta": x}``."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigValueError(field, shown(value), "a JSON object")
    rope_type = value.get("rope_type", value.get("type", "default"))
    if rope_type != "default":
        raise UnsupportedConfigError(f"{field}.rope_type", rope_type, "'default'")
    extra = sorted(set(value) - {"rope_type", "type", "rope_theta"})
    if extra:
        raise UnsupportedConfigError(f"{field}.{extra[0]}", value[extra[0]], "absent")
    if "rope_theta" in value:
        real()(f"{field}.rope_theta", value["rope_theta"])
    return value


def decoder_fields(
    *,
    head_dim: int | None = None,
    max_position_embeddings: int = 2048,
    tie_word_embeddings: bool = False,
) -> tuple[Entry, ...]:
    """The fields of every Llama-like config, with this family's defaults."""
    return (
        Read("vocab_size", integer()),
        Read("hidden_size", integer()),
        Read("intermediate_size", integer()),
        Read("num_hidden_layers", integer()),
        Read("num_attention_heads", integer()),
        Read("num_key_value_heads", optional(integer()), None),
        Read("head_dim", optional(integer()), head_dim),
        Read("max_position_embeddings", integer(), max_position_embeddings),
        Read("rms_norm_eps", real(), 1e-6),
        Read("tie_word_embeddings", boolean(), tie_word_embeddings),
        Read("bos_token_id", token_ids(), None),
        Read("eos_token_id", token_ids(), None),
        Read("rope_parameters", rope_params_check, None),
        Read("rope_theta", optional(real()), None),
        Fixed("rope_scaling", (None,)),
    )


def rope_theta(values: dict, default: float = 10000.0) -> float:
    """The rope base: ``rope_parameters["rope_theta"]``, else a v4 top-level ``rope_theta``."""
    params = values.get("rope_parameters") or {}
    if "rope_theta" in params:
        return float(params["rope_theta"])
    return default if values.get("rope_theta") is None else values["rope_theta"]


def layer_types() -> Read:
    """``layer_types``: one of ``"full_attention"``/``"sliding_attention"`` per layer."""
    kind = choice("full_attention", "sliding_attention")

    def check(field: str, value: Any) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not isinstance(value, list):
            raise ConfigValueError(field, shown(value), "a list of layer types")
        return tuple(kind(f"{field}[{i}]", v) for i, v in enumerate(value))

    return Read("layer_types", check, None)


def decoder_values(values: dict, *, theta_default: float = 10000.0) -> dict[str, Any]:
    """:class:`DecoderConfig` keyword arguments from checked ``values``; related fields checked."""
    hidden, heads = values["hidden_size"], values["num_attention_heads"]
    kv_heads = values["num_key_value_heads"] or heads
    if heads % kv_heads:
        raise ConfigValueError(
            "num_key_value_heads", shown(kv_heads), f"a divisor of num_attention_heads={heads}"
        )
    head_dim = values["head_dim"]
    if head_dim is None:
        if hidden % heads:
            raise ConfigValueError(
                "num_attention_heads", shown(heads), f"a divisor of hidden_size={hidden}"
            )
        head_dim = hidden // heads
    if head_dim % 2:
        raise ConfigValueError("head_dim", shown(head_dim), "an even number (rotary pairs)")
    fields = {f.name for f in dataclasses.fields(DecoderConfig)}
    out = {k: v for k, v in values.items() if k in fields}
    out.update(
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        rope_theta=rope_theta(values, theta_default),
    )
    if "layer_types" in values and values["layer_types"] is not None:
        n = values["num_hidden_layers"]
        if len(values["layer_types"]) != n:
            raise ConfigValueError(
                "layer_types",
                f"a list of {len(values['layer_types'])}",
                f"one entry per layer (num_hidden_layers={n})",
            )
    return out


def decoder_to_hf(config: DecoderConfig) -> dict[str, Any]:
    """The ``config.json`` fields of :class:`DecoderConfig`'s own fields (subclasses add theirs)."""
    out = {f.name: getattr(config, f.name) for f in dataclasses.fields(DecoderConfig)}
    theta = out.pop("rope_theta")
    for name in ("bos_token_id", "eos_token_id"):
        if isinstance(out[name], tuple):
            out[name] = list(out[name])
    out["rope_parameters"] = {"rope_type": "default", "rope_theta": theta}
    return out
