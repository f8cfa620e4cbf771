"""docs/doctor.md: every `composed-lifts inspect` session shown is the command's real output and
exit status (lines compared without trailing spaces, at COLUMNS=100)."""

import pathlib
import re
import shlex

import pytest

from composed_lifts.cli import main

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "doctor.md"
SESSION = re.compile(
    r"```text\n\$ composed-lifts (inspect[^\n]*)\n(.*?)\$ echo \$\?\n(\d+)\n```", flags=re.S
)


def sessions():
    return SESSION.findall(DOC.read_text())


def run_session(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("COMPOSED_LIFTS_CACHE", "off")
    status = main(shlex.split(command))
    out = capsys.readouterr().out
    return "\n".join(line.rstrip() for line in out.splitlines()) + "\n", status


def test_the_doc_shows_sessions():
    assert len(sessions()) >= 5


@pytest.mark.parametrize("command, shown, status", sessions(), ids=lambda v: str(v)[:40])
def test_session_is_the_real_output(command, shown, status, capsys, monkeypatch):
    out, got = run_session(command, capsys, monkeypatch)
    assert (out, got) == (shown, int(status))


def test_python_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)  # it writes layout.png
    namespace: dict = {}
    exec(compile(blocks[0], str(DOC), "exec"), namespace)  # noqa: S102
    assert [(f.pitfall.value, f.severity.value) for f in namespace["report"].findings] == [
        ("ensemble-by-accident", "warning")
    ]
    assert (tmp_path / "layout.png").read_bytes()[:4] == b"\x89PNG"
