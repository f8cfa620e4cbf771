"""An Orbax checkpoint folder through the handler interface (save, restore, describe).

The reading and writing are ``_orbax.py``'s; this adapter checks the folder first, as a
reader of untrusted input must before a library opens it: nothing in it but folders and
regular files (a FIFO as ``_METADATA`` would block Orbax's read forever), a bounded
number of entries, and a ``_CHECKPOINT_METADATA`` that is a JSON object (garbage there
must not read as "no layout recorded"). A file that records no layout loads with
``saved_as=`` (the scanned stacks it holds, any layer axis) or ``keymap=``.
"""

from __future__ import annotations

import json
import os
import stat

import jax
import numpy as np

from .._atomic import file_kind
from .._keymap import path_str
from ..errors import CheckpointFormatError
from ._format_safetensors import recorded_config
from ._info import CheckpointInfo, TensorInfo
from ._orbax import _disk_key, _is_meta, _metadata, load_orbax, orbax_layout, save_orbax
from ._placement import place_like
from ._record import LAYOUT_KEY, Layout
from ._safetensors import open_regular
from ._state import declared_layout, layout_problems, load_from

__all__ = ["ORBAX", "OrbaxFormat"]

_MAX_ENTRIES = 100_000
_METADATA_LIMIT = 64 << 20


def check_folder(path: str) -> dict:
    """Refuse a folder with anything but folders and regular files in it; return its
    ``_CHECKPOINT_METADATA`` (``{}`` when absent), refusing one that is not a JSON object."""
    where = f"checkpoint {path!r}"
    if not os.path.isdir(path):
        raise CheckpointFormatError(where, "does not exist (or is not a folder)")
    seen = 0
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            seen += 1
            if seen > _MAX_ENTRIES:
                raise CheckpointFormatError(where, f"holds over {_MAX_ENTRIES} files")
            st = os.lstat(os.path.join(root, name))
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                raise CheckpointFormatError(
                    where,
                    f"holds {os.path.relpath(os.path.join(root, name), path)!r}, which is "
                    f"{'a symbolic link' if stat.S_ISLNK(st.st_mode) else file_kind(st)}, not a "
                    f"regular file",
                    "refusing to read it",
                )
    meta_path = os.path.join(path, "_CHECKPOINT_METADATA")
    if not os.path.lexists(meta_path):
        return {}
    fd = open_regular(meta_path, "checkpoint metadata")
    try:
        text = os.read(fd, _METADATA_LIMIT + 1)
    finally:
        os.close(fd)
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("custom_metadata", {}), dict):
        raise CheckpointFormatError(
            where,
            "has a damaged _CHECKPOINT_METADATA (not a JSON object): its layout record cannot "
            "be read",
            "save the checkpoint again, or restore the file from a copy",
        )
    return data


class OrbaxFormat:
    """An Orbax checkpoint folder (written by :func:`save`, or by another tool)."""

    name = "orbax"

    def save(self, path: str, params, *, stacks, records, keymap, progress=None, metadata=None):
        save_orbax(path, params, stacks, records, keymap, metadata or {})

    def restore(self, path: str, like, *, keymap=None, layer_axis=None, saved_as=None):
        check_folder(path)
        if saved_as is None:
            return load_orbax(path, like, keymap=keymap, layer_axis=layer_axis)
        where = f"checkpoint {path!r}"
        if orbax_layout(path) is not None:
            raise CheckpointFormatError(
                where,
                "records its own layout, so saved_as= (for files that record none) does not apply",
                "drop saved_as=",
            )
        restored = load_orbax(path, None)
        arrays = {
            _disk_key(path_str(p), None): np.asarray(leaf)
            for p, leaf in jax.tree_util.tree_flatten_with_path(restored)[0]
        }
        del restored
        disk = {key: (a.shape, a.dtype) for key, a in arrays.items()}
        layout = declared_layout(saved_as, disk, where)

        def read_unit(key, layer, axis):
            return arrays[key] if layer is None else np.take(arrays[key], layer, axis=axis)

        loaded = load_from(
            disk, layout, read_unit, None, like, keymap=keymap, layer_axis=layer_axis, where=where
        )
        return place_like(loaded, like)

    def describe(self, path: str) -> CheckpointInfo:
        check_folder(path)
        meta = _metadata(path)
        custom = meta.custom_metadata or {}
        text = custom.get(LAYOUT_KEY)
        layout = None if text is None else Layout.from_json(text, path)
        leaves = jax.tree_util.tree_flatten_with_path(meta.item_metadata.tree, is_leaf=_is_meta)[0]
        tensors = tuple(
            TensorInfo(path_str(p), tuple(int(d) for d in m.shape), np.dtype(m.dtype).name)
            for p, m in leaves
        )
        disk = {_disk_key(t.key, layout): (t.shape, np.dtype(t.dtype)) for t in tensors}
        problems = tuple(layout_problems(layout, disk)) if layout is not None else ()
        config = recorded_config(custom, f"checkpoint {path!r}")
        return CheckpointInfo(path, self.name, tensors, layout, problems, config=config)


ORBAX = OrbaxFormat()
