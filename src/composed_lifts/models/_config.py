"""Model configs read from (and written to) a Hugging Face ``config.json``.

``config_from_hf(dict)`` returns a :class:`GPT2Config` or a :class:`LlamaConfig`,
refusing any setting these models do not implement with
:class:`~composed_lifts.errors.UnsupportedConfigError` naming the field;
``config_to_hf(config)`` is its inverse (a dict ``transformers`` reads back).
"""

from __future__ import annotations

import dataclasses

from .._errors import UnsupportedConfigError

__all__ = ["GPT2Config", "LlamaConfig", "config_from_hf", "config_to_hf"]


@dataclasses.dataclass(frozen=True)
class GPT2Config:
    """GPT-2: learned positions, LayerNorm, fused QKV, GELU (tanh), head tied to the embedding."""

    vocab_size: int
    n_positions: int
    n_embd: int
    n_layer: int
    n_head: int
    n_inner: int
    layer_norm_epsilon: float = 1e-5
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None

    @property
    def num_layers(self) -> int:
        return self.n_layer

    @property
    def max_positions(self) -> int:
        return self.n_positions


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """Llama: RMSNorm, grouped-query attention, rotary (split halves), SwiGLU."""

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
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None

    @property
    def num_layers(self) -> int:
        return self.num_hidden_layers

    @property
    def max_positions(self) -> int:
        return self.max_position_embeddings


# Settings that change the computation, with the one value these models implement
# (a missing key means transformers' default, which is that value).
_GPT2_FIXED = {
    "activation_function": ("gelu_new", "gelu_pytorch_tanh"),
    "scale_attn_weights": (True,),
    "scale_attn_by_inverse_layer_idx": (False,),
    "reorder_and_upcast_attn": (False,),
    "add_cross_attention": (False,),
    "tie_word_embeddings": (True,),
}
_LLAMA_FIXED = {
    "hidden_act": ("silu",),
    "attention_bias": (False,),
    "mlp_bias": (False,),
    "pretraining_tp": (1,),
    "rope_scaling": (None,),
}
_ARCHITECTURES = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"}


def _check_fixed(hf: dict, fixed: dict) -> None:
    for field, allowed in fixed.items():
        if field in hf and hf[field] not in allowed:
            raise UnsupportedConfigError(field, hf[field], " or ".join(map(repr, allowed)))


def _require(hf: dict, field: str):
    if field not in hf:
        raise UnsupportedConfigError(field, "(missing)", "a value in config.json")
    return hf[field]


def _rope_theta(hf: dict) -> float:
    """``rope_theta`` from a v5 ``rope_parameters`` or a v4 top-level key; only the default type."""
    params = hf.get("rope_parameters")
    if params is None:
        return float(hf.get("rope_theta", 10000.0))
    if not isinstance(params, dict):
        raise UnsupportedConfigError("rope_parameters", params, "a dict")
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type != "default":
        raise UnsupportedConfigError("rope_parameters.rope_type", rope_type, "'default'")
    extra = sorted(set(params) - {"rope_type", "type", "rope_theta"})
    if extra:
        raise UnsupportedConfigError(f"rope_parameters.{extra[0]}", params[extra[0]], "absent")
    return float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))


def config_from_hf(hf: dict) -> GPT2Config | LlamaConfig:
    """Our config for a Hugging Face ``config.json`` dict; unsupported settings are refused."""
    model_type = hf.get("model_type")
    if model_type not in _ARCHITECTURES:
        raise UnsupportedConfigError("model_type", model_type, "'gpt2' or 'llama'")
    architectures = hf.get("architectures") or [_ARCHITECTURES[model_type]]
    if list(architectures) != [_ARCHITECTURES[model_type]]:
        raise UnsupportedConfigError(
            "architectures", architectures, f"[{_ARCHITECTURES[model_type]!r}]"
        )
    if model_type == "gpt2":
        _check_fixed(hf, _GPT2_FIXED)
        n_embd = int(_require(hf, "n_embd"))
        n_head = int(_require(hf, "n_head"))
        if n_embd % n_head:
            raise UnsupportedConfigError("n_head", n_head, f"a divisor of n_embd={n_embd}")
        return GPT2Config(
            vocab_size=int(_require(hf, "vocab_size")),
            n_positions=int(_require(hf, "n_positions")),
            n_embd=n_embd,
            n_layer=int(_require(hf, "n_layer")),
            n_head=n_head,
            n_inner=int(hf.get("n_inner") or 4 * n_embd),
            layer_norm_epsilon=float(hf.get("layer_norm_epsilon", 1e-5)),
            bos_token_id=hf.get("bos_token_id"),
            eos_token_id=eos_ids(hf.get("eos_token_id")),
        )
    _check_fixed(hf, _LLAMA_FIXED)
    hidden = int(_require(hf, "hidden_size"))
    heads = int(_require(hf, "num_attention_heads"))
    kv_heads = int(hf.get("num_key_value_heads") or heads)
    if heads % kv_heads:
        raise UnsupportedConfigError(
            "num_key_value_heads", kv_heads, f"a divisor of num_attention_heads={heads}"
        )
    head_dim = int(hf.get("head_dim") or hidden // heads)
    if head_dim % 2:
        raise UnsupportedConfigError("head_dim", head_dim, "an even number (rotary pairs)")
    return LlamaConfig(
        vocab_size=int(_require(hf, "vocab_size")),
        hidden_size=hidden,
        intermediate_size=int(_require(hf, "intermediate_size")),
        num_hidden_layers=int(_require(hf, "num_hidden_layers")),
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        max_position_embeddings=int(hf.get("max_position_embeddings", 2048)),
        rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        rope_theta=_rope_theta(hf),
        tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
        bos_token_id=hf.get("bos_token_id"),
        eos_token_id=eos_ids(hf.get("eos_token_id")),
    )


def eos_ids(value, field: str = "eos_token_id") -> int | tuple[int, ...] | None:
    """``eos_token_id`` as a config holds it: an int, a tuple of ints (a JSON list), or None."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, (list, tuple)) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        return tuple(value)
    raise UnsupportedConfigError(field, value, "an int or a list of ints")


def config_to_hf(config: GPT2Config | LlamaConfig) -> dict:
    """The ``config.json`` dict for ``config`` (``transformers`` fills in its other defaults)."""
    fields = dataclasses.asdict(config)
    if isinstance(fields["eos_token_id"], tuple):
        fields["eos_token_id"] = list(fields["eos_token_id"])
    if isinstance(config, GPT2Config):
        model_type = "gpt2"
        fields.update(activation_function="gelu_new", tie_word_embeddings=True)
    else:
        model_type = "llama"
        theta = fields.pop("rope_theta")
        fields.update(
            hidden_act="silu",
            attention_bias=False,
            mlp_bias=False,
            rope_parameters={"rope_type": "default", "rope_theta": theta},
        )
    return {"architectures": [_ARCHITECTURES[model_type]], "model_type": model_type, **fields}
