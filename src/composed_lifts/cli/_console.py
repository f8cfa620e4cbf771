"""The rich console every subcommand prints through.

rich answers a closed pipe (``composed-lifts run | head``) with ``SystemExit(1)``; here it
raises ``BrokenPipeError`` instead, which the command line's boundary turns into a quiet
exit with status 0, as for any reader that stops early.
"""

from __future__ import annotations

from rich.console import Console as _RichConsole

__all__ = ["Console"]


class Console(_RichConsole):
    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError("the reader of standard output went away")
