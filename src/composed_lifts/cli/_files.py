"""Reading arrays from files and writing them (atomically, through :mod:`composed_lifts.files`).

Reads check what they can before reading the data: the suffix, that the path
is a regular file, a ``.npy`` header against the file's size, and the size of
JSON text against the memory its parsing takes.
"""

from __future__ import annotations

import json
import math
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np

from ..errors import ComposedLiftsError, InputFileError, OutputFileError
from ..files import atomic_writer, check_writable, file_kind
from ._errors import MemoryEstimateError

__all__ = [
    "JSON_MEMORY_FACTOR",
    "atomic_writer",
    "check_output_path",
    "check_writable",
    "read_array",
    "write_array",
    "write_json_values",
]

ARRAY_SUFFIXES = (".npy", ".json")
# Parsing JSON numbers into Python lists takes up to ~24 bytes of memory per byte of text
# (a 2-byte "0," becomes a list slot and a float, then a float64 array element).
JSON_MEMORY_FACTOR = 24
_CHUNK = 1 << 16  # values formatted at a time when writing JSON


def _suffix(path: str, what: str, output: bool) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in ARRAY_SUFFIXES:
        where, suffixes = f"{what} {str(path)!r}", f"one of {', '.join(ARRAY_SUFFIXES)}"
        if output:
            raise OutputFileError(where, "suffix", suffix=suffix, suffixes=suffixes)
        raise InputFileError(
            where,
            f"has suffix {suffix or '(none)'!r}",
            f"name a file ending in {suffixes} (or - for JSON on standard input)",
        )
    return suffix


# --- reading ---------------------------------------------------------------------------------


def read_array(
    path: str,
    stdin: IO[str] | None = None,
    *,
    on_header: Callable[[tuple[int, ...], np.dtype], None] | None = None,
    max_memory: int | None = None,
    flag: str = "input file",
) -> np.ndarray:
    """Read a ``.npy`` file, a ``.json`` file (a list of lists), or ``-`` (JSON on standard input).

    ``on_header(shape, dtype)`` is called with a ``.npy`` file's header before its data is read
    (raise there to refuse it). JSON text longer than ``max_memory / JSON_MEMORY_FACTOR``
    bytes is refused before it is parsed.
    """
    limit = None if max_memory is None else max(max_memory // JSON_MEMORY_FACTOR, 1)
    if path == "-":
        stream = sys.stdin if stdin is None else stdin
        if stream is None:
            raise InputFileError(
                f"{flag} '-'", "names standard input, which is closed", "name a file"
            )
        text = stream.read() if limit is None else stream.read(limit + 1)
        _check_json_size(len(text), limit, max_memory, f"{flag} '-' (standard input)")
        return _from_json(text, f"{flag} '-' (standard input)")
    suffix = _suffix(path, flag, output=False)
    where = f"{flag} {path!r}"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputFileError(where, "does not exist") from None
    except OSError as err:
        raise InputFileError(where, f"cannot be opened: {err.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        hint = "pipe JSON to --input - instead" if stat.S_ISFIFO(st.st_mode) else ""
        raise InputFileError(where, f"is {file_kind(st)}, not a regular file", hint)
    try:
        if suffix == ".npy":
            return _read_npy(path, where, st.st_size, on_header)
        _check_json_size(st.st_size, limit, max_memory, where)
        with open(path, encoding="utf-8") as f:
            return _from_json(f.read(), where)
    except (ComposedLiftsError, MemoryError):
        raise
    except Exception as err:  # numpy's header parser raises SyntaxError, TokenError, ...
        raise InputFileError(
            where,
            f"could not be read as {suffix}: {err}",
            "is it corrupted or of another format?",
        ) from None


def _check_json_size(size: int, limit: int | None, max_memory: int | None, where: str) -> None:
    if limit is not None and max_memory is not None and size > limit:
        raise MemoryEstimateError(
            f"parsing {where} ({size / 1e6:.3g} MB or more of JSON)",
            size * JSON_MEMORY_FACTOR,
            max_memory,
            "the input (save it as .npy, which is read without parsing)",
        )


def _read_npy(path: str, where: str, size: int, on_header) -> np.ndarray:
    fmt = np.lib.format
    with open(path, "rb") as f:
        head = f.read(6)
        f.seek(0)
        if head.startswith(b"PK\x03\x04"):
            raise InputFileError(
                where,
                "is a zip archive (an .npz?), not an .npy array",
                "save the one array you mean with numpy.save",
            )
        major, _ = fmt.read_magic(f)
        if major == 1:
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        if dtype.hasobject:
            raise InputFileError(
                where,
                f"holds Python objects (dtype {dtype}), which we never unpickle",
                "save an array of numbers",
            )
        need = math.prod(shape) * dtype.itemsize
        have = size - f.tell()
        if have != need:
            raise InputFileError(
                where,
                f"is {'truncated' if have < need else 'longer than its header says'}: the "
                f"header says shape {shape} of {dtype} ({need:,} bytes of data) but {have:,} "
                f"bytes follow it",
                "is it corrupted? write it again with numpy.save",
            )
        if on_header is not None:
            on_header(tuple(shape), dtype)
        f.seek(0)
        return fmt.read_array(f, allow_pickle=False)


_JSON_FIX = "write a list of lists of numbers, one list per example"


def _from_json(text: str, where: str) -> np.ndarray:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputFileError(where, f"is not valid JSON: {err}", _JSON_FIX) from None
    except RecursionError:
        raise InputFileError(where, "is nested too deeply", _JSON_FIX) from None
    if not isinstance(data, list):
        raise InputFileError(where, f"holds a JSON {type(data).__name__}", _JSON_FIX)
    try:
        return np.asarray(data)
    except (ValueError, RecursionError) as err:
        raise InputFileError(
            where, f"is not a rectangular list of lists of numbers: {err}", _JSON_FIX
        ) from None


# --- writing ---------------------------------------------------------------------------------


def write_json_values(f: IO[str], array) -> None:
    """Write ``array`` as nested JSON lists, a chunk of values at a time (no list of it all).

    Strict JSON: NaN, infinity and minus infinity are written as the strings ``"NaN"``,
    ``"Infinity"`` and ``"-Infinity"``. Floats are written as ``json.dumps`` writes them.
    """
    array = np.asarray(array)
    if array.ndim == 0:
        f.write(_json_numbers(array.reshape(1))[0])
        return
    if array.ndim > 1:
        f.write("[")
        for i, row in enumerate(array):
            if i:
                f.write(", ")
            write_json_values(f, row)
        f.write("]")
        return
    f.write("[")
    for start in range(0, array.shape[0], _CHUNK):
        if start:
            f.write(", ")
        f.write(", ".join(_json_numbers(array[start : start + _CHUNK])))
    f.write("]")


_NONFINITE = {"nan": '"NaN"', "inf": '"Infinity"', "-inf": '"-Infinity"'}


def _json_numbers(chunk: np.ndarray) -> list[str]:
    values = chunk.tolist()
    if np.issubdtype(chunk.dtype, np.floating):
        return [_NONFINITE.get(r, r) for r in map(float.__repr__, values)]
    return [json.dumps(v) for v in values]


def check_output_path(path: str, flag: str = "output file") -> Path:
    """Check before any work that ``write_array`` can write ``path``: a known suffix, a writable place."""
    _suffix(path, flag, output=True)
    return check_writable(path, flag)


def write_array(path: str, array) -> None:
    """Write ``array`` to ``.npy`` or ``.json`` (nested lists, strict JSON), atomically."""
    suffix = _suffix(path, "output file", output=True)
    array = np.asarray(array)
    if suffix == ".npy":
        with atomic_writer(path, "wb") as f:
            np.save(f, array, allow_pickle=False)
    else:
        with atomic_writer(path, "w") as f:
            write_json_values(f, array)
            f.write("\n")
