"""A folder of safetensors shards as ``save_pretrained`` writes it, opened as one reader.

``model.safetensors``, or ``model.safetensors.index.json`` naming the shard of every
tensor. Everything is checked before any tensor's data is read: each shard a plain file
name that resolves inside the folder (no ``..``, no absolute path, no symlink out of it,
except the blob store of a Hugging Face hub cache, ``snapshots/<rev>/`` -> ``blobs/``), a
regular file; each tensor named once across the shards and found in the shard the index
names; each shard's own header checked by :class:`SafetensorsFile`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import numpy as np

from ..errors import CheckpointFormatError
from ._safetensors import SafetensorsFile, open_regular

__all__ = ["INDEX", "SINGLE", "SafetensorsFolder", "is_safetensors_folder"]

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
_INDEX_LIMIT = 64 << 20  # an index names files and tensors: far below this


def is_safetensors_folder(path: str) -> bool:
    return os.path.isdir(path) and any(
        os.path.lexists(os.path.join(path, name)) for name in (INDEX, SINGLE)
    )


def _inside(folder: str, name: object, where: str) -> str:
    """The path of shard ``name`` of ``folder``, refused unless it stays inside."""
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name:
        raise CheckpointFormatError(where, f"names shard {name!r}, which is not a file name")
    if os.path.isabs(name) or any(part in ("", ".", "..") for part in name.split("/")):
        raise CheckpointFormatError(
            where, f"names shard {name!r}, which leaves the model folder", "refusing to read it"
        )
    path = os.path.join(folder, name)
    real, home = os.path.realpath(path), os.path.realpath(folder)
    allowed = [home]
    if os.path.basename(os.path.dirname(home)) == "snapshots":  # a hub cache's blobs
        allowed.append(os.path.join(os.path.dirname(os.path.dirname(home)), "blobs"))
    if not any(real.startswith(root + os.sep) for root in allowed):
        raise CheckpointFormatError(
            where,
            f"names shard {name!r}, which resolves to {real!r}, outside the model folder",
            "refusing to read it",
        )
    return path


class SafetensorsFolder:
    """The tensors of a ``save_pretrained`` folder: ``keys``, ``spec``, ``read``, ``read_slice``
    of any tensor, whichever shard holds it; ``shards`` the shard file names in order."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = os.fspath(folder)
        index = os.path.join(self.folder, INDEX)
        self._files: dict[str, SafetensorsFile] = {}
        try:
            if os.path.lexists(index):
                self._open_index(index)
            elif os.path.lexists(os.path.join(self.folder, SINGLE)):
                name = SINGLE
                self._files[name] = SafetensorsFile(_inside(self.folder, name, self.folder))
                self._where = dict.fromkeys(self._files[name].tensors, name)
                self.total_size = None
            else:
                raise CheckpointFormatError(
                    f"folder {self.folder!r}",
                    f"has neither {SINGLE} nor {INDEX}",
                    "save the model with save_pretrained (safetensors is its default)",
                )
        except BaseException:
            self.close()
            raise
        self.shards = tuple(sorted(self._files))

    def _open_index(self, index: str) -> None:
        where = f"index {index!r}"
        fd = open_regular(index, "index")
        try:
            if os.fstat(fd).st_size > _INDEX_LIMIT:
                raise CheckpointFormatError(where, f"is over {_INDEX_LIMIT >> 20} MiB")
            text = os.read(fd, _INDEX_LIMIT + 1)
        finally:
            os.close(fd)
        try:
            data = json.loads(text)
            weight_map = data["weight_map"]
            if not isinstance(weight_map, dict):
                raise TypeError("weight_map is not an object")
        except (ValueError, KeyError, TypeError) as err:
            raise CheckpointFormatError(where, f"is not a safetensors index: {err}") from None
        meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
        self.total_size = meta.get("total_size")
        for key, name in weight_map.items():
            if name not in self._files:
                self._files[name] = SafetensorsFile(_inside(self.folder, name, where))
            if key not in self._files[name].tensors:
                raise CheckpointFormatError(
                    where, f"puts tensor {key!r} in shard {name!r}, which does not hold it"
                )
        self._where = dict(weight_map)
        for name, f in self._files.items():
            for key in f.tensors:
                if self._where.get(key) != name:
                    raise CheckpointFormatError(
                        f"shard {f.path!r}",
                        f"holds tensor {key!r}, which the index "
                        + (
                            f"puts in shard {self._where[key]!r}: a tensor must be stored once"
                            if key in self._where
                            else "does not list"
                        ),
                        "refusing to guess which copy is meant",
                    )

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def keys(self) -> Iterator[str]:
        return iter(self._where)

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def file_of(self, key: str) -> SafetensorsFile:
        return self._files[self._where[key]]

    def spec(self, key: str) -> tuple[tuple, np.dtype]:
        return self.file_of(key).spec(key)

    def read(self, key: str) -> np.ndarray:
        return self.file_of(key).read(key)

    def read_into(self, key: str, dest: np.ndarray) -> None:
        self.file_of(key).read_into(key, dest)

    def read_slice(self, key: str, index: tuple[slice, ...]) -> np.ndarray:
        return self.file_of(key).read_slice(key, index)

    @property
    def bytes_read(self) -> int:
        return sum(f.bytes_read for f in self._files.values())

    @property
    def metadata(self) -> dict[str, str]:
        return next(iter(self._files.values())).metadata if self._files else {}
