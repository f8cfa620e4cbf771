"""Reading arrays from files and writing files atomically.

Writes go to a temporary file in the destination's folder, are flushed to
disk, then renamed over the destination (``os.replace``): a reader sees the
old file or the new one, never half of one, and a failed write leaves what
was on disk untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import IO

import numpy as np

from ._errors import InputFileError

__all__ = ["atomic_writer", "read_array", "write_array"]

ARRAY_SUFFIXES = (".npy", ".json")


def _suffix(path: str, what: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in ARRAY_SUFFIXES:
        raise InputFileError(
            f"{what} {path!r} has suffix {suffix or '(none)'!r}; expected one of "
            f"{', '.join(ARRAY_SUFFIXES)} (or '-' for JSON on standard input)"
        )
    return suffix


def read_array(path: str, stdin: IO[str] | None = None) -> np.ndarray:
    """Read a ``.npy`` file, a ``.json`` file (a list of lists), or ``-`` (JSON on standard input)."""
    if path == "-":
        stream = sys.stdin if stdin is None else stdin
        return _from_json(stream.read(), "standard input")
    suffix = _suffix(path, "input file")
    if not os.path.isfile(path):
        raise InputFileError(f"input file {path!r} does not exist (or is not a file)")
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        with open(path, encoding="utf-8") as f:
            return _from_json(f.read(), f"input file {path!r}")
    except InputFileError:
        raise
    except (OSError, ValueError, EOFError, UnicodeDecodeError) as err:
        raise InputFileError(
            f"input file {path!r} could not be read as {suffix}: {err}; is it corrupted or "
            f"of another format?"
        ) from None


def _from_json(text: str, where: str) -> np.ndarray:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputFileError(f"{where} is not valid JSON: {err}") from None
    if not isinstance(data, list):
        raise InputFileError(
            f"{where} must hold a JSON list of lists of numbers, got a {type(data).__name__}"
        )
    try:
        return np.asarray(data)
    except ValueError as err:
        raise InputFileError(f"{where} is not a rectangular list of lists: {err}") from None


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "wb"):
    """Open a temporary file beside ``path``; on success rename it over ``path``."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputFileError(f"cannot write {str(path)!r}: folder {str(folder)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file ordinary permissions
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_array(path: str, array) -> None:
    """Write ``array`` to ``.npy`` or ``.json`` (a nested list), atomically."""
    suffix = _suffix(path, "output file")
    array = np.asarray(array)
    if suffix == ".npy":
        with atomic_writer(path, "wb") as f:
            np.save(f, array, allow_pickle=False)
    else:
        with atomic_writer(path, "w") as f:
            json.dump(array.tolist(), f)
            f.write("\n")
