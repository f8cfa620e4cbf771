"""GPT-2: learned positions, LayerNorm, fused QKV, GELU (tanh), head tied to the embedding."""

from __future__ import annotations

import dataclasses

from ..._keymap import KeyMap, Rule
from ...errors import ConfigValueError
from .._decoder_hf import per_layer
from .._family import Family
from .._fields import Entry, Fixed, Ignored, Read, integer, optional, real, shown, token_ids
from .._gpt2 import GPT2

__all__ = ["FAMILY", "GPT2_KEYMAP", "GPT2_PARAM_AXES", "GPT2Config"]


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
    bos_token_id: int | tuple[int, ...] | None = None
    eos_token_id: int | tuple[int, ...] | None = None

    @property
    def num_layers(self) -> int:
        return self.n_layer

    @property
    def max_positions(self) -> int:
        return self.n_positions


GPT2_KEYMAP = KeyMap(
    (
        Rule("wte/embedding", "transformer.wte.weight"),  # also the head (tied)
        Rule("wpe/embedding", "transformer.wpe.weight"),
        Rule("ln_f/scale", "transformer.ln_f.weight"),
        Rule("ln_f/bias", "transformer.ln_f.bias"),
        *per_layer(
            "transformer.h.{i}.",
            (
                Rule("{*m}/scale", "{m}.weight"),  # ln_1, ln_2
                Rule("{*m}/kernel", "{m}.weight"),  # Conv1D: (in, out) like ours, no transpose
                Rule("{*m}/bias", "{m}.bias"),
            ),
        ),
    )
)

GPT2_PARAM_AXES = (
    (r"wte.*embedding", ("vocab", "embed")),
    (r"wpe.*embedding", (None, "embed")),
    (r"c_attn.*kernel", ("embed", "heads")),
    (r"c_attn.*bias", ("heads",)),
    (r"attn.*c_proj.*kernel", ("heads", "embed")),
    (r"c_fc.*kernel", ("embed", "mlp")),
    (r"c_fc.*bias", ("mlp",)),
    (r"mlp.*c_proj.*kernel", ("mlp", "embed")),
    (r"(ln_1|ln_2|ln_f|c_proj).*(scale|bias)", ("embed",)),
)

FIELDS: tuple[Entry, ...] = (
    Read("vocab_size", integer()),
    Read("n_positions", integer()),
    Read("n_embd", integer()),
    Read("n_layer", integer()),
    Read("n_head", integer()),
    Read("n_inner", optional(integer()), None),
    Read("layer_norm_epsilon", real(), 1e-5),
    Read("bos_token_id", token_ids(), None),
    Read("eos_token_id", token_ids(), None),
    Fixed("activation_function", ("gelu_new", "gelu_pytorch_tanh")),
    Fixed("scale_attn_weights", (True,)),
    Fixed("scale_attn_by_inverse_layer_idx", (False,)),
    Fixed("reorder_and_upcast_attn", (False,)),
    Fixed("add_cross_attention", (False,)),
    Fixed("tie_word_embeddings", (True,)),
    # dropout (training only), the sequence-summary head of GPT2DoubleHeadsModel, task presets,
    # and the v4 alias n_ctx of n_positions (not read by transformers 5)
    *(
        Ignored(name)
        for name in (
            "resid_pdrop",
            "embd_pdrop",
            "attn_pdrop",
            "summary_type",
            "summary_use_proj",
            "summary_activation",
            "summary_proj_to_labels",
            "summary_first_dropout",
            "task_specific_params",
            "n_ctx",
        )
    ),
)


def _from_fields(values: dict, hf: dict) -> GPT2Config:
    n_embd, n_head = values["n_embd"], values["n_head"]
    if n_embd % n_head:
        raise ConfigValueError("n_head", shown(n_head), f"a divisor of n_embd={n_embd}")
    return GPT2Config(**{**values, "n_inner": values["n_inner"] or 4 * n_embd})


def _to_hf(config: GPT2Config) -> dict:
    out = dataclasses.asdict(config)
    for name in ("bos_token_id", "eos_token_id"):
        if isinstance(out[name], tuple):
            out[name] = list(out[name])
    return {**out, "activation_function": "gelu_new", "tie_word_embeddings": True}


def _param_count(c: GPT2Config) -> int:
    d, inner = c.n_embd, c.n_inner
    layer = (
        2 * d + (d * 3 * d + 3 * d) + (d * d + d) + 2 * d + (d * inner + inner) + (inner * d + d)
    )
    return c.vocab_size * d + c.n_positions * d + 2 * d + c.n_layer * layer


FAMILY = Family(
    model_type="gpt2",
    architecture="GPT2LMHeadModel",
    config_class=GPT2Config,
    from_fields=_from_fields,
    to_hf=_to_hf,
    model=GPT2,
    keymap=GPT2_KEYMAP,
    param_axes=GPT2_PARAM_AXES,
    fields=FIELDS,
    param_count=_param_count,
)
