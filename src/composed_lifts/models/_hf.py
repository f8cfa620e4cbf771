"""Hugging Face checkpoints in and out: ``from_hf(folder)`` and ``to_hf(params, config, folder)``.

The correspondence between our param paths and Hugging Face's tensor names is
data: a :class:`~composed_lifts.KeyMap` per architecture (``_keymap.py``), whose
``{i}`` is the layer index. A per-layer param is stacked on axis 0 under
``layers`` (scanned) or found under ``layers_{i}`` (unrolled); the same rules
serve both. Llama's ``nn.Linear`` weights are ``(out, in)`` in the file and
``(in, out)`` here (``Transpose``); GPT-2's ``Conv1D`` weights are already
``(in, out)``, and its fused q, k, v tensor is our one ``c_attn`` kernel.

Loading is streamed: ``read_state`` allocates each stacked array once and
fills it one layer at a time from ``safetensors.safe_open`` (one file or the
shards of ``model.safetensors.index.json``), casting each tensor to ``dtype``
as it is read. A missing key (``MissingKeyError``), a key no rule reads
(``KeyMapError``) or a tensor of the wrong shape (``TensorMismatchError``) is
refused before any tensor's data is read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import safetensors
import safetensors.numpy

from .._errors import (
    ArgumentTypeError,
    InputFileError,
    LayoutMismatchError,
    OutputFileError,
    UnsupportedConfigError,
)
from .._files import atomic_writer
from .._keymap import KeyMap, Rule, Transpose, iter_state_dict, path_str, read_state
from ._config import GPT2Config, LlamaConfig, config_from_hf, config_to_hf, eos_ids
from ._gpt2 import GPT2
from ._llama import Llama

__all__ = [
    "GPT2_KEYMAP",
    "LLAMA_KEYMAP",
    "from_hf",
    "model_for_config",
    "read_generation_config",
    "to_hf",
]

# generation_config.json fields that generate reads (transformers' names)
_GENERATION_FIELDS = (
    "do_sample",
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "repetition_penalty",
    "eos_token_id",
    "pad_token_id",
    "bos_token_id",
)


def _per_layer(prefix: str, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
    """``rules`` for a layer's params, scanned (``layers/...``) and unrolled (``layers_{i}/...``)."""
    return tuple(
        Rule(where + rule.path, prefix + rule.key, rule.ops)
        for where in ("layers/", "layers_{i}/")
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


def model_for_config(config: GPT2Config | LlamaConfig, *, scan_layers=True):
    """The Linen model for ``config``: :class:`GPT2` or :class:`Llama`."""
    if not isinstance(config, (GPT2Config, LlamaConfig)):
        raise ArgumentTypeError(
            "config",
            "a models.GPT2Config or models.LlamaConfig",
            type(config).__name__,
            "pass e.g. model.config, or config_from_hf(json.load(open('config.json')))",
        )
    if isinstance(config, GPT2Config):
        return GPT2(config, scan_layers=scan_layers)
    return Llama(config, scan_layers=scan_layers)


def _keymap(config) -> KeyMap:
    return GPT2_KEYMAP if isinstance(config, GPT2Config) else LLAMA_KEYMAP


def _abstract_params(model, dtype) -> dict:
    """The model's param tree as ``jax.ShapeDtypeStruct`` leaves of ``dtype`` (nothing computed)."""
    ids = jnp.zeros((1, 1), jnp.int32)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), ids)["params"]
    return jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(s.shape, dtype), shapes)


def _read_config(folder: Path):
    path = folder / "config.json"
    if not path.is_file():
        raise InputFileError(
            f"folder {str(folder)!r}", "has no config.json", "give a save_pretrained folder"
        )
    try:
        hf = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputFileError(f"{str(path)!r}", f"is not valid JSON: {err}") from None
    if not isinstance(hf, dict):
        raise InputFileError(
            f"{str(path)!r}", f"must hold a JSON object, but holds a {type(hf).__name__}"
        )
    return config_from_hf(hf)


def read_generation_config(folder: str | os.PathLike) -> dict:
    """The generation settings of a folder's ``generation_config.json`` ({} without one).

    Only the fields :func:`~composed_lifts.models.generate` uses, ``None`` ones
    dropped: pass the dict as ``generate(..., generation_config=...)``.
    """
    path = Path(folder) / "generation_config.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputFileError(f"{str(path)!r}", f"is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise InputFileError(f"{str(path)!r}", "must hold a JSON object")
    out = {key: data[key] for key in _GENERATION_FIELDS if data.get(key) is not None}
    if "eos_token_id" in out:
        out["eos_token_id"] = eos_ids(out["eos_token_id"], "generation_config.eos_token_id")
    return out


def _open_tensors(folder: Path, stack: contextlib.ExitStack) -> dict:
    """Tensor name -> open ``safe_open`` handle holding it (one file, or every shard of an index)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            files = sorted(
                set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
            )
        except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as err:
            raise InputFileError(
                f"{str(index)!r}", f"is not a safetensors index: {err!r}"
            ) from None
    elif (folder / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise InputFileError(
            f"folder {str(folder)!r}",
            "has neither model.safetensors nor model.safetensors.index.json",
            "save the model with save_pretrained (safetensors is its default)",
        )
    handles = {}
    for file in files:
        path = folder / file
        try:
            handle = stack.enter_context(safetensors.safe_open(str(path), framework="np"))
        except (OSError, safetensors.SafetensorError) as err:
            raise InputFileError(
                f"{str(path)!r}", f"cannot be read as safetensors: {err}"
            ) from None
        handles.update(dict.fromkeys(handle.keys(), handle))
    return handles


def _folder_dtype(folder: Path):
    """The dtype ``config.json`` records (``dtype``, or v4's ``torch_dtype``); float32 if none."""
    hf = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    name = hf.get("dtype") or hf.get("torch_dtype") or "float32"
    if name not in ("float32", "bfloat16", "float16"):
        raise UnsupportedConfigError("dtype", name, "'float32', 'bfloat16' or 'float16'")
    return jnp.dtype(name)


def from_hf(folder: str | os.PathLike, *, scan_layers: bool = True, dtype=jnp.float32):
    """Read a Hugging Face ``save_pretrained`` folder: returns ``(model, params)``.

    ``model`` is a :class:`GPT2` or :class:`Llama` (``scan_layers=False``: unrolled)
    and ``params`` its param tree, every tensor cast to ``dtype`` as it is read
    (a bfloat16 file loads as float32 by default; ``dtype=None``: the dtype
    ``config.json`` records). Layers are read one at a time into preallocated
    stacks. The config's ``eos_token_id`` is ``generation_config.json``'s when
    the folder has one that sets it.
    """
    folder = Path(folder)
    config = _read_config(folder)
    eos = read_generation_config(folder).get("eos_token_id")
    if eos is not None:  # generation_config.json's ids win, as in transformers
        config = dataclasses.replace(config, eos_token_id=eos)
    model = model_for_config(config, scan_layers=scan_layers)
    dtype = _folder_dtype(folder) if dtype is None else jnp.dtype(dtype)
    like = _abstract_params(model, dtype)
    with contextlib.ExitStack() as stack:
        handles = _open_tensors(folder, stack)

        def read(key: str) -> np.ndarray:
            return handles[key].get_tensor(key).astype(dtype, copy=False)

        def spec(key: str) -> tuple:  # from the header: shapes are checked before any read
            return tuple(handles[key].get_slice(key).get_shape()), dtype

        arrays = read_state(read, _keymap(config), like, keys=list(handles), spec=spec)
    return model, jax.tree_util.tree_map(jnp.asarray, arrays)


def _check_params(params, like) -> None:
    """``params`` has ``like``'s tree structure and shapes (else a LayoutMismatchError naming the leaf)."""
    got = {path_str(p): np.shape(x) for p, x in jax.tree_util.tree_flatten_with_path(params)[0]}
    want = {path_str(p): s.shape for p, s in jax.tree_util.tree_flatten_with_path(like)[0]}
    if set(got) != set(want):
        missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        raise LayoutMismatchError(
            "the params given to to_hf",
            f"differ from the config's model: missing {missing}, unexpected {extra}",
            "to_hf needs exactly the leaves of model_for_config(config) (scanned or unrolled)",
            "pass the params made for this config",
        )
    for path, shape in got.items():
        if shape != want[path]:
            raise LayoutMismatchError(
                f"leaf {path!r} of the params given to to_hf",
                f"has shape {shape}",
                f"the config's model has {want[path]}",
                "pass the config the params were made with",
            )


def to_hf(
    params, config: GPT2Config | LlamaConfig, folder: str | os.PathLike, *, dtype=None
) -> None:
    """Write ``params`` as a folder ``transformers.AutoModelForCausalLM.from_pretrained`` loads.

    ``config.json`` and one ``model.safetensors``, each written atomically;
    tensors keep the params' dtype unless ``dtype`` is given. Scanned and
    unrolled params are both accepted.
    """
    folder = Path(folder)
    if (folder / "model.safetensors.index.json").exists():
        raise OutputFileError(
            f"folder {str(folder)!r}",
            "holds a sharded checkpoint (model.safetensors.index.json) that a single "
            "model.safetensors would not replace",
            "write to an empty folder",
        )
    scanned = isinstance(params, dict) and "layers" in params
    model = model_for_config(config, scan_layers=scanned)
    _check_params(params, _abstract_params(model, jnp.float32))
    arrays = jax.tree_util.tree_map(np.asarray, params)  # one device-to-host copy per leaf
    tensors = {
        key: np.ascontiguousarray(x if dtype is None else x.astype(dtype))
        for key, x in iter_state_dict(arrays, _keymap(config))
    }
    data = safetensors.numpy.save(tensors, metadata={"format": "pt"})
    stored_dtype = jnp.dtype(next(iter(tensors.values())).dtype).name
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_writer(folder / "model.safetensors") as f:
        f.write(data)
    with atomic_writer(folder / "config.json", "w") as f:
        json.dump({**config_to_hf(config), "dtype": stored_dtype}, f, indent=2, sort_keys=True)
        f.write("\n")
