"""``main``'s error boundary: every failure class becomes one line and status 2 or 1, for every command.

In process where possible; standard output closed or full needs a child process.
"""

import os
import subprocess
import sys
import types

import jax
import pytest

from composed_lifts import cli
from composed_lifts.cli import _run
from hostile import call, hostile


@pytest.fixture(autouse=True)
def _no_cache(monkeypatch):
    monkeypatch.setenv("COMPOSED_LIFTS_CACHE", "off")


def _raising(err):
    def handler(*args, **kwargs):
        raise err

    return handler


def _command(name, err):
    """A subcommand module as a new one registers itself (like ``_run.py``)."""

    def register(commands):
        commands.add_parser(name, help="test").set_defaults(handler=_raising(err))

    return types.SimpleNamespace(register=register)


FAILURES = [
    (OSError(5, "Input/output error", "/mnt/x.npy"), 2, ["/mnt/x.npy", "Input/output error"]),
    (PermissionError(13, "Permission denied", "y.npy"), 2, ["y.npy", "Permission denied"]),
    (MemoryError(), 2, ["ran out of memory", "--batch"]),
    (
        jax.errors.JaxRuntimeError(
            "RESOURCE_EXHAUSTED: Out of memory allocating 4e12 bytes.\nmore"
        ),
        2,
        ["ran out of memory", "RESOURCE_EXHAUSTED"],
    ),
    (RecursionError("maximum recursion depth exceeded"), 1, ["internal error", "--debug"]),
    (
        RuntimeError("a bug\nwith a second line"),
        1,
        ["internal error: RuntimeError: a bug", "--debug"],
    ),
    (KeyError("x"), 1, ["internal error: KeyError", "--debug"]),
    (KeyboardInterrupt(), 130, ["interrupted"]),
]


@pytest.mark.parametrize("err, status, words", FAILURES, ids=lambda v: type(v).__name__)
def test_a_new_subcommand_gets_the_boundary_for_free(capsys, monkeypatch, err, status, words):
    monkeypatch.setattr(cli, "_COMMANDS", (*cli._COMMANDS, _command("future", err)))
    hostile(capsys, "future", status=status, words=["composed-lifts future:", *words])


def test_debug_shows_the_traceback(capsys, monkeypatch):
    monkeypatch.setattr(_run, "_param_layout", _raising(RuntimeError("layout bug")))
    hostile(capsys, "run", "--layers", "1", status=1, words=["layout bug", "--debug"])
    with pytest.raises(RuntimeError, match="layout bug"):
        cli.main(["run", "--layers", "1", "--debug"])
    with pytest.raises(RuntimeError, match="layout bug"):
        cli.main(["--debug", "run", "--layers", "1"])


def test_help_and_usage_errors(capsys):
    assert call(capsys, "--help")[0] == 0
    hostile(capsys, "frobnicate", words=["invalid choice"])
    hostile(capsys, words=["required"])


def _child(*args, **kwargs):
    env = {**os.environ, "COMPOSED_LIFTS_CACHE": "off"}
    return subprocess.run(
        [sys.executable, "-m", "composed_lifts", *args],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


CLI = f"{sys.executable} -m composed_lifts"


def _shell(command):
    env = {**os.environ, "COMPOSED_LIFTS_CACHE": "off"}
    return subprocess.run(
        command, shell=True, executable="/bin/bash", stderr=subprocess.PIPE, text=True, env=env
    )


def test_standard_output_full(tmp_path):
    with open("/dev/full", "w") as full:
        r = _child("run", "--layers", "1", "--format", "json", stdout=full)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and "No space left on device" in r.stderr, r.stderr


def test_standard_output_closed(tmp_path):
    r = _shell(f"exec {CLI} run --layers 1 --format json --output {tmp_path}/y.npy >&-")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and "standard output is closed" in r.stderr, r.stderr
    assert os.listdir(tmp_path) == []  # refused before any work


@pytest.mark.parametrize(
    "command",
    ["run --batch 2000 --features 64 --layers 1 --format json | head -c 10", "run | head -1"],
    ids=["json", "text (rich)"],
)
def test_a_reader_that_goes_away_is_not_an_error(tmp_path, command):
    r = _shell(f"{CLI} {command} >/dev/null; exit ${{PIPESTATUS[0]}}")
    assert r.returncode == 0 and r.stderr == "", r.stderr
