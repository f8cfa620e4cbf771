"""What a checkpoint holds, read from its headers and metadata alone (:func:`describe`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._record import Layout

__all__ = ["CheckpointInfo", "TensorInfo"]


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One tensor as its header describes it: ``key``, ``shape``, ``dtype`` (a NumPy name)."""

    key: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def nbytes(self) -> int:
        from ._safetensors import np_dtype

        return int(np.prod(self.shape, dtype=np.int64)) * np_dtype(self.dtype).itemsize


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint holds, read without its tensor data (:func:`describe`).

    ``format``: ``"safetensors"``, ``"orbax"`` or ``"hf"`` (a ``save_pretrained`` folder);
    ``tensors``; ``layout``, the layout composed-lifts recorded (None if none);
    ``problems``, where that record disagrees with the tensors' headers (a damaged record:
    ``load`` refuses it); ``shards``, the files of a Hugging Face folder; ``config``, its
    ``config.json`` (or the one a checkpoint of ours recorded when converted from it).
    """

    path: str
    format: str
    tensors: tuple[TensorInfo, ...]
    layout: Layout | None = None
    problems: tuple[str, ...] = ()
    shards: tuple[str, ...] = ()
    config: Mapping[str, Any] | None = None

    @property
    def total_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    @property
    def dtypes(self) -> tuple[str, ...]:
        return tuple(sorted({t.dtype for t in self.tensors}))
