"""Our boundary around Orbax: folders checked before Orbax reads them, its noise kept inside.

Orbax reports a damaged folder by logging absl warnings and carrying on (a missing
``_METADATA`` becomes "no saved tree"), blocks on a FIFO, follows symbolic links out of the
folder, and reports a failed write from a background thread (a traceback on standard error,
then an exception in the caller). So:

- :func:`check_orbax_folder` looks at the folder first: only regular files and folders
  (no links, FIFOs or devices), ``_METADATA`` and the OCDBT manifest present, and every JSON
  file Orbax will parse readable and bounded in size; a failure is one
  :class:`CheckpointFormatError` naming the file.
- :func:`quiet_orbax` runs Orbax calls with absl's and Orbax's loggers below CRITICAL
  muted and the exceptions of background threads (``threading.excepthook``) and of
  finalizers (``sys.unraisablehook``) captured instead of printed; the caller turns the
  exception Orbax raises into our one error. One report can come later, when the call has
  returned: TensorStore finishing a read into an event loop Orbax already closed ("Event
  loop is closed", from a damaged checkpoint); a filter in front of ``sys.unraisablehook``,
  installed on first use, drops exactly that report and passes every other on.
- :func:`write_failure` reads the system's error out of Orbax's (TensorStore's) message
  (``[os_error_code='28']``) so that a full disk says "No space left on device".
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import stat
import sys
import threading

from .._atomic import file_kind
from ..errors import CheckpointFormatError

__all__ = [
    "check_orbax_folder",
    "is_our_checkpoint",
    "quiet_orbax",
    "read_json_file",
    "write_failure",
]

_JSON_LIMIT = 256 << 20  # bytes of a metadata file we parse (a checksum record is ~60 B/shard)
_MAX_ENTRIES = 1_000_000  # files and folders walked in one checkpoint
_LOGGERS = ("absl", "orbax", "tensorstore")


def _damaged(path: str, problem: str) -> CheckpointFormatError:
    return CheckpointFormatError(
        f"checkpoint {path!r}",
        f"is not an Orbax checkpoint, or is damaged: {problem}",
        "check the path, or save the checkpoint again",
    )


def read_json_file(path: str, name: str):
    """Parse ``path/name`` (a regular file of bounded size) as JSON; CheckpointFormatError if not."""
    file = os.path.join(path, name)
    try:
        st = os.lstat(file)
    except FileNotFoundError:
        raise _damaged(path, f"it has no {name}") from None
    if not stat.S_ISREG(st.st_mode):
        raise _damaged(path, f"its {name} is {_kind(st)}, not a regular file")
    if st.st_size > _JSON_LIMIT:
        raise _damaged(path, f"its {name} is {st.st_size:,} bytes, more than {_JSON_LIMIT:,}")
    try:
        with open(file, "rb") as f:
            return json.loads(f.read(_JSON_LIMIT + 1))
    except (ValueError, RecursionError) as err:
        raise _damaged(path, f"its {name} is not valid JSON ({_first(err)})") from None
    except OSError as err:
        raise _damaged(path, f"its {name} cannot be read: {err.strerror}") from None


def _kind(st: os.stat_result) -> str:
    return "a symbolic link" if stat.S_ISLNK(st.st_mode) else file_kind(st)


def _first(err: BaseException) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def check_orbax_folder(path: str) -> dict:
    """Check ``path`` is an Orbax checkpoint folder Orbax can read without blocking, leaving it
    or warning; return its ``_CHECKPOINT_METADATA`` (``{}`` when it has none: other tools')."""
    try:
        st = os.stat(path)
    except OSError as err:
        raise _damaged(path, err.strerror or "it cannot be opened") from None
    if not stat.S_ISDIR(st.st_mode):
        raise _damaged(path, f"it is {file_kind(st)}, not a folder")
    count = 0
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            count += 1
            if count > _MAX_ENTRIES:
                raise _damaged(path, f"it holds more than {_MAX_ENTRIES:,} files")
            full = os.path.join(root, name)
            try:
                entry = os.lstat(full)
            except OSError as err:
                raise _damaged(path, f"{full!r} cannot be read: {err.strerror}") from None
            if not (stat.S_ISREG(entry.st_mode) or stat.S_ISDIR(entry.st_mode)):
                raise _damaged(
                    path,
                    f"{os.path.relpath(full, path)!r} is {_kind(entry)}; a checkpoint holds only "
                    f"regular files and folders",
                )
    meta = read_json_file(path, "_METADATA")
    if not isinstance(meta, dict) or not isinstance(meta.get("tree_metadata"), dict):
        raise _damaged(path, "its _METADATA describes no saved tree")
    if meta.get("use_ocdbt", False) and not os.path.isfile(os.path.join(path, "manifest.ocdbt")):
        raise _damaged(path, "it has no manifest.ocdbt (its array data's index)")
    if not os.path.lexists(os.path.join(path, "_CHECKPOINT_METADATA")):
        return {}
    info = read_json_file(path, "_CHECKPOINT_METADATA")
    if not isinstance(info, dict) or not isinstance(info.get("custom_metadata") or {}, dict):
        raise _damaged(path, "its _CHECKPOINT_METADATA is not a JSON object of Orbax's")
    return info


def is_our_checkpoint(path: str, layout_key: str) -> bool:
    """Whether folder ``path`` is a whole checkpoint written by us (its metadata has our
    layout record); False for anything else, never an error."""
    try:  # our record first: no walk of a folder that is plainly not a checkpoint
        info = read_json_file(path, "_CHECKPOINT_METADATA")
        if not isinstance(info, dict) or layout_key not in (info.get("custom_metadata") or {}):
            return False
        check_orbax_folder(path)
    except CheckpointFormatError:
        return False
    return True


_filter_installed = False


def _orbax_code(obj) -> bool:
    """Whether ``obj`` is a coroutine (or a task running one) of Orbax's."""
    coro = obj.get_coro() if hasattr(obj, "get_coro") else obj
    code = getattr(coro, "cr_code", None)
    return code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename


def _late_callback(info) -> bool:
    """A report Orbax leaves behind after it returned from a damaged checkpoint: TensorStore
    completing a read into the event loop Orbax already closed ("Event loop is closed" from
    asyncio's ``call_soon_threadsafe``), or one of Orbax's read coroutines collected with
    its exception unretrieved. Nothing else."""
    if _orbax_code(info.object):
        return True
    err = info.exc_value
    if not isinstance(err, RuntimeError) or str(err) != "Event loop is closed":
        return False
    tb = info.exc_traceback
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name == "call_soon_threadsafe" and "asyncio" in code.co_filename:
            return True
        tb = tb.tb_next
    return False


class _OrbaxTaskFilter(logging.Filter):
    """asyncio's "Task exception was never retrieved" for one of Orbax's tasks: dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        task = getattr(record, "task", None)
        text = record.getMessage() if task is None else ""
        return not (
            "exception was never retrieved" in text
            and f"{os.sep}orbax{os.sep}" in text
            or (task is not None and _orbax_code(task))
        )


def _drop_late_callbacks() -> None:
    """Chain a filter in front of ``sys.unraisablehook`` (once per process) that drops
    :func:`_late_callback` reports, which arrive at any time after Orbax returns."""
    global _filter_installed
    if _filter_installed:
        return
    previous = sys.unraisablehook

    def hook(info):
        if not _late_callback(info):
            previous(info)

    sys.unraisablehook = hook
    logging.getLogger("asyncio").addFilter(_OrbaxTaskFilter())
    _filter_installed = True


@contextlib.contextmanager
def quiet_orbax():
    """Run Orbax inside: its log lines below CRITICAL and its background threads' and
    finalizers' exceptions stay here (the list yielded collects the exceptions)."""
    caught: list[BaseException] = []
    _drop_late_callbacks()
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    levels = [logger.level for logger in loggers]
    hook, unraisable = threading.excepthook, sys.unraisablehook

    def thread_hook(args):
        if args.exc_value is not None:
            caught.append(args.exc_value)

    def unraisable_hook(info):
        if info.exc_value is not None:
            caught.append(info.exc_value)

    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    threading.excepthook, sys.unraisablehook = thread_hook, unraisable_hook
    try:
        yield caught
    finally:
        threading.excepthook, sys.unraisablehook = hook, unraisable
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


_OS_ERROR = re.compile(r"os_error_code='?(\d+)")


def write_failure(err: BaseException, caught: list[BaseException]) -> str | None:
    """The system's reason a write inside Orbax failed (``No space left on device``), from the
    exception raised or those caught in its threads; None when it was not a failed write."""
    for e in (err, *caught):
        if isinstance(e, OSError) and e.errno is not None and e.filename is None:
            return e.strerror or os.strerror(e.errno)
        match = _OS_ERROR.search(str(e))
        if match:
            return os.strerror(int(match.group(1)))
    return None
