"""A Hugging Face ``save_pretrained`` folder: ``config.json`` and safetensors shards.

The handler works on state dicts: a :class:`~composed_lifts.KeyMap` (a family's, from
``composed_lifts.models``) maps the params' paths to the folder's tensor names. Reading
is streamed from :class:`SafetensorsFolder` (every shard and the index checked first):
each stacked leaf is allocated once and filled one layer at a time, cast to the target's
dtype as read; with shardings, each device's part is read alone (only those bytes).
Writing streams too (one layer at a time through our safetensors writer, each shard
atomic, then the index, then ``config.json``), sharded like ``save_pretrained``:
greedy in key order up to ``max_shard_size`` bytes, ``model-0000k-of-0000N.safetensors``
and ``model.safetensors.index.json`` (``metadata.total_size``), or one
``model.safetensors`` when everything fits.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping

import jax
import numpy as np

from .._atomic import atomic_writer
from .._keymap import (
    Cast,
    KeyMap,
    PlanEntry,
    PlanPart,
    Transpose,
    check_source,
    file_tensor,
    leaves_with_paths,
    plan_entries,
    read_state,
)
from ..errors import ArgumentRangeError, CheckpointFormatError, OutputFileError
from ._info import CheckpointInfo, TensorInfo
from ._safetensors import DiskTensor, open_regular, write_safetensors
from ._safetensors_folder import INDEX, SINGLE, SafetensorsFolder

__all__ = [
    "DEFAULT_MAX_SHARD_SIZE",
    "HF",
    "HFFolderFormat",
    "aligned_empty",
    "parse_size",
    "read_config",
]

DEFAULT_MAX_SHARD_SIZE = 50 * 10**9  # save_pretrained's "50GB"
_CONFIG_LIMIT = 16 << 20
_ALIGN = 4096
_SHARD = re.compile(r"model(-\d{5}-of-\d{5})?\.safetensors$")
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS.update({"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40})


def parse_size(size, name: str = "max_shard_size") -> int:
    """Bytes from an int or a string such as ``"5GB"`` (10^9) or ``"500MiB"`` (2^20)."""
    if isinstance(size, bool):
        raise ArgumentRangeError(name, "a positive int or a size such as '5GB'", size)
    if isinstance(size, int):
        value = size
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]I?B|B)?\s*", str(size).upper())
        if not m:
            raise ArgumentRangeError(name, "a positive int or a size such as '5GB'", size)
        value = int(float(m.group(1)) * _UNITS[m.group(2) or ""])
    if value <= 0:
        raise ArgumentRangeError(name, "> 0 bytes", size)
    return value


def read_config(folder: str) -> dict:
    """``folder``'s ``config.json``: a regular file of a bounded size holding a JSON object."""
    path = os.path.join(folder, "config.json")
    if not os.path.lexists(path):
        raise CheckpointFormatError(
            f"folder {folder!r}", "has no config.json", "give a save_pretrained folder"
        )
    fd = open_regular(path, "config")
    try:
        text = os.read(fd, _CONFIG_LIMIT + 1)
    finally:
        os.close(fd)
    if len(text) > _CONFIG_LIMIT:
        raise CheckpointFormatError(f"{path!r}", f"is over {_CONFIG_LIMIT >> 20} MiB")
    try:
        config = json.loads(text)
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointFormatError(f"{path!r}", f"is not valid JSON: {err}") from None
    if not isinstance(config, dict):
        raise CheckpointFormatError(
            f"{path!r}", f"must hold a JSON object, but holds a {type(config).__name__}"
        )
    return config


def aligned_empty(shape: tuple, dtype) -> np.ndarray:
    """``np.empty`` on a page boundary: JAX on CPU then takes the memory over (``jnp.asarray``
    without a copy); NumPy's own allocation is only 16-byte aligned, which JAX copies."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + _ALIGN, np.uint8)
    start = -raw.ctypes.data % _ALIGN
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def _need_keymap(keymap, path: str) -> KeyMap:
    if keymap is None:
        raise CheckpointFormatError(
            f"folder {path!r}",
            "is a Hugging Face folder, whose tensor names need a family's key map",
            "load it with composed_lifts.models.from_hf(folder)",
        )
    return keymap


def _slices(index, shape) -> list[tuple[int, int]]:
    bounds = [s.indices(d)[:2] for s, d in zip(index, shape)]
    return bounds + [(0, d) for d in shape[len(bounds) :]]


class HFFolderFormat:
    """A ``save_pretrained`` folder (see the module docstring)."""

    name = "hf"

    def describe(self, path: str) -> CheckpointInfo:
        config = read_config(path)
        with SafetensorsFolder(path) as f:
            tensors = tuple(
                TensorInfo(key, tuple(f.spec(key)[0]), f.spec(key)[1].name) for key in f.keys()
            )
            shards = f.shards
        return CheckpointInfo(path, self.name, tensors, None, (), shards, config)

    def restore(
        self,
        path: str,
        like,
        *,
        keymap: KeyMap | None = None,
        layer_axis=None,
        saved_as=None,
        shardings=None,
        counter: list | None = None,
    ):
        """The params shaped as ``like`` (abstract leaves give each leaf's dtype: tensors
        are cast to it as read); ``shardings``, a tree of ``jax.sharding.Sharding`` like
        ``like``, places each leaf with each device reading only its part. ``counter``, a
        list, gets the number of data bytes read appended (for tests and benchmarks)."""
        keymap = _need_keymap(keymap, path)
        with SafetensorsFolder(path) as f:
            entries = plan_entries(like, keymap)

            def spec(key: str) -> tuple:  # shapes from the headers; any dtype casts
                return f.spec(key)[0], wanted[key]

            wanted = {k: e.file_spec()[1] for e in entries for k in e.keys()}
            check_source(entries, keymap, list(f.keys()), spec)
            if shardings is not None:
                tree = _sharded(f, like, entries, keymap, shardings)
            else:

                def read(key: str) -> np.ndarray:
                    return f.read(key).astype(wanted[key], copy=False)

                def read_into(key: str, dest: np.ndarray) -> None:
                    if f.spec(key)[1] == dest.dtype:
                        f.read_into(key, dest)
                    else:
                        dest[...] = f.read(key)

                tree = read_state(
                    read,
                    keymap,
                    like,
                    spec=spec,
                    read_into=read_into,
                    empty=aligned_empty,
                    read_view_into=lambda key, view: f.file_of(key).read_blocks_into(key, view),
                )
            if counter is not None:
                counter.append(f.bytes_read)
        return tree

    def save(
        self,
        path: str,
        params,
        *,
        keymap: KeyMap,
        config: Mapping,
        max_shard_size=DEFAULT_MAX_SHARD_SIZE,
        dtype=None,
        progress=None,
        **_ignored,
    ) -> None:
        limit = parse_size(max_shard_size)
        if os.path.lexists(path) and not os.path.isdir(path):
            raise OutputFileError(f"folder {path!r}", "exists_not_folder")
        entries = plan_entries(params, keymap)
        arrays = dict(leaves_with_paths(params))
        cast = None if dtype is None else np.dtype(_np_dtype(dtype))
        tensors = []
        for entry in entries:
            shape, file_dtype = entry.file_spec()
            for i, key in enumerate(entry.keys()):
                produce = functools.partial(_produce, entry, arrays, keymap.layer_axis, i, cast)
                tensors.append(DiskTensor(key, shape, cast or file_dtype, None, produce))
        shards: list[list[DiskTensor]] = [[]]
        size = 0
        for t in tensors:  # greedy in key order; a tensor over the limit goes alone
            if shards[-1] and size + t.nbytes > limit:
                shards.append([])
                size = 0
            shards[-1].append(t)
            size += t.nbytes
        os.makedirs(path, exist_ok=True)
        n = len(shards)
        names = (
            [SINGLE] if n == 1 else [f"model-{k + 1:05d}-of-{n:05d}.safetensors" for k in range(n)]
        )
        for name, shard in zip(names, shards):
            write_safetensors(os.path.join(path, name), shard, {"format": "pt"}, progress=progress)
        if n > 1:
            index = {
                "metadata": {
                    "total_parameters": sum(int(np.prod(t.shape, dtype=np.int64)) for t in tensors),
                    "total_size": sum(t.nbytes for t in tensors),
                },
                "weight_map": {t.key: name for name, shard in zip(names, shards) for t in shard},
            }
            with atomic_writer(os.path.join(path, INDEX), "w") as out:
                json.dump(index, out, indent=2, sort_keys=True)
                out.write("\n")
        stored = np.dtype(tensors[0].dtype).name if tensors else "float32"
        with atomic_writer(os.path.join(path, "config.json"), "w") as out:
            json.dump({**config, "dtype": stored}, out, indent=2, sort_keys=True)
            out.write("\n")
        for name in os.listdir(path):  # a previous save's shards and index, now stale
            stale = (_SHARD.fullmatch(name) and name not in names) or (name == INDEX and n == 1)
            if stale:
                os.unlink(os.path.join(path, name))


def _np_dtype(dtype) -> np.dtype:
    import jax.numpy as jnp

    return np.dtype(jnp.dtype(dtype))


def _take(leaf, part: PlanPart, axis: int, i: int) -> np.ndarray:
    """One layer of ``leaf`` on the host. A ``jax.Array`` on one CPU device is read in place
    (NumPy views its buffer); elsewhere the layer is sliced on the devices first, so that no
    host copy of the whole leaf is made (and cached on the array for its lifetime)."""
    index = (slice(None),) * axis + (i,)
    if isinstance(leaf, jax.Array):
        devices = leaf.devices()
        if len(devices) > 1 or next(iter(devices)).platform != "cpu":
            return np.asarray(leaf[index] if part.stacked else leaf.copy())
    leaf = np.asarray(leaf)
    return leaf[index] if part.stacked else leaf


def _produce(entry: PlanEntry, arrays, axis: int, i: int, cast):
    x = file_tensor(entry, arrays, axis, i, take=_take)
    yield x if cast is None else x.astype(cast)


# ---------------------------------------------------------------- per-device parts


def _file_index(part: PlanPart, entry: PlanEntry, bounds) -> tuple | None:
    """The file tensor's slice holding our layer's slice ``bounds``, or None when an op
    (a Reshape) mixes axes: then the whole layer tensor is read."""
    sl = list(bounds)
    for op in part.ops:
        if isinstance(op, Transpose):
            axes = op._axes(len(sl))
            sl = [sl[a] for a in axes]
        elif not isinstance(op, Cast):
            return None
    if entry.axis is not None:
        offset = 0
        for other in entry.parts:
            if other is part:
                break
            offset += other.file_shapes()[-1][entry.axis]
        a, b = sl[entry.axis]
        sl[entry.axis] = (a + offset, b + offset)
    return tuple(slice(a, b) for a, b in sl)


def _read_part(f, entry: PlanEntry, part: PlanPart, key: str, bounds) -> np.ndarray:
    index = _file_index(part, entry, bounds)
    shapes = part.file_shapes()
    if index is None:  # read the layer whole, undo the ops, then slice
        x = f.read(key)
        if entry.axis is not None:
            sizes = [p.file_shapes()[-1][entry.axis] for p in entry.parts]
            start = sum(sizes[: entry.parts.index(part)])
            x = np.take(x, range(start, start + shapes[-1][entry.axis]), axis=entry.axis)
        for op, before in zip(reversed(part.ops), reversed(shapes[:-1])):
            x = op.inverse(x, before)
        return x[tuple(slice(a, b) for a, b in bounds)]
    x = f.read_slice(key, index)
    for op, before in zip(reversed(part.ops), reversed(shapes[:-1])):
        x = op.inverse(x, before)
    return x


def _sharded(f, like, entries, keymap: KeyMap, shardings):
    """Each leaf made from its devices' parts, each part read alone from the file."""
    by_path = dict(leaves_with_paths(shardings))
    out = {}
    axis = keymap.layer_axis
    for entry in entries:
        keys = entry.keys()
        for part in entry.parts:
            whole = (
                part.shape
                if not part.stacked
                else (part.shape[:axis] + (part.num_layers,) + part.shape[axis:])
            )
            dtype = part.dtype

            def callback(index, part=part, entry=entry, keys=keys, whole=whole, dtype=dtype):
                bounds = _slices(index, whole)
                result = np.empty(tuple(b - a for a, b in bounds), dtype)
                if not part.stacked:
                    result[...] = _read_part(f, entry, part, keys[0], bounds)
                    return result
                (lo, hi), rest = bounds[axis], bounds[:axis] + bounds[axis + 1 :]
                for i in range(lo, hi):
                    dest = result[(slice(None),) * axis + (i - lo,)]
                    dest[...] = _read_part(f, entry, part, keys[i], rest)
                return result

            out[part.path] = jax.make_array_from_callback(whole, by_path[part.path], callback)
    treedef = jax.tree_util.tree_structure(like)
    return jax.tree_util.tree_unflatten(treedef, [out[p] for p, _ in leaves_with_paths(like)])


HF = HFFolderFormat()
