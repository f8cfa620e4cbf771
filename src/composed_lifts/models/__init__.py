"""GPT-2 and Llama built on layer stacks, with Hugging Face checkpoints in and out.

``model, params = from_hf(folder)`` reads a ``save_pretrained`` folder;
``model.apply({"params": params}, ids)`` gives logits, ``generate(model, params,
ids, max_new_tokens)`` greedy tokens, and ``to_hf(params, model.config, folder)``
writes a folder ``transformers`` loads (see the README's "Hugging Face models").
"""

from ._attention import KVCache as KVCache
from ._config import GPT2Config as GPT2Config
from ._config import LlamaConfig as LlamaConfig
from ._config import config_from_hf as config_from_hf
from ._config import config_to_hf as config_to_hf
from ._decode import Generation as Generation
from ._decode import StopReason as StopReason
from ._decode import generate as generate
from ._decode import generate_with_details as generate_with_details
from ._decode import init_cache as init_cache
from ._gpt2 import GPT2 as GPT2
from ._gpt2 import GPT2Block as GPT2Block
from ._hf import from_hf as from_hf
from ._hf import model_for_config as model_for_config
from ._hf import read_generation_config as read_generation_config
from ._hf import to_hf as to_hf
from ._llama import Llama as Llama
from ._llama import LlamaBlock as LlamaBlock
from ._sharding_axes import GPT2_PARAM_AXES as GPT2_PARAM_AXES
from ._sharding_axes import LLAMA_PARAM_AXES as LLAMA_PARAM_AXES
from ._sharding_axes import STACKS as STACKS
from ._sharding_axes import param_axes as param_axes
from ._tokenizer import Tokenizer as Tokenizer

__all__ = [
    "GPT2",
    "GPT2_PARAM_AXES",
    "Generation",
    "KVCache",
    "StopReason",
    "Tokenizer",
    "GPT2Block",
    "GPT2Config",
    "Llama",
    "LlamaBlock",
    "LlamaConfig",
    "LLAMA_PARAM_AXES",
    "STACKS",
    "config_from_hf",
    "config_to_hf",
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
