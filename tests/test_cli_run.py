"""`composed-lifts run` end to end, through a subprocess."""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from composed_lifts import composed_lifts_forward

CACHE = tempfile.mkdtemp(prefix="composed-lifts-test-cache-")


def cli(*args, stdin=None, cwd=None, cache=CACHE):
    return subprocess.run(
        [sys.executable, "-m", "composed_lifts", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "120", "COMPOSED_LIFTS_CACHE": cache},
    )


def default_x(seed, batch, features):
    return np.random.default_rng(seed).standard_normal((batch, features)).astype(np.float32)


def test_default_example_text_output():
    r = cli("run")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "composed_lifts_forward(seed=0, x_batch: (4, 8), num_layers=4, features=8)" in out
    # axis roles found by probing, as composed-lifts inspect shows them
    assert "params/Dense_0/kernel" in out and "(4, 8, 8)" in out
    assert "(layer, feature, feature)" in out
    assert "params/Dense_0/bias" in out and "(layer, feature)" in out
    assert "init" in out and "apply" in out and " ms" in out
    want = np.asarray(composed_lifts_forward(0, default_x(0, 4, 8), 4, 8)).reshape(4, 8)
    assert f"{want.max():.5g}" in out


def test_json_output_and_npy_output_are_the_function_bits(tmp_path):
    out_file = tmp_path / "y.npy"
    r = cli(
        "run",
        "--seed",
        "7",
        "--layers",
        "3",
        "--features",
        "5",
        "--batch",
        "6",
        "--format",
        "json",
        "--output",
        str(out_file),
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    want = np.asarray(composed_lifts_forward(7, default_x(7, 6, 5), 3, 5))
    np.testing.assert_array_equal(np.asarray(report["result"], np.float32), want)
    np.testing.assert_array_equal(np.load(out_file), want)
    assert report["shape"] == [30]
    kernel = next(p for p in report["params"] if p["path"].endswith("kernel"))
    assert kernel["shape"] == [3, 5, 5] and kernel["roles"] == ["layer", "feature", "feature"]
    assert set(kernel) == {"path", "shape", "dtype", "roles", "count", "bytes"}  # as inspect
    assert set(report["timings_s"]) == {"init", "apply"}
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


@pytest.mark.parametrize("kind", ["npy", "json", "stdin"])
def test_input_files(tmp_path, kind):
    x = np.arange(12, dtype=np.float32).reshape(3, 4) / 5 - 1
    stdin = None
    if kind == "npy":
        path = tmp_path / "x.npy"
        np.save(path, x)
    elif kind == "json":
        path = tmp_path / "x.json"
        path.write_text(json.dumps(x.tolist()))
    else:
        path, stdin = "-", json.dumps(x.tolist())
    out = tmp_path / "y.json"
    r = cli(
        "run",
        "--seed",
        "3",
        "--layers",
        "2",
        "--input",
        str(path),
        "--output",
        str(out),
        stdin=stdin,
    )
    assert r.returncode == 0, r.stderr
    want = np.asarray(composed_lifts_forward(3, x, 2, 4))
    np.testing.assert_array_equal(np.asarray(json.loads(out.read_text()), np.float32), want)


@pytest.mark.parametrize(
    "args,stdin,words",
    [
        (["--seed", "-1"], None, ["--seed must be in [0, 2**32 - 1]"]),
        (
            ["--features", "3", "--input", "-"],
            "[[1, 2], [3, 4]]",
            ["--input.shape[-1] is 2 but --features is 3"],
        ),
        (["--input", "-"], "[[1, 2], [3]]", ["rectangular"]),
        (["--input", "-"], "{not json", ["not valid JSON"]),
        (["--input", "-"], "[[1, NaN]]", ["NaN or infinite"]),
        (["--input", "missing.npy"], None, ["does not exist"]),
        (["--input", "x.csv"], None, ["suffix '.csv'", ".npy, .json"]),
        (["--output", "y.txt"], None, ["suffix '.txt'"]),
        (["--layers", "-2"], None, ["--layers must be >= 0"]),
        (["--batch", "3", "--input", "-"], "[[1]]", ["not allowed with argument"]),
        (["--layers", "two"], None, ["invalid int value"]),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, args, stdin, words):
    r = cli("run", *args, stdin=stdin, cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_corrupted_input_is_reported_and_existing_output_is_kept(tmp_path):
    bad = tmp_path / "x.npy"
    bad.write_bytes(b"\x93NUMPY garbage that is not a header")
    out = tmp_path / "y.npy"
    np.save(out, np.array([1.0, 2.0]))
    before = out.read_bytes()
    r = cli("run", "--input", str(bad), "--output", str(out))
    assert r.returncode == 2 and "could not be read as .npy" in r.stderr
    assert out.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["x.npy", "y.npy"]


def test_console_script_is_installed():
    exe = os.path.join(os.path.dirname(sys.executable), "composed-lifts")
    r = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "run" in r.stdout


def test_compilation_cache_is_used_and_changes_no_bits(tmp_path):
    cache = str(tmp_path / "cache")
    args = (
        "run",
        "--seed",
        "11",
        "--layers",
        "3",
        "--batch",
        "5",
        "--features",
        "7",
        "--format",
        "json",
    )
    first = cli(*args, cache=cache)
    assert first.returncode == 0, first.stderr
    assert os.listdir(cache), "the persistent compilation cache was not written"
    second = cli(*args, cache=cache)
    off = cli(*args, cache="off")
    results = [json.loads(r.stdout)["result"] for r in (first, second, off)]
    assert results[0] == results[1] == results[2]


def test_devices_splits_the_examples_and_equals_one_device():
    # A fresh process without XLA_FLAGS: --devices itself asks JAX for 4 CPU devices.
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    r = subprocess.run(
        [sys.executable, "-m", "composed_lifts", "run", "--devices", "4", "--batch", "8"]
        + ["--format", "json"],
        capture_output=True,
        text=True,
        env={**env, "COMPOSED_LIFTS_CACHE": CACHE},
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["devices"] == 4
    want = np.asarray(composed_lifts_forward(0, default_x(0, 8, 8), 4, 8))
    got = np.asarray(report["result"], np.float32)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * np.abs(want).max())
