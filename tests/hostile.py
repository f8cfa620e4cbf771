"""Shared by the hostile-input tests: run the command line in process and check the one-line promise.

``hostile`` fails with a message starting "LEAKED TRACEBACK" when an exception escapes
``main`` or a traceback reaches standard error. With ``HOSTILE_LOG=FILE`` in the
environment, ``call`` appends one line per input tried (``leaked`` or ``clean``, then the
arguments): how the issue's count of leaked tracebacks was made.
"""

import os
import traceback

from composed_lifts.cli import main


def _log(leaked: bool, argv) -> None:
    if os.environ.get("HOSTILE_LOG"):
        with open(os.environ["HOSTILE_LOG"], "a") as f:
            f.write(f"{'leaked' if leaked else 'clean'} {' '.join(map(str, argv))}\n")


def call(capsys, *argv):
    """``main(argv)`` in process: (status, stdout, stderr); an escaping exception becomes a failure."""
    try:
        status = main([str(a) for a in argv])
    except SystemExit as done:
        status = done.code
    except BaseException as err:  # noqa: BLE001 - what the boundary must never let through
        capsys.readouterr()
        _log(True, argv)
        trace = "".join(traceback.format_exception(err))[-1500:]
        raise AssertionError(f"LEAKED TRACEBACK from {argv}: {trace}") from None
    out, err = capsys.readouterr()
    _log("Traceback" in err, argv)
    return status, out, err


def hostile(capsys, *argv, status=2, words=()):
    """Run ``argv``; assert the exit status, exactly one line on stderr naming ``words``."""
    got, out, err = call(capsys, *argv)
    assert "Traceback" not in err, f"LEAKED TRACEBACK from {argv}: {err[-1500:]}"
    lines = err.strip().splitlines()
    assert got == status, (argv, got, err)
    assert len(lines) == 1, (argv, err)
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0], out


def snapshot(folder):
    """Every file under ``folder`` with its bytes and mode: compare before and after a failure."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            if os.path.islink(path) or not os.path.isfile(path):
                files[path] = os.path.islink(path) and os.readlink(path)
                continue
            with open(path, "rb") as f:
                files[path] = (f.read(), os.stat(path).st_mode)
    return files
