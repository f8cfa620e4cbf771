"""The ``composed-lifts`` command line: a thin shell over the Python API.

Each subcommand lives in its own module (``_run.py``, ...) with a
``register(commands)`` function that adds its parser and sets ``handler``;
list the module in ``_COMMANDS``. :func:`main` is the one error boundary for
all of them: bad input (our error classes, files, memory, a user's block)
exits with status 2 and one line on standard error, any other failure with
status 1, one line and a hint to rerun with ``--debug`` for the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys

from ..errors import ComposedLiftsError
from . import _blocks, _cache, _convert, _finetune, _generate, _inspect, _run, _show, _tune
from ._errors import StandardOutputError

__all__ = ["main"]

_COMMANDS = (_run, _inspect, _tune, _convert, _show, _generate, _finetune)
_PROG = "composed-lifts"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one clear line, status 2
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=_PROG,
        description="Layer stacks scanned over depth and vmapped over a batch (JAX + Flax).",
    )
    debug = "on an internal error, show the Python traceback instead of one line"
    parser.add_argument("--debug", action="store_true", help=debug)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in _COMMANDS:
        command.register(commands)
    for sub in commands.choices.values():  # every subcommand, present and future, takes --debug
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 1 internal error, 2 bad input)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, or a usage error argparse has printed in one line
        return done.code if isinstance(done.code, int) else 2
    name = f"{_PROG} {args.command}"
    try:
        return _run_command(args)
    except SystemExit:
        raise
    except BaseException as err:
        if args.debug and not isinstance(err, KeyboardInterrupt):
            raise
        status, message = _classify(err)
        _settle_stdout()
        if message:
            _say(f"{name}: {message}")
        return status


def _run_command(args: argparse.Namespace) -> int:
    if sys.stdout is None:
        raise StandardOutputError("file descriptor 1 was closed when the program started")
    if sys.stdout.closed:
        raise StandardOutputError("sys.stdout is a closed file")
    folder = _cache.cache_folder()
    if folder is None:
        return _handle(args)
    verified = _cache.open_cache(folder)
    _cache.enable(folder)
    try:
        return _handle(args)
    finally:
        _cache.seal_cache(folder, verified)


def _handle(args: argparse.Namespace) -> int:
    status = int(args.handler(args) or 0)
    sys.stdout.flush()
    return status


def _one_line(text: object, limit: int = 600) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_line(err: BaseException) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return _one_line(lines[0] if lines else "", 300)


def _classify(err: BaseException) -> tuple[int, str]:
    """The exit status and the one line for a failure."""
    if isinstance(err, KeyboardInterrupt):
        return 130, "interrupted"
    if isinstance(err, BrokenPipeError):  # the reader went away (`| head`): stop quietly
        return 0, ""
    if isinstance(err, ComposedLiftsError):
        return 2, "error: " + _one_line(err)
    blamed = _blocks.blame(err)
    if blamed:
        return 2, "error: " + _one_line(blamed)
    kind = type(err).__name__
    if isinstance(err, MemoryError) or (
        kind in ("XlaRuntimeError", "JaxRuntimeError")
        and ("RESOURCE_EXHAUSTED" in str(err) or "out of memory" in str(err).lower())
    ):
        return 2, (
            f"error: ran out of memory ({kind}: {_first_line(err) or 'no message'}); ask for "
            f"smaller sizes (--batch, --features, --layers)"
        )
    if isinstance(err, OSError):
        where = f" {err.filename!r}" if err.filename else " the output"
        if err.filename is None and err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
            where = " standard output or a file"
        return 2, f"error: cannot read or write{where}: {err.strerror or _first_line(err)}"
    return 1, (
        f"internal error: {kind}: {_first_line(err)}; rerun with --debug for the traceback "
        f"and report it"
    )


def _say(line: str) -> None:
    with contextlib.suppress(Exception):
        print(line, file=sys.stderr, flush=True)


def _settle_stdout() -> None:
    """If standard output fails, point it at /dev/null so that exiting flushes quietly."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
        return
    except OSError:
        pass
    with contextlib.suppress(Exception):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
