"""xxh3-64 checksums of an Orbax checkpoint's arrays: one per saved shard, verified on load.

The record (``composed_lifts.xxh3_64`` in the checkpoint's ``custom_metadata``, the key
safetensors files use) maps each leaf's ``/``-joined path to a list of ``[region, hex]``:
``region`` is ``[[start, stop], ...]`` per axis, the part of the array one shard held when
it was saved, and ``hex`` the xxh3-64 of that part's bytes in C order. A host array is one
region (the whole array); a ``jax.Array`` has one region per distinct shard
(``replica_id == 0``), each hashed from the shard's own data as its device holds it, so a
save never gathers an array on the host (one shard's host copy at a time; on CPU, none).

On load each region is hashed again from what was restored: from a host array by slicing;
from a sharded ``jax.Array`` from the shard with the same region, or, when the target's mesh
cuts the array differently, by assembling the region from the overlapping addressable shards
(one region's bytes on the host at a time). The regions must tile the array exactly, which
bounds the work by the array's size. Measured (``bench/orbax_memory.py``): a save's and a
load's peak memory are unchanged by the checksums (2.93x and 3.16x the params, as before). In a multi-process run, each process verifies the
regions its own devices hold whole (saving from several processes is not supported yet).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import xxhash

from .._keymap import path_str
from ..errors import CheckpointFormatError, ChecksumMismatchError

__all__ = ["parse_checksums", "tree_checksums", "verify_checksums"]

Region = tuple[tuple[int, int], ...]
_HEX = re.compile(r"[0-9a-f]{16}$")


def _hex(a: np.ndarray) -> str:
    return xxhash.xxh3_64_hexdigest(np.ascontiguousarray(a).reshape(-1).view(np.uint8).data)


def _region(index: tuple, shape: tuple) -> Region:
    return tuple(
        (s.start or 0, n if s.stop is None else s.stop) for s, n in zip(index, shape, strict=True)
    )


def _slices(region: Region) -> tuple[slice, ...]:
    return tuple(slice(a, b) for a, b in region)


def _leaf_checksums(leaf) -> list:
    if isinstance(leaf, jax.Array) and len(leaf.sharding.device_set) > 1:
        out, seen = [], set()
        for shard in leaf.addressable_shards:
            region = _region(shard.index, leaf.shape)
            if shard.replica_id != 0 or region in seen:
                continue
            seen.add(region)
            out.append([[list(r) for r in region], _hex(np.asarray(shard.data))])
        return out
    a = np.asarray(leaf)
    return [[[[0, n] for n in a.shape], _hex(a)]]


def tree_checksums(tree) -> str:
    """The checksum record of ``tree`` (host arrays and ``jax.Array`` s), as JSON text."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return json.dumps({path_str(p): _leaf_checksums(leaf) for p, leaf in leaves})


def parse_checksums(text, where: str, shapes: Mapping[str, tuple]) -> dict[str, list]:
    """The record, checked against the saved tree's ``shapes`` (every leaf covered exactly)."""

    def damaged(why: str) -> CheckpointFormatError:
        return CheckpointFormatError(
            f"checkpoint {where!r}",
            f"has a damaged checksum record ({why})",
            "restore the checkpoint from a copy",
        )

    try:
        record = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        record = None
    if not isinstance(record, dict):
        raise damaged("not a JSON object")
    out: dict[str, list] = {}
    for key, shape in shapes.items():
        entries = record.get(key)
        if not isinstance(entries, list) or not entries:
            raise damaged(f"none for array {key!r}")
        volume = 0
        regions = []
        for entry in entries:
            ok = isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], str)
            ok = ok and bool(_HEX.match(entry[1])) and isinstance(entry[0], list)
            ok = ok and len(entry[0]) == len(shape)
            if ok:
                for pair, n in zip(entry[0], shape):
                    ok = ok and isinstance(pair, list) and len(pair) == 2
                    ok = ok and all(type(v) is int for v in pair) and 0 <= pair[0] <= pair[1] <= n
            if not ok:
                raise damaged(f"an unreadable entry for array {key!r}")
            region = tuple((a, b) for a, b in entry[0])
            volume += math.prod(b - a for a, b in region)
            regions.append((region, entry[1]))
        if volume != math.prod(shape):
            raise damaged(f"its regions of array {key!r} do not cover it exactly")
        out[key] = regions
    return out


def _assembled(leaf: jax.Array, region: Region) -> np.ndarray | None:
    """Region ``region`` of a sharded array from its addressable shards (None: not all here)."""
    shards: dict[Region, Any] = {}
    for shard in leaf.addressable_shards:
        shards.setdefault(_region(shard.index, leaf.shape), shard)
    if region in shards:
        return np.asarray(shards[region].data)
    out = np.empty(tuple(b - a for a, b in region), leaf.dtype)
    covered = 0
    for held, shard in shards.items():
        inter = tuple((max(a, c), min(b, d)) for (a, b), (c, d) in zip(region, held))
        if any(a >= b for a, b in inter):
            continue
        src = tuple(slice(a - c, b - c) for (a, b), (c, _) in zip(inter, held))
        dst = tuple(slice(a - c, b - c) for (a, b), (c, _) in zip(inter, region))
        out[dst] = np.asarray(shard.data)[src]
        covered += math.prod(b - a for a, b in inter)
    return out if covered == out.size else None


def verify_checksums(where: str, tree, record: Mapping[str, list]) -> None:
    """Raise :class:`ChecksumMismatchError` on the first region of ``tree`` (as restored, leaves
    host arrays or ``jax.Array`` s) whose bytes differ from what was saved."""
    for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        key = path_str(p)
        sharded = isinstance(leaf, jax.Array) and len(leaf.sharding.device_set) > 1
        host = None if sharded else np.asarray(leaf)
        for region, want in record[key]:
            if host is not None:
                got_part: np.ndarray | None = host[_slices(region)]
            else:
                got_part = _assembled(leaf, region)
            if got_part is None:
                continue  # held by another process's devices
            got = _hex(got_part)
            if got != want:
                whole = all(a == 0 and b == n for (a, b), n in zip(region, np.shape(leaf)))
                label = key if whole else f"{key}[{', '.join(f'{a}:{b}' for a, b in region)}]"
                raise ChecksumMismatchError(where, label, want, got)
