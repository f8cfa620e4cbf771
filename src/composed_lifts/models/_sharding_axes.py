"""Logical names of GPT-2's and Llama's param axes, for ``ShardingRules.param_axes``.

The models' ``Dense`` and ``Embed`` params carry no partitioning metadata; these tables
name their per-layer axes by path (the stack's own layer axis, and the batch for an
ensemble, are named by the stack). Map the names onto a mesh with
``ShardingRules(features=(("heads", "model"), ("mlp", "model")), ...)`` and pass
``stacks=("layers",)`` (the models' stack lives at ``params/layers``).
"""

from __future__ import annotations

from ..layout import Stack
from ._config import GPT2Config, LlamaConfig

__all__ = ["GPT2_PARAM_AXES", "LLAMA_PARAM_AXES", "STACKS", "param_axes"]

STACKS = (Stack("layers"),)
"""Where the models' stacked layers are in their params (``params/layers``, scanned)."""

LLAMA_PARAM_AXES = (
    (r"embed_tokens.*embedding", ("vocab", "embed")),
    (r"(q_proj|k_proj|v_proj).*kernel", ("embed", "heads")),
    (r"o_proj.*kernel", ("heads", "embed")),
    (r"(gate_proj|up_proj).*kernel", ("embed", "mlp")),
    (r"down_proj.*kernel", ("mlp", "embed")),
    (r"norm.*scale", ("embed",)),
    (r"lm_head.*kernel", ("embed", "vocab")),
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


def param_axes(config: GPT2Config | LlamaConfig) -> tuple:
    """The table for ``config``'s architecture."""
    return LLAMA_PARAM_AXES if isinstance(config, LlamaConfig) else GPT2_PARAM_AXES
