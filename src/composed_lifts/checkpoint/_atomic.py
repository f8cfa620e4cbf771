"""A file written so that a kill at any moment leaves the old one (or none) whole.

The data goes to a temporary name in the destination's folder, is flushed and
fsynced, gets its permissions (those of the file it replaces, else what the umask
gives a new file), and is renamed over the destination; then the folder is fsynced
so the rename itself survives a crash. A reader sees the old file or the new one,
never half of one; a failed write removes its temporary file.

``composed_lifts._files.atomic_writer`` (the CLI's outputs) does the same for small
files without the folder fsync; the two could share this one writer (it needs only
``fsync_folder`` and the permissions rule added there).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .._errors import CheckpointWriteError

__all__ = ["atomic_file", "fsync_folder", "TEMP_PREFIX"]

TEMP_PREFIX = ".composed-lifts-tmp."


def fsync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _mode_for(path: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)  # an overwritten file keeps its own
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open ``path``'s temporary file for binary writing (``r+b``: it may seek back);
    on success make it ``path`` durably."""
    path = Path(os.path.realpath(path))  # a symlink's target is replaced, the link kept
    folder = path.parent
    if not folder.is_dir():
        raise CheckpointWriteError(str(path), f"folder {str(folder)!r} does not exist")
    if path.is_dir():
        raise CheckpointWriteError(str(path), "it is a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX + path.name + ".", dir=folder)
    except OSError as err:
        raise CheckpointWriteError(str(path), err.strerror or str(err)) from None
    try:
        os.chmod(tmp, _mode_for(path))
        with os.fdopen(fd, "r+b") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_folder(folder)
