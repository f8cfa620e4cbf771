"""Hugging Face checkpoints in and out: ``from_hf(folder)`` and ``to_hf(params, config, folder)``.

The correspondence between our param paths and Hugging Face's tensor names is data, a
:class:`~composed_lifts.KeyMap` per family (``GPT2_KEYMAP``, ``LLAMA_KEYMAP``); the
bytes are the Hugging Face folder handler's (``checkpoint/_format_hf.py``): streamed
reads into preallocated stacks (each device reading only its part with a mesh) and
streamed, sharded, atomic writes. A missing key (``MissingKeyError``), a key no rule
reads (``KeyMapError``) or a tensor of the wrong shape (``CheckpointMismatchError``) is
refused before any tensor's data is read.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .._arguments import describe_value
from .._keymap import KeyMap, path_str
from .._memory import available_bytes
from ..checkpoint._format import describe, format_for
from ..checkpoint._format_hf import DEFAULT_MAX_SHARD_SIZE, read_config
from ..errors import (
    ArgumentTypeError,
    CheckpointFormatError,
    InputFileError,
    LayoutMismatchError,
    ModelTooLargeError,
)
from ._decoder_hf import DECODER_KEYMAP
from ._families.gpt2 import GPT2_KEYMAP
from ._fields import token_ids
from ._registry import config_from_hf, config_to_hf, family_of

__all__ = [
    "GPT2_KEYMAP",
    "LLAMA_KEYMAP",
    "abstract_params",
    "check_model_size",
    "folder_dtype",
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


LLAMA_KEYMAP = DECODER_KEYMAP  # every Llama-like family's (Mistral, Qwen, Gemma)


def model_for_config(config, *, scan_layers=True):
    """The Linen model of ``config``'s family (:class:`GPT2`, :class:`Llama`, :class:`Gemma2` ...)."""
    return family_of(config).model(config, scan_layers=scan_layers)


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
        out["eos_token_id"] = token_ids()("generation_config.eos_token_id", out["eos_token_id"])
    return out


def _keymap(config) -> KeyMap:
    return family_of(config).keymap


def check_model_size(config, dtype, *, force: bool) -> None:
    """Refuse a model whose params (counted from ``config`` alone) exceed the memory available."""
    if force:
        return
    need = family_of(config).param_count(config) * jnp.dtype(dtype).itemsize
    available = available_bytes()
    if available is not None and need > available:
        raise ModelTooLargeError(
            f"the {type(config).__name__} of this config.json", need, available
        )


def abstract_params(model, dtype=jnp.float32) -> dict:
    """The model's param tree as ``jax.ShapeDtypeStruct`` leaves of ``dtype`` (nothing computed)."""
    ids = jnp.zeros((1, 1), jnp.int32)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), ids)["params"]
    return jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(s.shape, dtype), shapes)


def folder_dtype(folder: str | os.PathLike) -> jnp.dtype:
    """The dtype of a ``save_pretrained`` folder's floating tensors, from their headers."""
    info = describe(os.fspath(folder))
    floats = sorted(
        {t.dtype for t in info.tensors if jnp.issubdtype(jnp.dtype(t.dtype), jnp.floating)}
    )
    if len(floats) != 1:
        raise CheckpointFormatError(
            f"folder {info.path!r}",
            f"holds floating tensors of {len(floats)} dtypes ({', '.join(floats) or 'none'})",
            "pass from_hf(..., dtype=) to load them all as one",
        )
    return jnp.dtype(floats[0])


def from_hf(
    folder: str | os.PathLike,
    *,
    scan_layers: bool = True,
    dtype=None,
    mesh: jax.sharding.Mesh | None = None,
    rules=None,
    force: bool = False,
):
    """Read a Hugging Face ``save_pretrained`` folder: returns ``(model, params)``.

    ``model`` is the Linen model of the folder's family (``scan_layers=False``: unrolled)
    and ``params`` its param tree in the folder's own dtype (a bfloat16 folder loads as
    bfloat16), or cast to ``dtype`` as each tensor is read (``dtype=jnp.float32``).
    Layers are read one at a time into preallocated stacks: host memory stays near the
    params' size. With ``mesh`` (and optional ``ShardingRules`` ``rules``, default: the
    model's ``param_axes``, data parallel), the params are placed on it, each device
    reading only the part of each tensor it holds. Every ``config.json`` field is checked
    first, and a model whose params would not fit in the memory available is refused
    (:class:`~composed_lifts.errors.ModelTooLargeError`) unless ``force=True``. The
    config's ``eos_token_id`` is ``generation_config.json``'s when the folder has one
    that sets it (as in ``transformers``).
    """
    if not isinstance(force, bool):
        raise ArgumentTypeError("force", "True or False", describe_value(force))
    folder = os.fspath(folder)
    handler = format_for(folder, kind="hf")
    config = config_from_hf(read_config(folder))
    eos = read_generation_config(folder).get("eos_token_id")
    if eos is not None:  # generation_config.json's ids win, as in transformers
        config = dataclasses.replace(config, eos_token_id=eos)
    dtype = folder_dtype(folder) if dtype is None else jnp.dtype(dtype)
    check_model_size(config, dtype, force=force)
    model = model_for_config(config, scan_layers=scan_layers)
    like = abstract_params(model, dtype)
    shardings = None
    if mesh is not None:
        from .._sharding import default_rules, param_shardings
        from ._sharding_axes import STACKS, param_axes

        rules = default_rules(mesh, rules, param_axes(config))
        shardings = param_shardings({"params": like}, mesh, rules, stacks=STACKS)["params"]
    arrays = handler.restore(folder, like, keymap=_keymap(config), shardings=shardings)
    if shardings is not None:
        return model, arrays
    # jnp.asarray of a page-aligned NumPy array takes its memory over on CPU (no copy)
    leaves, treedef = jax.tree_util.tree_flatten(arrays)
    del arrays
    out = []
    while leaves:
        out.append(jnp.asarray(leaves.pop(0)))
    return model, jax.tree_util.tree_unflatten(treedef, out)


def _check_params(params, like) -> None:
    """``params`` has ``like``'s tree structure and shapes (else a LayoutMismatchError naming the leaf)."""
    got = {path_str(p): np.shape(x) for p, x in jax.tree_util.tree_flatten_with_path(params)[0]}
    want = {path_str(p): s.shape for p, s in jax.tree_util.tree_flatten_with_path(like)[0]}
    if set(got) != set(want):
        missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        raise LayoutMismatchError(
            "keys",
            "the params given to to_hf",
            "the leaves of model_for_config(config) (scanned or unrolled)",
            missing=missing,
            unexpected=extra,
            fix="pass the params made for this config",
        )
    for path, shape in got.items():
        if shape != want[path]:
            raise LayoutMismatchError(
                "leaf",
                f"leaf {path!r} of the params given to to_hf",
                "the config's model",
                seen=f"of shape {shape}",
                expected=f"shape {want[path]}",
                fix="pass the config the params were made with",
            )


def to_hf(
    params,
    config,
    folder: str | os.PathLike,
    *,
    dtype=None,
    max_shard_size=DEFAULT_MAX_SHARD_SIZE,
) -> None:
    """Write ``params`` as a folder ``transformers.AutoModelForCausalLM.from_pretrained`` loads.

    Tensors keep the params' dtype unless ``dtype`` is given, and are written one layer
    at a time (host memory stays near the params' size), sharded like ``save_pretrained``:
    shards of at most ``max_shard_size`` bytes (an int, or a string such as ``"5GB"``;
    default 50 GB), ``model-0000k-of-0000N.safetensors`` with a
    ``model.safetensors.index.json``, or one ``model.safetensors``; each file atomic,
    ``config.json`` last, stale shards of an earlier save removed. Scanned and unrolled
    params are both accepted.
    """
    scanned = isinstance(params, dict) and "layers" in params
    model = model_for_config(config, scan_layers=scanned)
    _check_params(params, abstract_params(model, jnp.float32))
    format_for(folder, kind="hf").save(
        os.fspath(folder),
        params,
        keymap=_keymap(config),
        config=config_to_hf(config),
        max_shard_size=max_shard_size,
        dtype=dtype,
    )
