"""The ``composed-lifts`` command line: a thin shell over the Python API.

Each subcommand lives in its own module (``_run.py``, ...) and registers
itself with :func:`main`'s parser. Bad input exits with status 2 and one line
on standard error, without a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from .._errors import ComposedLiftsError
from . import _convert, _generate, _inspect, _run, _show, _tune

__all__ = ["main"]

_COMMANDS = (_run, _inspect, _tune, _convert, _show, _generate)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one clear line, status 2
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="composed-lifts",
        description="Layer stacks scanned over depth and vmapped over a batch (JAX + Flax).",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in _COMMANDS:
        command.register(commands)
    return parser


CACHE_ENV = "COMPOSED_LIFTS_CACHE"


def enable_compilation_cache() -> str | None:
    """Turn on JAX's persistent compilation cache for the command line.

    The folder is ``$COMPOSED_LIFTS_CACHE``, else ``~/.cache/composed-lifts/jax``;
    ``COMPOSED_LIFTS_CACHE=off`` turns it off. A second ``composed-lifts run`` with
    the same shapes then loads the compiled program instead of compiling it (the
    results are the same bits: the same program runs). Returns the folder used.
    """
    folder = os.environ.get(CACHE_ENV)
    if folder is None:
        folder = os.path.join(os.path.expanduser("~"), ".cache", "composed-lifts", "jax")
    if folder.strip().lower() in ("", "off", "0", "none"):
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    enable_compilation_cache()
    try:
        return int(args.handler(args) or 0)
    except ComposedLiftsError as err:
        print(f"composed-lifts {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. piped into `head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"composed-lifts {args.command}: interrupted", file=sys.stderr)
        return 130
