"""Token data for fine-tuning: documents cut into windows, served in a seeded order by position.

A document is a 1-D ``.npy`` of ids, a row of a 2-D ``.npy``, or a line of a ``.jsonl``
(``{"ids": [...]}``, or ``{"text": ...}`` with the model folder's ``tokenizer.json``).
Each document is cut into windows of ``seq_len`` tokens; the last window of a document
is padded at the end (mask 0). Example ``p`` of the run (its *data position*) is window
``permutation(epoch)[p % n]`` with ``epoch = p // n``, the permutation drawn from
``numpy.random.default_rng([seed, epoch])``: the batches depend only on the position,
so a resumed run reads exactly what the uninterrupted one would have.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from ..errors import InputFileError, InputShapeError
from ._errors import TokenRangeError

__all__ = ["TokenWindows", "read_documents", "token_windows"]


@dataclasses.dataclass(frozen=True)
class TokenWindows:
    """``ids`` and ``mask`` ``(n, seq_len)`` int32; batches by data position (see the module)."""

    ids: np.ndarray
    mask: np.ndarray
    seed: int = 0

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, position: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``count`` windows from data position ``position`` on (crossing epochs)."""
        n = len(self.ids)
        picks = []
        for p in range(position, position + count):
            epoch, i = divmod(p, n)
            picks.append(self._order(epoch)[i])
        index = np.asarray(picks)
        return self.ids[index], self.mask[index]

    def _order(self, epoch: int) -> np.ndarray:
        cache = self.__dict__.setdefault("_orders", {})
        if epoch not in cache:
            cache.clear()
            cache[epoch] = np.random.default_rng([self.seed, epoch]).permutation(len(self.ids))
        return cache[epoch]


def _check_ids(where: str, ids: np.ndarray, vocab: int) -> None:
    if ids.size == 0:
        return
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab:
        bad = low if low < 0 else high
        raise TokenRangeError(where, bad, vocab)


def token_windows(
    documents, seq_len: int, vocab: int, *, seed: int = 0, where: str = "data"
) -> TokenWindows:
    """Cut ``documents`` (1-D int arrays) into padded windows of ``seq_len`` tokens.

    Ids must lie in ``[0, vocab)``; windows with fewer than 2 tokens (nothing to predict)
    are dropped; no window left is an error.
    """
    ids_rows, mask_rows = [], []
    for number, doc in enumerate(documents):
        doc = np.asarray(doc)
        _check_ids(f"{where} (document {number})", doc, vocab)
        for start in range(0, len(doc), seq_len):
            piece = doc[start : start + seq_len]
            if len(piece) < 2:
                continue
            row = np.zeros(seq_len, np.int32)
            row[: len(piece)] = piece
            ids_rows.append(row)
            mask_rows.append((np.arange(seq_len) < len(piece)).astype(np.int32))
    if not ids_rows:
        raise InputShapeError(
            where,
            "no document with 2 or more tokens",
            "give token ids to train on",
            expected="at least one document of 2 or more token ids",
        )
    return TokenWindows(np.stack(ids_rows), np.stack(mask_rows), seed)


def read_documents(
    path: str | os.PathLike, *, tokenizer: str | os.PathLike | None = None
) -> list[np.ndarray]:
    """The documents of a ``.npy`` (1-D: one document; 2-D: one per row) or ``.jsonl`` file."""
    path = Path(path)
    where = f"--data {str(path)!r}"
    if not path.is_file():
        raise InputFileError(where, "is not a file", "give a .npy or .jsonl file of token ids")
    if path.suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise InputFileError(where, f"cannot be read as .npy: {err}") from None
        if array.dtype.kind not in "iu":
            raise InputShapeError(
                where,
                f"dtype {array.dtype}",
                "save the token ids as integers",
                expected="integer token ids",
            )
        if array.ndim == 1:
            return [array]
        if array.ndim == 2:
            return list(array)
        raise InputShapeError(
            where, f"shape {array.shape}", expected="a 1-D or 2-D array of token ids"
        )
    if path.suffix == ".jsonl":
        return _read_jsonl(path, where, tokenizer)
    raise InputFileError(where, f"has suffix {path.suffix!r}", "give a .npy or .jsonl file")


def _read_jsonl(path: Path, where: str, tokenizer) -> list[np.ndarray]:
    encoder = None
    docs = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputFileError(f"{where} line {number}", f"is not JSON: {err}") from None
            if isinstance(record, dict) and "ids" in record:
                ids = record["ids"]
                if not isinstance(ids, list) or not all(
                    isinstance(t, int) and not isinstance(t, bool) for t in ids
                ):
                    raise InputShapeError(
                        f"{where} line {number}",
                        f"ids {str(ids)[:60]}",
                        expected='a flat list of integer token ids ({"ids": [1, 2, 3]})',
                    )
                docs.append(np.asarray(ids, np.int64))
            elif isinstance(record, dict) and isinstance(record.get("text"), str):
                if encoder is None:
                    encoder = _tokenizer(tokenizer, where)
                docs.append(np.asarray(encoder.encode(record["text"]).ids, np.int64))
            else:
                raise InputShapeError(
                    f"{where} line {number}",
                    str(line.strip())[:60],
                    expected='an object {"text": "..."} or {"ids": [...]}',
                )
    return docs


def _tokenizer(path, where: str):
    if path is None or not Path(path).is_file():
        raise InputFileError(
            where,
            'holds {"text": ...} records but the model folder has no tokenizer.json',
            'give {"ids": [...]} records, or add the tokenizer.json of the model',
        )
    import tokenizers

    return tokenizers.Tokenizer.from_file(str(path))
