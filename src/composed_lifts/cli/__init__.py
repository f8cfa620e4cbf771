"""The ``composed-lifts`` command line: a thin shell over the Python API.

Each subcommand lives in its own module (``_run.py``, ...) and registers
itself with :func:`main`'s parser. Bad input exits with status 2 and one line
on standard error, without a traceback.
"""

from __future__ import annotations

import argparse
import sys

from .._errors import ComposedLiftsError
from . import _inspect, _run

__all__ = ["main"]

_COMMANDS = (_run, _inspect)


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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
