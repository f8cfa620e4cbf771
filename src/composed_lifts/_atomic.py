"""Writing files atomically: nothing on disk is lost, whatever fails or whoever signals.

:func:`atomic_writer` writes to a temporary file in the destination's folder,
flushes and fsyncs it, renames it over the destination (``os.replace``) and
fsyncs the folder: a reader sees the old file or the new one, never half of
one. The new file keeps the old one's permissions (and owner, where allowed);
a read-only file is refused; a symbolic link is written through (the link
stays, its target is replaced). SIGTERM, SIGINT and SIGHUP remove the
temporary file first; one left by a killed writer (SIGKILL) has a hidden name
with the writer's process id and is removed by the next write to that file.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import tempfile
import threading
from pathlib import Path
from typing import Any

from .errors import OutputFileError, ReadOnlyFileError

__all__ = ["atomic_writer", "check_writable", "file_kind", "fsync_folder"]

_CAUGHT_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name)
)
_TMP_RE = re.compile(r"\.(\d+)\.[A-Za-z0-9_]+\.tmp$")


def file_kind(st: os.stat_result) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(st.st_mode):
            return name
    return "not a regular file"


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def check_writable(path: str | os.PathLike, flag: str = "output file") -> Path:
    """Check, before any work, that ``path`` can be written atomically; return the file to replace.

    A symbolic link resolves to its target. Raises :class:`OutputFileError` (missing or
    unwritable folder, a folder or device at ``path``, a name too long) or
    :class:`ReadOnlyFileError`.
    """
    shown = str(path)
    target = Path(os.path.realpath(path))
    folder = target.parent
    if len(target.name.encode()) > _name_max(folder):
        raise OutputFileError(
            f"{flag} {shown!r}",
            "name_too_long",
            length=len(target.name.encode()),
            limit=_name_max(folder),
        )
    try:
        fst = os.stat(folder)
    except FileNotFoundError:
        raise OutputFileError(f"{flag} {shown!r}", "no_folder", folder=str(folder)) from None
    except OSError as err:
        raise OutputFileError(
            f"{flag} {shown!r}", "folder_fails", folder=str(folder), reason=err.strerror
        ) from None
    if not stat.S_ISDIR(fst.st_mode):
        raise OutputFileError(
            f"{flag} {shown!r}", "not_a_folder", folder=str(folder), found=file_kind(fst)
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputFileError(f"{flag} {shown!r}", "folder_read_only", folder=str(folder))
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return target
    except OSError as err:
        raise OutputFileError(f"{flag} {shown!r}", "unchecked", reason=err.strerror) from None
    if not stat.S_ISREG(st.st_mode):
        raise OutputFileError(f"{flag} {shown!r}", "not_a_file", found=file_kind(st))
    if not st.st_mode & 0o222 or not os.access(target, os.W_OK):
        raise ReadOnlyFileError(f"{flag} {shown!r}", stat.filemode(st.st_mode))
    return target


def _unlink(path: str | None) -> None:
    if path:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _remove_leftovers(folder: Path, prefix: str) -> None:
    """Remove temporary files of this target left by writers that no longer run."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            match = _TMP_RE.search(entry.name)
            if not (entry.name.startswith(prefix) and match):
                continue
            pid = int(match.group(1))
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                _unlink(entry.path)
            except (PermissionError, OverflowError, OSError):
                pass


@contextlib.contextmanager
def _removed_on_signal(tmp: list[str | None]):
    """While active, SIGTERM/SIGINT/SIGHUP first remove ``tmp[0]``, then act as before."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}

    def handler(signum, frame):
        _unlink(tmp[0])
        tmp[0] = None
        before = previous[signum]
        if callable(before):
            before(signum, frame)
        else:  # the default action: terminate by this signal
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    for sig in _CAUGHT_SIGNALS:
        before = signal.getsignal(sig)
        if before is signal.SIG_IGN:
            continue
        previous[sig] = before
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, before in previous.items():
            signal.signal(sig, before if before is not None else signal.SIG_DFL)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "wb", flag: str = "output file"):
    """Open a temporary file beside ``path``; on success flush, fsync and rename it over ``path``.

    ``mode`` is ``"wb"``, ``"w"``, or ``"r+b"`` for a writer that seeks back; ``flag`` names
    the file in errors (``--output``, ``checkpoint``).

    The new file keeps the old one's permission bits (and owner, where allowed); a new file
    gets ``0o666 & ~umask``. A read-only ``path`` is refused, a symbolic link is written
    through to its target, and the temporary file is removed on an exception or on SIGTERM,
    SIGINT or SIGHUP (one left by a killed writer is removed by the next write).
    """
    target = check_writable(path, flag)
    folder = target.parent
    stem = target.name.encode()[: max(_name_max(folder) - 40, 1)].decode(errors="ignore")
    prefix = f".{stem}."
    _remove_leftovers(folder, prefix)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    tmp: list[str | None] = [None]
    with _removed_on_signal(tmp):
        try:
            fd, name = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}.", suffix=".tmp", dir=folder)
        except OSError as err:
            raise OutputFileError(
                f"{flag} {str(path)!r}", "no_temporary", folder=str(folder), reason=err.strerror
            ) from None
        tmp[0] = name
        try:
            if st is None:
                umask = os.umask(0)
                os.umask(umask)
                os.fchmod(fd, 0o666 & ~umask)
            else:
                os.fchmod(fd, stat.S_IMODE(st.st_mode))
                if (st.st_uid, st.st_gid) != (os.getuid(), os.getgid()):
                    with contextlib.suppress(OSError):
                        os.fchown(fd, st.st_uid, st.st_gid)
            with os.fdopen(fd, mode) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(name, target)
            tmp[0] = None
        finally:
            _unlink(tmp[0])
    fsync_folder(folder)


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make a rename inside ``folder`` durable (nothing where folders cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
