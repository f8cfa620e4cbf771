"""The command line under hostile input, in process: every failure is one line and status 2 (or 1).

By category: flags out of range (every command), input files that are not what they claim,
output locations that cannot be written, users' blocks that fail, results that are not
finite. Each checks the exit status, exactly one line on standard error, and that no file
was lost or changed.
"""

import json
import os
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

from composed_lifts import (
    _memory,  # the one reading of the memory available
    composed_lifts_forward,
)
from hostile import call, hostile, snapshot

SMALL = ["--layers", "2", "--features", "3"]


@pytest.fixture(autouse=True)
def _no_cache(monkeypatch):
    # In process, JAX's persistent cache would stay on for the rest of the test session.
    monkeypatch.setenv("COMPOSED_LIFTS_CACHE", "off")
    monkeypatch.setenv("COLUMNS", "120")


# --- every flag out of range ---------------------------------------------------------------

FLAGS = [
    ("run", ["--seed", "-1"], ["--seed must be in [0, 2**32 - 1]"]),
    ("run", ["--seed", str(2**32)], ["--seed"]),
    ("run", ["--seed", "x"], ["--seed", "invalid int"]),
    ("run", ["--layers", "-2"], ["--layers must be >= 0"]),
    ("run", ["--layers", "100000000"], ["needs about", "GB", "--force"]),
    ("run", ["--features", "0"], ["--features must be >= 1"]),
    ("run", ["--features", "1000000"], ["needs about", "--features"]),
    ("run", ["--batch", "-1"], ["--batch must be >= 0"]),
    ("run", ["--batch", "10000000000"], ["needs about", "--batch"]),
    ("run", ["--format", "xml"], ["--format"]),
    ("run", ["--layers", "1e3"], ["--layers", "invalid int"]),
    ("tune", ["--layers", "0"], ["--layers must be >= 1"]),
    ("tune", ["--features", "-1"], ["--features must be >= 1"]),
    ("tune", ["--batch", "0"], ["--batch must be >= 1"]),
    ("tune", ["--rounds", "0"], ["--rounds must be >= 1"]),
    ("tune", ["--unrolls", "0"], ["--unrolls must be >= 1"]),
    ("tune", ["--unrolls", ","], ["--unrolls must be a list of at least one factor"]),
    ("tune", ["--unrolls", "a"], ["--unrolls", "expected integers"]),
    ("tune", ["--remats", "bogus"], ["--remats must be names from"]),
    ("tune", ["--dots", "bogus"], ["--dots must be names from"]),
    ("tune", ["--memory-budget-mb", "nan"], ["--memory-budget-mb", "nan"]),
    ("tune", ["--memory-budget-mb", "inf"], ["--memory-budget-mb"]),
    ("tune", ["--memory-budget-mb", "-1"], ["--memory-budget-mb"]),
    ("tune", ["--layers", "100000000"], ["needs about", "--layers"]),
    ("tune", ["--features", "1000000"], ["needs about", "--features"]),
    ("tune", ["--batch", "10000000000", "--features", "8"], ["needs about", "--batch"]),
    (
        "tune",
        ["--field", "x=1"],
        ["--field must be a field of Block", "'x': Block has no such field"],
    ),
    ("tune", ["--field", "features=abc"], ["--field", "features='abc'", "--features"]),
    (
        "tune",
        ["--block", "mlp4x", "--field", "features=0"],
        ["--field", "features=0", "--features"],
    ),
    ("tune", ["--field", "noequals"], ["--field must be NAME=VALUE"]),
    ("tune", ["--block", "nope"], ["--block must be MODULE:CLASS"]),
    ("tune", ["--block", "../dir/m:B"], ["is a path", "m:B"]),
    ("tune", ["--block", "no_such_module_xyz:B"], ["cannot import module"]),
    ("run", ["--devices", "0"], ["--devices must be >= 1"]),
    ("run", ["--devices", "64"], ["needs 64 devices", "device_count=64"]),
    ("run", ["--devices", "4", "--batch", "6"], ["batch of 6", "--devices of size 4"]),
    ("inspect", ["--layers", "0"], ["--layers must be >= 1"]),
    ("inspect", ["--width", "0"], ["--width must be >= 1"]),
    ("inspect", ["--order", "sideways"], ["--order"]),
    ("inspect", ["--plot", "out.txt"], ["--plot", ".png"]),
    ("inspect", ["--plot", "no/such/folder/p.png"], ["--plot", "does not exist"]),
    ("inspect", ["--block", "os:path"], ["not a Linen module class"]),
    ("inspect", ["--features", "100000"], ["needs about", "--features"]),
    (
        "inspect",
        ["--batch", "100000000", "--vmap-variable-axes", "0", "--vmap-split-rngs", "true"],
        ["needs about", "--batch"],
    ),
]


@pytest.mark.parametrize(
    "command, args, words", FLAGS, ids=[" ".join([c, *a]) for c, a, _ in FLAGS]
)
def test_every_flag_out_of_range(capsys, tmp_path, monkeypatch, command, args, words):
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    hostile(capsys, command, *args, words=words)
    assert snapshot(tmp_path) == before


# --- input files that are not what they claim ----------------------------------------------


def _npy_bytes(array):
    import io

    f = io.BytesIO()
    np.save(f, array)
    return f.getvalue()


INPUTS = {
    "missing": (None, ["does not exist"]),
    "folder": ("dir", ["is a folder, not a regular file"]),
    "fifo": ("fifo", ["FIFO", "--input -"]),
    "npz renamed npy": (b"PK\x03\x04" + b"\0" * 40, ["zip archive", ".npz"]),
    "npy header claims a huge shape": ("huge", ["truncated", "(10000000000, 8)"]),
    "npy truncated": (_npy_bytes(np.ones((4, 3), np.float32))[:-5], ["truncated"]),
    "npy with trailing bytes": (_npy_bytes(np.ones((4, 3), np.float32)) + b"xx", ["longer"]),
    "npy of objects": ("objects", ["Python objects"]),
    "npy without columns": (_npy_bytes(np.ones((2, 0), np.float32)), ["no columns"]),
    "npy 3-D": (
        _npy_bytes(np.ones((2, 2, 3), np.float32)),
        ["3-D", "must be a rectangular 2-D array"],
    ),
    "npy wrong width": (
        _npy_bytes(np.ones((2, 5), np.float32)),
        ["shape[-1] is 5", "--features 5"],
    ),
    "npy of booleans": (_npy_bytes(np.ones((2, 3), bool)), ["real numbers"]),
    "npy with inf": (_npy_bytes(np.array([[1, np.inf, 0]], np.float32)), ["NaN or infinite"]),
    "json nested deeply": (b"[" * 100000 + b"]" * 100000, ["nested too deeply"]),
    "json not a list": (b'{"x": 1}', ["list of lists"]),
    "json ragged": (b"[[1, 2, 3], [1]]", ["rectangular"]),
    "json of strings": (b'[["a", "b", "c"]]', ["real numbers"]),
    "json truncated": (b"[[1, 2, 3], [4, 5", ["not valid JSON"]),
    "json not utf-8": (b"[[1, 2, \xff]]", ["could not be read"]),
    "json overflows float32": (b"[[1, 2, 1e39]]", ["NaN or infinite"]),
}


def _write_input(tmp_path, kind, content):
    suffix = ".json" if kind.startswith("json") else ".npy"
    path = tmp_path / f"x{suffix}"
    if content is None:
        return path
    if content == "dir":
        path.mkdir()
    elif content == "fifo":
        os.mkfifo(path)
    elif content == "huge":
        raw = bytearray(_npy_bytes(np.zeros((2, 3), np.float32)))
        header_end = raw.index(b"\n") + 1
        header = raw[10:header_end].decode("latin1").replace("(2, 3)", "(10000000000, 8)")
        header = header.rstrip("\n").rstrip() + " "
        header = header + " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
        raw = bytes(raw[:8]) + len(header).to_bytes(2, "little") + header.encode("latin1")
        path.write_bytes(raw + bytes(raw[header_end:]) + b"\0" * 24)
    elif content == "objects":
        np.save(path, np.array([[1, "a", None]], dtype=object), allow_pickle=True)
    else:
        path.write_bytes(content)
    return path


@pytest.mark.parametrize("kind", sorted(INPUTS))
def test_input_files_that_are_not_what_they_claim(capsys, tmp_path, kind):
    content, words = INPUTS[kind]
    path = _write_input(tmp_path, kind, content)
    out = tmp_path / "y.npy"
    np.save(out, np.arange(3.0))
    before = snapshot(tmp_path)
    args = ["run", "--layers", "1", "--input", path, "--output", out]
    if "width" in kind:
        args += ["--features", "3"]
    hostile(capsys, *args, words=["--input", *words])
    assert snapshot(tmp_path) == before


def test_json_too_big_for_memory_is_refused_before_parsing(capsys, tmp_path, monkeypatch):
    path = tmp_path / "x.json"
    path.write_text(json.dumps(np.ones((2000, 8)).tolist()))  # ~66 kB of JSON
    monkeypatch.setattr(_memory, "_meminfo_available", lambda: 1_000_000)
    monkeypatch.setattr(_memory, "_cgroup_available", lambda: None)
    hostile(capsys, "run", "--input", path, words=["MB or more of JSON", "save it as .npy"])
    # --force skips the estimate; the run itself is small
    status, out, err = call(capsys, "run", "--input", path, "--layers", "1", "--force")
    assert status == 0, err


def test_memory_estimate_refuses_and_force_overrides(capsys, monkeypatch):
    monkeypatch.setattr(_memory, "_meminfo_available", lambda: 100)
    monkeypatch.setattr(_memory, "_cgroup_available", lambda: None)
    for command in (["run"], ["tune"], ["inspect"]):
        hostile(
            capsys, *command, *SMALL, words=["needs about", "but 1e-07 GB is available", "--force"]
        )
    status, out, err = call(capsys, "run", *SMALL, "--force")
    assert status == 0 and err == "", err


def test_the_readmes_error_line_is_what_the_command_prints(capsys):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    (shown,) = re.findall(r"\(`(composed-lifts run: error: [^`]+)`\)", readme)
    line, _ = hostile(capsys, "run", "--layers", "-2")
    assert line == shown


def test_input_naming_uses_the_flags(capsys, tmp_path):
    path = tmp_path / "x.json"
    path.write_text("[[1, 2], [3, 4]]")
    line, _ = hostile(capsys, "run", "--input", path, "--features", "3")
    assert "--features" in line and "features=" not in line and "num_layers" not in line


# --- output locations that cannot be written ------------------------------------------------


def _make_location(tmp_path, kind):
    keep = tmp_path / "keep.npy"
    np.save(keep, np.arange(4.0))
    if kind == "missing folder":
        return tmp_path / "nope" / "y.npy"
    if kind == "folder is a file":
        return keep / "y.npy"
    if kind == "a folder":
        (tmp_path / "d.npy").mkdir()
        return tmp_path / "d.npy"
    if kind == "name too long":
        return tmp_path / ("y" * 300 + ".npy")
    if kind == "read-only file":
        os.chmod(keep, 0o444)
        return keep
    if kind == "unknown suffix":
        return tmp_path / "y.txt"
    if kind == "fifo":
        os.mkfifo(tmp_path / "f.npy")
        return tmp_path / "f.npy"
    if kind == "inside /proc":
        return "/proc/composed-lifts-y.npy"
    if kind == "dangling link to a missing folder":
        os.symlink(tmp_path / "gone" / "y.npy", tmp_path / "link.npy")
        return tmp_path / "link.npy"
    raise AssertionError(kind)


LOCATIONS = {
    "missing folder": ["does not exist"],
    "folder is a file": ["not a folder"],
    "a folder": ["is a folder"],
    "name too long": ["bytes long", "shorter name"],
    "read-only file": ["read-only", "chmod u+w"],
    "unknown suffix": ["suffix '.txt'"],
    "fifo": ["FIFO"],
    "inside /proc": ["cannot write"],
    "dangling link to a missing folder": ["does not exist"],
}


@pytest.mark.parametrize("kind", sorted(LOCATIONS))
def test_output_locations_that_cannot_be_written(capsys, tmp_path, kind):
    out = _make_location(tmp_path, kind)
    before = snapshot(tmp_path)
    hostile(
        capsys,
        "run",
        *SMALL,
        "--output",
        out,
        words=["--output" if kind != "inside /proc" else "", *LOCATIONS[kind]],
    )
    assert snapshot(tmp_path) == before


# --- users' blocks that fail ----------------------------------------------------------------

BLOCKS = {
    "syntax error": ("def broken(:\n", ["SyntaxError", "importing module"]),
    "raises at import": ("raise RuntimeError('no GPU here')\n", ["RuntimeError: no GPU here"]),
    "raises in setup": (
        """
        import flax.linen as nn
        class B(nn.Module):
            features: int
            def setup(self):
                raise ValueError("setup refuses")
            def __call__(self, x, _):
                return x, None
        """,
        ["your block raised ValueError: setup refuses", "fix the block"],
    ),
    "bad field value": (
        """
        import flax.linen as nn
        class B(nn.Module):
            features: int
            hidden: int = 3
            @nn.compact
            def __call__(self, x, _):
                return x + nn.Dense(self.features)(nn.Dense(self.hidden)(x)), None
        """,
        ["your block raised"],
    ),
}


# Blocks that import but fail when called: `inspect` describes them (the doctor's finding names
# the block's own error); `tune` refuses them in one line.
INSPECT_FINDINGS = {
    "raises in setup": "B(features=3) fails when called on one example's carry float32[3]: "
    "ValueError: setup refuses",
    "bad field value": "B(features=3, hidden='abc') fails when called on one example's carry",
}


@pytest.mark.parametrize("command", ["tune", "inspect"])
@pytest.mark.parametrize("kind", sorted(BLOCKS))
def test_users_blocks_that_fail(capsys, tmp_path, monkeypatch, command, kind):
    source, words = BLOCKS[kind]
    name = f"userblock_{command}_{kind.replace(' ', '_').replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.chdir(tmp_path)
    extra = ["--field", "hidden=abc"] if kind == "bad field value" else []
    args = [command, "--block", f"{name}:B", *extra, *SMALL, "--batch", "2"]
    if command == "tune":
        args += ["--unrolls", "1", "--remats", "none", "--dots", "default", "--rounds", "1"]
    status, out, err = call(capsys, *args)
    assert "Traceback" not in err, f"LEAKED TRACEBACK: {err[-1500:]}"
    if command == "inspect" and kind in INSPECT_FINDINGS:
        # the doctor reports a block that fails on its carry as an error finding (status 1)
        assert status == 1 and not err, (status, out, err)
        assert "ERROR block-fails" in out and INSPECT_FINDINGS[kind] in " ".join(out.split())
        return
    assert status == 2, (status, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"{name}:B" in lines[0] and "--block" in lines[0], err
    for word in words:
        assert word in lines[0], lines[0]


# --- results that are not finite -------------------------------------------------------------


def test_a_finite_input_that_overflows_is_refused_naming_the_layer(capsys, tmp_path):
    x = np.full((2, 3), 3e38, np.float32)  # finite in float32; the first layer overflows
    np.save(tmp_path / "x.npy", x)
    want = np.asarray(composed_lifts_forward(0, x, 2, 3))
    assert not np.isfinite(want).all()  # the reference agrees the result is not finite
    out = tmp_path / "y.json"
    out.write_text("[1]\n")
    args = ["run", "--input", tmp_path / "x.npy", "--layers", "2", "--output", out]
    line, stdout = hostile(capsys, *args, words=["layer 0 (of 2", "--allow-nonfinite"])
    assert stdout == "" and out.read_text() == "[1]\n"

    status, stdout, err = call(capsys, *args, "--format", "json", "--allow-nonfinite")
    assert status == 0, err

    def strict(token):
        raise AssertionError(f"bare {token} in JSON")

    report = json.loads(stdout, parse_constant=strict)
    written = json.loads(out.read_text(), parse_constant=strict)
    assert report["result"] == written
    decode = {"NaN": np.nan, "Infinity": np.inf, "-Infinity": -np.inf}
    got = np.array([decode.get(v, v) for v in written], np.float32)
    np.testing.assert_array_equal(got, want)


def test_json_result_streams_the_same_numbers_as_json_dumps(capsys, tmp_path):
    out = tmp_path / "y.json"
    status, stdout, err = call(
        capsys, "run", "--seed", "5", "--batch", "3", *SMALL, "--format", "json", "--output", out
    )
    assert status == 0, err
    want = np.asarray(
        composed_lifts_forward(
            5, np.random.default_rng(5).standard_normal((3, 3)).astype(np.float32), 2, 3
        )
    )
    assert json.loads(stdout)["result"] == json.loads(json.dumps(want.tolist()))
    assert out.read_text() == json.dumps(want.tolist()) + "\n"
