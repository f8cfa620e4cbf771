"""Hugging Face checkpoints in and out: ``from_hf(folder)`` and ``to_hf(params, config, folder)``.

The correspondence between our param paths and Hugging Face's tensor names is
data: one :class:`Key` per param, ``{i}`` standing for the layer index. A
param is stacked on axis 0 under ``layers`` (scanned) or found under
``layers_{i}`` (unrolled); the same table serves both. ``transpose`` marks
``nn.Linear`` weights (``(out, in)`` in the file, ``(in, out)`` here); GPT-2's
``Conv1D`` weights are already ``(in, out)``.

Loading is streamed: the stacked arrays are allocated once and filled one
layer at a time from ``safetensors.safe_open`` (one file or a sharded
``model.safetensors.index.json``), converting each tensor to ``dtype`` as it
is read; a missing, unexpected or misshapen tensor is refused before any
param is returned.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from pathlib import Path

import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import safetensors
import safetensors.numpy

from .._errors import (
    InputFileError,
    MissingTensorError,
    TensorShapeError,
    UnexpectedTensorError,
)
from .._files import atomic_writer
from ._config import GPT2Config, LlamaConfig, config_from_hf, config_to_hf
from ._gpt2 import GPT2
from ._llama import Llama

__all__ = ["from_hf", "model_for_config", "to_hf"]


@dataclasses.dataclass(frozen=True)
class Key:
    """Our param ``path`` (below ``layers`` for a per-layer param) <-> Hugging Face ``name``."""

    path: tuple[str, ...]
    name: str
    transpose: bool = False

    @property
    def per_layer(self) -> bool:
        return "{i}" in self.name


def _layer(prefix: str, parts: dict[str, str], transpose: bool = False) -> tuple[Key, ...]:
    return tuple(
        Key(tuple(ours.split("/")), f"{prefix}{{i}}.{theirs}", transpose)
        for ours, theirs in parts.items()
    )


GPT2_KEYS = (
    Key(("wte", "embedding"), "transformer.wte.weight"),
    Key(("wpe", "embedding"), "transformer.wpe.weight"),
    Key(("ln_f", "scale"), "transformer.ln_f.weight"),
    Key(("ln_f", "bias"), "transformer.ln_f.bias"),
    *_layer(
        "transformer.h.",
        {
            "ln_1/scale": "ln_1.weight",
            "ln_1/bias": "ln_1.bias",
            "attn/c_attn/kernel": "attn.c_attn.weight",  # Conv1D: (in, out), fused q, k, v
            "attn/c_attn/bias": "attn.c_attn.bias",
            "attn/c_proj/kernel": "attn.c_proj.weight",
            "attn/c_proj/bias": "attn.c_proj.bias",
            "ln_2/scale": "ln_2.weight",
            "ln_2/bias": "ln_2.bias",
            "mlp/c_fc/kernel": "mlp.c_fc.weight",
            "mlp/c_fc/bias": "mlp.c_fc.bias",
            "mlp/c_proj/kernel": "mlp.c_proj.weight",
            "mlp/c_proj/bias": "mlp.c_proj.bias",
        },
    ),
)

LLAMA_KEYS = (
    Key(("embed_tokens", "embedding"), "model.embed_tokens.weight"),
    Key(("norm", "scale"), "model.norm.weight"),
    Key(("lm_head", "kernel"), "lm_head.weight", transpose=True),  # absent when tied
    *_layer(
        "model.layers.",
        {
            "input_layernorm/scale": "input_layernorm.weight",
            "post_attention_layernorm/scale": "post_attention_layernorm.weight",
        },
    ),
    *_layer(
        "model.layers.",
        {
            "self_attn/q_proj/kernel": "self_attn.q_proj.weight",
            "self_attn/k_proj/kernel": "self_attn.k_proj.weight",
            "self_attn/v_proj/kernel": "self_attn.v_proj.weight",
            "self_attn/o_proj/kernel": "self_attn.o_proj.weight",
            "mlp/gate_proj/kernel": "mlp.gate_proj.weight",
            "mlp/up_proj/kernel": "mlp.up_proj.weight",
            "mlp/down_proj/kernel": "mlp.down_proj.weight",
        },
        transpose=True,  # nn.Linear: (out, in)
    ),
)


def model_for_config(config: GPT2Config | LlamaConfig, *, scan_layers=True, decode=False):
    """The Linen model for ``config``: :class:`GPT2` or :class:`Llama`."""
    cls = GPT2 if isinstance(config, GPT2Config) else Llama
    return cls(config, scan_layers=scan_layers, decode=decode)


def _abstract_params(model) -> dict:
    ids = jnp.zeros((1, 1), jnp.int32)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), ids)["params"]
    return flax.traverse_util.flatten_dict(shapes)


def _plan(model, params_shapes: dict):
    """``(param path, layer index or None, Key)`` for every tensor; ``None`` index: whole leaf."""
    config = model.config
    table = GPT2_KEYS if isinstance(config, GPT2Config) else LLAMA_KEYS
    plan = []
    for key in table:
        if key.per_layer and model.scan_layers:
            path = ("layers", *key.path)
            if path in params_shapes:
                plan += [(path, i, key) for i in range(config.num_layers)]
        elif key.per_layer:
            plan += [((f"layers_{i}", *key.path), None, key) for i in range(config.num_layers)]
        elif key.path in params_shapes:
            plan.append((key.path, None, key))
    covered = {path for path, _, _ in plan}
    assert covered == set(params_shapes), sorted(set(params_shapes) ^ covered)  # our own tables
    return plan


def _name(key: Key, index, path) -> str:
    if not key.per_layer:
        return key.name
    i = index if index is not None else int(path[0].removeprefix("layers_"))
    return key.name.format(i=i)


def _read_config(folder: Path):
    path = folder / "config.json"
    if not path.is_file():
        raise InputFileError(f"{str(folder)!r} has no config.json: is it a save_pretrained folder?")
    try:
        return config_from_hf(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputFileError(f"{str(path)!r} is not valid JSON: {err}") from None


def _open_tensors(folder: Path, stack: contextlib.ExitStack) -> dict:
    """Tensor name -> open ``safe_open`` handle holding it (one file, or every shard of an index)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            files = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as err:
            raise InputFileError(f"{str(index)!r} is not a safetensors index: {err!r}") from None
    elif (folder / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise InputFileError(
            f"{str(folder)!r} has neither model.safetensors nor model.safetensors.index.json; "
            f"save the model with save_pretrained (safetensors is its default)"
        )
    handles = {}
    for file in files:
        path = folder / file
        try:
            handle = stack.enter_context(safetensors.safe_open(str(path), framework="np"))
        except (OSError, safetensors.SafetensorError) as err:
            raise InputFileError(f"{str(path)!r} cannot be read as safetensors: {err}") from None
        handles.update(dict.fromkeys(handle.keys(), handle))
    return handles


def from_hf(folder: str | os.PathLike, *, scan_layers: bool = True, dtype=jnp.float32):
    """Read a Hugging Face ``save_pretrained`` folder: returns ``(model, params)``.

    ``model`` is a :class:`GPT2` or :class:`Llama` (``scan_layers=False``: unrolled)
    and ``params`` its param tree, every tensor converted to ``dtype`` (``None``
    keeps the file's). Layers are read one at a time into preallocated stacks.
    """
    folder = Path(folder)
    config = _read_config(folder)
    model = model_for_config(config, scan_layers=scan_layers)
    shapes = _abstract_params(model)
    plan = _plan(model, shapes)
    with contextlib.ExitStack() as stack:
        handles = _open_tensors(folder, stack)
        wanted = {_name(key, i, path) for path, i, key in plan}
        where = f"checkpoint {str(folder)!r}"
        for names, error in (
            (wanted - set(handles), MissingTensorError),
            (set(handles) - wanted, UnexpectedTensorError),
        ):
            if names:
                raise error(sorted(names)[0], where, len(names))
        out = {}
        for path, i, key in plan:
            name = _name(key, i, path)
            handle = handles[name]
            ours = shapes[path].shape[1:] if i is not None else shapes[path].shape
            expected = ours[::-1] if key.transpose else ours
            seen = tuple(handle.get_slice(name).get_shape())
            if seen != tuple(expected):
                raise TensorShapeError(name, seen, expected, where)
            tensor = handle.get_tensor(name)
            tensor = tensor.T if key.transpose else tensor
            if path not in out:
                leaf_dtype = tensor.dtype if dtype is None else np.dtype(dtype)
                out[path] = np.empty(shapes[path].shape, leaf_dtype)
            if i is None:
                out[path][...] = tensor
            else:
                out[path][i] = tensor
    params = flax.traverse_util.unflatten_dict({p: jnp.asarray(a) for p, a in out.items()})
    return model, params


def to_hf(params, config: GPT2Config | LlamaConfig, folder: str | os.PathLike, *, dtype=None) -> None:
    """Write ``params`` as a folder ``transformers.AutoModelForCausalLM.from_pretrained`` loads.

    ``config.json`` and one ``model.safetensors``, each written atomically;
    tensors keep the params' dtype unless ``dtype`` is given. Scanned and
    unrolled params are both accepted.
    """
    folder = Path(folder)
    if (folder / "model.safetensors.index.json").exists():
        raise InputFileError(
            f"{str(folder)!r} holds a sharded checkpoint (model.safetensors.index.json) that a "
            f"single model.safetensors would not replace; write to an empty folder"
        )
    flat = flax.traverse_util.flatten_dict(params)
    model = model_for_config(config, scan_layers=("layers",) in {p[:1] for p in flat})
    shapes = _abstract_params(model)
    for path in sorted(set(shapes) | set(flat)):
        where = "the params given to to_hf"
        if path not in flat:
            raise MissingTensorError("/".join(path), where)
        if path not in shapes:
            raise UnexpectedTensorError("/".join(path), where)
        if tuple(np.shape(flat[path])) != shapes[path].shape:
            raise TensorShapeError("/".join(path), np.shape(flat[path]), shapes[path].shape, where)
    tensors = {}
    for path, i, key in _plan(model, shapes):
        array = np.asarray(flat[path]) if i is None else np.asarray(flat[path][i])
        array = array.T if key.transpose else array
        tensors[_name(key, i, path)] = np.ascontiguousarray(array if dtype is None else array.astype(dtype))
    data = safetensors.numpy.save(tensors, metadata={"format": "pt"})
    stored_dtype = jnp.dtype(next(iter(tensors.values())).dtype).name
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_writer(folder / "model.safetensors") as f:
        f.write(data)
    with atomic_writer(folder / "config.json", "w") as f:
        json.dump({**config_to_hf(config), "dtype": stored_dtype}, f, indent=2, sort_keys=True)
        f.write("\n")
