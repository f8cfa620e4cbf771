"""One handler per checkpoint format, and the one function that picks it for a path.

Each handler (our safetensors file, an Orbax folder, a Hugging Face ``save_pretrained``
folder) has the same three operations: ``save(path, params, ...)``, ``restore(path, like,
...)`` into a target's layout, and ``describe(path)``, a :class:`CheckpointInfo` read
from headers and metadata alone (no tensor data). Key maps and the per-layer key space
(``_keymap.py``, ``_state.py``) are the formats' common ground: a handler only knows how
its bytes are laid out.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import ArgumentTypeError
from ._format_hf import HF
from ._format_orbax import ORBAX
from ._format_safetensors import SAFETENSORS
from ._info import CheckpointInfo
from ._safetensors_folder import is_safetensors_folder

__all__ = ["Format", "describe", "format_for"]

FORMATS = ("safetensors", "orbax", "hf")


class Format(Protocol):
    """A checkpoint format's handler (see the module docstring)."""

    name: str

    @property
    def save(self) -> Callable[..., None]: ...  # (path, params, **the format's options)

    @property
    def restore(self) -> Callable[..., Any]: ...  # (path, like, **options) -> the params

    def describe(self, path: str) -> CheckpointInfo: ...


def format_for(
    path: str | os.PathLike, *, writing: bool = False, kind: str | None = None
) -> Format:
    """The handler for ``path``: ``kind`` when given; else, to write, ``*.safetensors`` is our
    safetensors file and any other path an Orbax folder; to read, a folder with a
    ``config.json`` or ``model.safetensors[.index.json]`` is a Hugging Face folder, another
    folder an Orbax checkpoint, anything else a safetensors file."""
    handlers = {h.name: h for h in (SAFETENSORS, ORBAX, HF)}
    if kind is not None:
        if kind not in handlers:
            raise ArgumentTypeError("kind", f"one of {', '.join(FORMATS)}", repr(kind))
        return handlers[kind]
    path = os.fspath(path)
    if writing:
        return SAFETENSORS if path.endswith(".safetensors") else ORBAX
    if os.path.isdir(path):
        hf = os.path.lexists(os.path.join(path, "config.json")) or is_safetensors_folder(path)
        return HF if hf else ORBAX
    return SAFETENSORS


def describe(path: str | os.PathLike) -> CheckpointInfo:
    """What the checkpoint or Hugging Face folder at ``path`` holds (tensors, the layout
    recorded and whether the tensors agree with it, shards, config), from its headers and
    metadata alone: no tensor data is read.

    >>> import numpy as np, tempfile, os
    >>> from composed_lifts.checkpoint import describe, save
    >>> path = os.path.join(tempfile.mkdtemp(), "m.safetensors")
    >>> save(path, {"w": np.zeros((3, 2), np.float32)})
    >>> info = describe(path)
    >>> info.format, [(t.key, t.shape, t.dtype) for t in info.tensors], info.total_bytes
    ('safetensors', [('w', (3, 2), 'float32')], 24)
    """
    path = os.fspath(path)
    return format_for(path).describe(path)
