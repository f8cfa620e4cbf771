"""The key maps of the model families: our param paths <-> Hugging Face tensor names (data).

A per-layer param is stacked on axis 0 under ``layers`` (scanned) or found under
``layers_{i}`` (unrolled); the same rules serve both. Llama's ``nn.Linear`` weights are
``(out, in)`` in the file and ``(in, out)`` here (``Transpose``); GPT-2's ``Conv1D``
weights are already ``(in, out)``, and its fused q, k, v tensor is our one ``c_attn``
kernel (split by the model, stored whole).
"""

from __future__ import annotations

from .._keymap import KeyMap, Rule, Transpose
from ..layout import layer_name
from ._sharding_axes import STACKS

__all__ = ["GPT2_KEYMAP", "LLAMA_KEYMAP"]


def _per_layer(prefix: str, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
    """``rules`` for a layer's params, scanned (``layers/...``) and unrolled (``layers_{i}/...``)."""
    return tuple(
        Rule(where + rule.path, prefix + rule.key, rule.ops)
        for where in (f"{STACKS[0].path}/", f"{layer_name('{i}')}/")
        for rule in rules
    )


GPT2_KEYMAP = KeyMap(
    (
        Rule("wte/embedding", "transformer.wte.weight"),  # also the head (tied)
        Rule("wpe/embedding", "transformer.wpe.weight"),
        Rule("ln_f/scale", "transformer.ln_f.weight"),
        Rule("ln_f/bias", "transformer.ln_f.bias"),
        *_per_layer(
            "transformer.h.{i}.",
            (
                Rule("{*m}/scale", "{m}.weight"),  # ln_1, ln_2
                Rule("{*m}/kernel", "{m}.weight"),  # Conv1D: (in, out) like ours, no transpose
                Rule("{*m}/bias", "{m}.bias"),
            ),
        ),
    )
)
"""GPT-2's ``GPT2LMHeadModel`` tensor names."""

LLAMA_KEYMAP = KeyMap(
    (
        Rule("embed_tokens/embedding", "model.embed_tokens.weight"),
        Rule("norm/scale", "model.norm.weight"),
        Rule("lm_head/kernel", "lm_head.weight", (Transpose(),)),  # absent when tied
        *_per_layer(
            "model.layers.{i}.",
            (
                Rule("{*m}/scale", "{m}.weight"),  # input_layernorm, post_attention_layernorm
                Rule("{*m}/kernel", "{m}.weight", (Transpose(),)),  # nn.Linear: (out, in)
            ),
        ),
    )
)
"""Llama's ``LlamaForCausalLM`` tensor names."""
