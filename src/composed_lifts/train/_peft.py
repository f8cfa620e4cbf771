"""LoRA adapters to and from PEFT folders, and merged into a Hugging Face folder.

A PEFT folder is ``adapter_config.json`` and ``adapter_model.safetensors`` whose keys
are ``base_model.model.<module>.lora_A.weight`` ``(r, in)`` and ``...lora_B.weight``
``(out, r)`` (PEFT's ``nn.Linear`` orientation, for GPT-2's ``Conv1D`` too), with
``<module>`` the Hugging Face module of the projection (``model.layers.3.self_attn.q_proj``).
The module names come from the model's own key map (the kernel's tensor name less
``.weight``), so they follow the models' Hugging Face names wherever those are defined.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import numpy as np
import safetensors
import safetensors.numpy

from .._keymap import plan_keys
from ..errors import InputFileError
from ..files import atomic_writer
from ._lora import A, B, _get, _layers, _put, lora_modules, merge_lora
from ._options import LoraOptions

__all__ = ["from_peft", "to_hf_merged", "to_peft"]

_PREFIX = "base_model.model."
CONFIG, WEIGHTS = "adapter_config.json", "adapter_model.safetensors"


def _keymap(config):
    from ..models._hf import _keymap as keymap_of  # the one place that knows each family's map

    return keymap_of(config)


def _module_names(params, config, modules) -> dict[tuple, list[str]]:
    """``{(stack name, *module path): [Hugging Face module per layer]}``."""
    names: dict[tuple, list[str]] = {}
    for stack, _, layer in _layers(params):
        for path in modules:
            kernel = _get(layer, path)["kernel"]
            like: dict = {}
            _put(
                like, (stack, *path, "kernel"), jax.ShapeDtypeStruct(np.shape(kernel), kernel.dtype)
            )
            keys = [key for key, *_ in plan_keys(like, _keymap(config))]
            names[(stack, *path)] = [k.removesuffix(".weight") for k in keys]
    return names


def _adapter_config(options: LoraOptions, config, base: str | None) -> dict:
    from ..models import GPT2Config

    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": options.rank,
        "lora_alpha": float(options.rank if options.alpha is None else options.alpha),
        "target_modules": list(options.targets),
        "lora_dropout": 0.0,
        "bias": "none",
        "use_rslora": options.rslora,
        "fan_in_fan_out": isinstance(config, GPT2Config),  # GPT-2's Conv1D stores (in, out)
        "base_model_name_or_path": base,
        "inference_mode": True,
    }


def to_peft(
    lora,
    options: LoraOptions,
    params,
    config,
    folder: str | os.PathLike,
    *,
    base: str | None = None,
) -> None:
    """Write ``lora`` (adapters of ``params``, a model of ``config``) as a PEFT folder that
    ``peft.PeftModel.from_pretrained(base_model, folder)`` loads. Files written atomically."""
    folder = Path(folder)
    modules = lora_modules(params, options.targets)
    tensors: dict[str, np.ndarray] = {}
    for (stack, *path), hf_names in _module_names(params, config, modules).items():
        node = _get(lora, (stack, *path))
        a, b = np.asarray(node[A]), np.asarray(node[B])
        if a.ndim == 2:  # unrolled: one layer
            a, b = a[None], b[None]
        for i, name in enumerate(hf_names):
            tensors[f"{_PREFIX}{name}.lora_A.weight"] = np.ascontiguousarray(a[i].T)
            tensors[f"{_PREFIX}{name}.lora_B.weight"] = np.ascontiguousarray(b[i].T)
    folder.mkdir(parents=True, exist_ok=True)
    data = safetensors.numpy.save(tensors, metadata={"format": "pt"})
    with atomic_writer(folder / WEIGHTS) as f:
        f.write(data)
    with atomic_writer(folder / CONFIG, "w") as f:
        json.dump(_adapter_config(options, config, base), f, indent=2, sort_keys=True)
        f.write("\n")


_REFUSED: dict[
    str, tuple
] = {  # PEFT settings that change the computation and are not implemented here
    "bias": ("none",),
    "use_dora": (False, None),
    "modules_to_save": (None, []),
    "layers_to_transform": (None, []),
    "rank_pattern": (None, {}),
    "alpha_pattern": (None, {}),
    "lora_bias": (False, None),
}


def _read_config(folder: Path) -> LoraOptions:
    path = folder / CONFIG
    if not path.is_file():
        raise InputFileError(f"folder {str(folder)!r}", f"has no {CONFIG}", "give a PEFT folder")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputFileError(repr(str(path)), f"is not valid JSON: {err}") from None
    if not isinstance(cfg, dict) or cfg.get("peft_type") != "LORA":
        seen = cfg.get("peft_type") if isinstance(cfg, dict) else type(cfg).__name__
        raise InputFileError(repr(str(path)), f"has peft_type {seen!r}", "only LORA is read")
    for field, allowed in _REFUSED.items():
        if cfg.get(field, allowed[0]) not in allowed:
            raise InputFileError(
                repr(str(path)), f"sets {field} = {cfg[field]!r}", f"supported: {allowed[0]!r}"
            )
    targets = cfg.get("target_modules")
    if isinstance(targets, str) or not targets:
        raise InputFileError(
            repr(str(path)), f"has target_modules {targets!r}", "a list of module names is read"
        )
    return LoraOptions(
        rank=int(cfg["r"]),
        alpha=float(cfg.get("lora_alpha", 8)),
        targets=tuple(targets),
        rslora=bool(cfg.get("use_rslora", False)),
    )


def from_peft(folder: str | os.PathLike, params, config) -> tuple[dict, LoraOptions]:
    """Read a PEFT LoRA folder into adapters for ``params`` (scanned or unrolled), exactly.

    Returns ``(lora, options)``. Every adapter the targets name must be in the file and
    every tensor of the file must be used (else :class:`InputFileError` naming it).
    """
    folder = Path(folder)
    options = _read_config(folder)
    path = folder / WEIGHTS
    try:
        with safetensors.safe_open(str(path), framework="np") as f:
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (OSError, safetensors.SafetensorError) as err:
        raise InputFileError(repr(str(path)), f"cannot be read as safetensors: {err}") from None
    modules = lora_modules(params, options.targets)
    used: set[str] = set()
    lora: dict = {}
    for (stack, *mpath), hf_names in _module_names(params, config, modules).items():
        kernel = _get(_layers_dict(params)[stack], tuple(mpath))["kernel"]
        per_layer: dict[str, list[np.ndarray]] = {A: [], B: []}
        for name in hf_names:
            for ours, theirs, want in (
                (A, "lora_A", (options.rank, kernel.shape[-2])),
                (B, "lora_B", (kernel.shape[-1], options.rank)),
            ):
                key = f"{_PREFIX}{name}.{theirs}.weight"
                if key not in tensors:
                    raise InputFileError(repr(str(path)), f"has no tensor {key!r}")
                if tensors[key].shape != want:
                    raise InputFileError(
                        repr(str(path)),
                        f"tensor {key!r} has shape {tensors[key].shape}",
                        f"expected {want} for this model and r={options.rank}",
                    )
                used.add(key)
                per_layer[ours].append(np.ascontiguousarray(tensors[key].T))
        stacked = np.asarray(kernel).ndim == 3
        node = {
            part: np.stack(per_layer[part]) if stacked else per_layer[part][0] for part in (A, B)
        }
        _put(lora, (stack, *mpath), node)
    extra = sorted(set(tensors) - used)
    if extra:
        raise InputFileError(
            repr(str(path)),
            f"has {len(extra)} tensor(s) no target of this model reads, first {extra[0]!r}",
            "check target_modules against the model",
        )
    return lora, options


def _layers_dict(params) -> dict:
    return {name: layer for name, _, layer in _layers(params)}


def to_hf_merged(params, lora, options: LoraOptions, config, folder: str | os.PathLike) -> None:
    """The adapters merged into the base (``W + scaling * A @ B``) as a Hugging Face folder."""
    from ..models import to_hf

    to_hf(merge_lora(params, lora, options), config, folder)
