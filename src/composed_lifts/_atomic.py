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
import ctypes
import errno
import os
import re
import shutil
import signal
import stat
import tempfile
import threading
from pathlib import Path
from typing import Any

from .errors import ComposedLiftsError, OutputFileError, OutputWriteError, ReadOnlyFileError

__all__ = [
    "atomic_writer",
    "check_writable",
    "exchange_paths",
    "file_kind",
    "fsync_folder",
    "remove_leftover_folders",
    "replace_folder",
    "work_folder_prefix",
]

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
            try:
                with os.fdopen(fd, mode) as f:
                    yield f
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(name, target)
            except OSError as err:
                raise _write_failed(err, f"{flag} {str(path)!r}", st is not None) from None
            tmp[0] = None
        finally:
            _unlink(tmp[0])
    fsync_folder(folder)


def _write_failed(err: OSError, where: str, existed: bool) -> OSError:
    """Our error for a write that failed part way (no file name: the disk, a limit, the device);
    any other error (ours, or one naming another file) as it is."""
    if isinstance(err, ComposedLiftsError) or err.filename is not None:
        return err
    kept = "the old one is unchanged" if existed else "nothing was left there"
    return OutputWriteError(where, err.strerror or str(err), kept)


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make a rename inside ``folder`` durable (nothing where folders cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --- folders replaced whole (Orbax checkpoints) ----------------------------------------------
#
# A folder cannot be renamed over a non-empty one, so replacing a checkpoint folder takes an
# exchange of names: Linux's renameat2(RENAME_EXCHANGE) swaps the new folder and the old one
# in one step, so that OUT is always the old checkpoint or the new one. Where the kernel or
# the file system cannot (other systems, some network file systems: ENOSYS, EINVAL), two
# renames are the fallback (old aside, new in), with a window of one system call without a
# folder at OUT; a save killed in that window is repaired by the next save to OUT, which
# moves the old folder back first. A versioned folder behind a symbolic link swapped by
# rename would be atomic everywhere, but OUT would then be a link (copies, rsync and Orbax's
# own tools see the link) and an existing plain folder could still not be turned into one
# atomically.

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM}


def _renameat2():
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # not Linux, or a C library older than glibc 2.28
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def exchange_paths(a: str, b: str) -> bool:
    """Swap the names ``a`` and ``b`` (both must exist) in one step; False where the system or
    the file system cannot, with nothing changed."""
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err), b)


def replace_folder(fresh: str, target: str, aside: str) -> None:
    """Put folder ``fresh`` at ``target``; an existing ``target`` ends up at ``fresh`` (by an
    exchange) or at ``aside`` (the fallback), for the caller to remove. ``target``'s folder
    is fsynced."""
    if os.path.lexists(target):
        if not exchange_paths(fresh, target):
            os.replace(target, aside)
            os.replace(fresh, target)
    else:
        os.rename(fresh, target)
    fsync_folder(os.path.dirname(target))


def work_folder_prefix(target: str) -> str:
    """The hidden prefix of the work folders of saves to ``target``: ``.NAME.``."""
    folder, name = os.path.split(target)
    stem = name.encode()[: max(_name_max(Path(folder)) - 40, 1)].decode(errors="ignore")
    return f".{stem}."


def remove_leftover_folders(target: str) -> None:
    """Remove the work folders (``.NAME.<pid>.<random>``) of saves to ``target`` whose process
    no longer runs; if ``target`` is missing (a save killed between the fallback's two
    renames), the old folder kept in one of them is moved back first."""
    folder = os.path.dirname(target)
    pattern = re.compile(re.escape(work_folder_prefix(target)) + r"(\d+)\.[A-Za-z0-9_]{8}$")
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            match = pattern.match(entry.name)
            if not match or not entry.is_dir(follow_symlinks=False):
                continue
            try:
                os.kill(int(match.group(1)), 0)
                continue  # still running (or another process has its id now)
            except ProcessLookupError:
                pass
            except (PermissionError, OverflowError, OSError):
                continue
            old = os.path.join(entry.path, "old")
            if not os.path.lexists(target) and os.path.isdir(old):
                with contextlib.suppress(OSError):
                    os.rename(old, target)
                    fsync_folder(folder)
            shutil.rmtree(entry.path, ignore_errors=True)
