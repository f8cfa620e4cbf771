"""Logical names of the models' param axes, for ``ShardingRules.param_axes``.

The models' ``Dense`` and ``Embed`` params carry no partitioning metadata; each family's
table (``Family.param_axes``) names their per-layer axes by path (the stack's own layer
axis, and the batch for an ensemble, are named by the stack). Map the names onto a mesh
with ``ShardingRules(features=(("heads", "model"), ("mlp", "model")), ...)`` and pass
``stacks=("layers",)`` (the models' stack lives at ``params/layers``).
"""

from __future__ import annotations

from ._decoder_hf import DECODER_PARAM_AXES
from ._families.gpt2 import GPT2_PARAM_AXES
from ._layers import STACKS
from ._registry import family_of

__all__ = ["GPT2_PARAM_AXES", "LLAMA_PARAM_AXES", "STACKS", "param_axes"]


LLAMA_PARAM_AXES = DECODER_PARAM_AXES
"""The table of Llama and every Llama-like family (Mistral, Qwen, Gemma)."""


def param_axes(config) -> tuple:
    """The table for ``config``'s family."""
    return family_of(config).param_axes
