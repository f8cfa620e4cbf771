"""Hugging Face language models built on layer stacks, with their checkpoints in and out.

GPT-2, Llama, Mistral, Qwen2, Qwen3, Gemma, Gemma 2 and Gemma 3 (text), each a registered
family (``families()``; one module per family under ``_families/``).
``model, params = from_hf(folder)`` reads a ``save_pretrained`` folder;
``model.apply({"params": params}, ids)`` gives logits, ``generate(model, params,
ids, max_new_tokens)`` greedy tokens, and ``to_hf(params, model.config, folder)``
writes a folder ``transformers`` loads (see the README's "Hugging Face models").
"""

from ._attention import KVCache as KVCache
from ._decode import Generation as Generation
from ._decode import StopReason as StopReason
from ._decode import generate as generate
from ._decode import generate_with_details as generate_with_details
from ._decode import init_cache as init_cache
from ._decoder import Decoder as Decoder
from ._decoder import DecoderBlock as DecoderBlock
from ._decoder_config import Activation as Activation
from ._decoder_config import DecoderConfig as DecoderConfig
from ._decoder_config import DecoderSpec as DecoderSpec
from ._decoder_config import LayerKind as LayerKind
from ._families.gemma import Gemma as Gemma
from ._families.gemma import GemmaConfig as GemmaConfig
from ._families.gemma2 import Gemma2 as Gemma2
from ._families.gemma2 import Gemma2Config as Gemma2Config
from ._families.gemma3 import Gemma3 as Gemma3
from ._families.gemma3 import Gemma3TextConfig as Gemma3TextConfig
from ._families.gpt2 import GPT2Config as GPT2Config
from ._families.llama import Llama as Llama
from ._families.llama import LlamaConfig as LlamaConfig
from ._families.mistral import Mistral as Mistral
from ._families.mistral import MistralConfig as MistralConfig
from ._families.qwen2 import Qwen2 as Qwen2
from ._families.qwen2 import Qwen2Config as Qwen2Config
from ._families.qwen3 import Qwen3 as Qwen3
from ._families.qwen3 import Qwen3Config as Qwen3Config
from ._family import Family as Family
from ._fields import COMMON_IGNORED as COMMON_IGNORED
from ._fields import Fixed as Fixed
from ._fields import Ignored as Ignored
from ._fields import Read as Read
from ._gpt2 import GPT2 as GPT2
from ._gpt2 import GPT2Block as GPT2Block
from ._hf import GPT2_KEYMAP as GPT2_KEYMAP
from ._hf import LLAMA_KEYMAP as LLAMA_KEYMAP
from ._hf import abstract_params as abstract_params
from ._hf import folder_dtype as folder_dtype
from ._hf import from_hf as from_hf
from ._hf import model_for_config as model_for_config
from ._hf import read_generation_config as read_generation_config
from ._hf import to_hf as to_hf
from ._registry import config_from_hf as config_from_hf
from ._registry import config_to_hf as config_to_hf
from ._registry import families as families
from ._registry import family_for as family_for
from ._registry import family_of as family_of
from ._sharding_axes import GPT2_PARAM_AXES as GPT2_PARAM_AXES
from ._sharding_axes import LLAMA_PARAM_AXES as LLAMA_PARAM_AXES
from ._sharding_axes import STACKS as STACKS
from ._sharding_axes import param_axes as param_axes
from ._tokenizer import Tokenizer as Tokenizer

LlamaBlock = DecoderBlock  # the block of Llama and every Llama-like family

__all__ = [
    "Activation",
    "COMMON_IGNORED",
    "Decoder",
    "DecoderBlock",
    "DecoderConfig",
    "DecoderSpec",
    "Family",
    "Fixed",
    "GPT2",
    "GPT2_KEYMAP",
    "GPT2_PARAM_AXES",
    "Generation",
    "KVCache",
    "StopReason",
    "Tokenizer",
    "GPT2Block",
    "GPT2Config",
    "Gemma",
    "Gemma2",
    "Gemma2Config",
    "Gemma3",
    "Gemma3TextConfig",
    "GemmaConfig",
    "Ignored",
    "LLAMA_KEYMAP",
    "LLAMA_PARAM_AXES",
    "LayerKind",
    "Llama",
    "LlamaBlock",
    "LlamaConfig",
    "Mistral",
    "MistralConfig",
    "Qwen2",
    "Qwen2Config",
    "Qwen3",
    "Qwen3Config",
    "Read",
    "STACKS",
    "abstract_params",
    "config_from_hf",
    "config_to_hf",
    "folder_dtype",
    "families",
    "family_for",
    "family_of",
    "from_hf",
    "generate",
    "generate_with_details",
    "init_cache",
    "model_for_config",
    "param_axes",
    "read_generation_config",
    "to_hf",
]

# The NNX model is imported on first use (PEP 562), so Linen users do not import flax.nnx.
_LAZY = {"NNXLlama": "._llama_nnx", "NNXLlamaBlock": "._llama_nnx", "nnx_llama": "._llama_nnx"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'composed_lifts.models' has no attribute {name!r}")


__all__ += sorted(_LAZY)
