"""`composed-lifts inspect`, in process (one JAX start-up for all): text, JSON, exit statuses, plot."""

import json
import os

import pytest

from composed_lifts.cli import main


def inspect(capsys, *args):
    status = main(["inspect", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_seed_composition_is_clean(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")
    status, out, err = inspect(capsys, "--layers", "3", "--features", "4", "--batch", "2")
    assert status == 0, err
    assert "Block(features=4), N=3 layers, B=2 examples, carry float32[2, 4]" in out
    assert 'nn.vmap(nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True}' in out
    assert "kernel  (3, 4, 4)  (N=3, F=4, F=4)" in out and "bias    (3, 4)     (N=3, F=4)" in out
    assert "evaluated again with N=4 and with B=4" in out
    assert "total: 60 params, 240 bytes" in out
    assert "unrolled equivalent: 3 separate Block instances x 20 params = 60 params" in out
    assert "findings: none" in out


def test_json_for_an_ensemble_by_accident(capsys):
    status, out, _ = inspect(
        capsys,
        "--layers",
        "2",
        "--features",
        "3",
        "--batch",
        "4",
        "--vmap-variable-axes",
        "0",
        "--vmap-split-rngs",
        "true",
        "--format",
        "json",
    )
    assert status == 0  # a warning, not an error
    report = json.loads(out)
    assert [f["pitfall"] for f in report["findings"]] == ["ensemble-by-accident"]
    assert report["findings"][0]["severity"] == "warning"
    assert "4 x 2 = 8 independent layers" in report["findings"][0]["message"]
    kernel = next(leaf for leaf in report["layout"]["leaves"] if leaf["path"].endswith("kernel"))
    assert kernel["shape"] == [4, 2, 3, 3]
    assert kernel["roles"] == ["batch", "layer", "feature", "feature"]
    status, out, _ = inspect(
        capsys,
        "--layers",
        "2",
        "--features",
        "3",
        "--batch",
        "4",
        "--intent",
        "ensemble",
        "--vmap-variable-axes",
        "0",
        "--vmap-split-rngs",
        "true",
        "--format",
        "json",
    )
    assert status == 0 and json.loads(out)["findings"] == []


@pytest.mark.parametrize(
    "args, pitfall, words",
    [
        (["--width", "5"], "width-mismatch", "x.shape[-1] is 5 but Block(features=4)"),
        (["--vmap-split-rngs", "true"], "confused-split", "vmap has mapped output but out_axes"),
    ],
)
def test_error_findings_exit_1(capsys, args, pitfall, words):
    status, out, _ = inspect(capsys, "--features", "4", "--format", "json", *args)
    report = json.loads(out)
    assert status == 1 and report["ok"] is False and report["layout"] is None
    assert [f["pitfall"] for f in report["findings"]] == [pitfall]
    assert (
        report["findings"][0]["severity"] == "error" and words in report["findings"][0]["message"]
    )
    status, out, _ = inspect(capsys, "--features", "4", *args)
    assert status == 1 and f"ERROR {pitfall}:" in out and "fix:" in out


def test_user_block_with_two_widths_and_a_plot(capsys, tmp_path):
    png = tmp_path / "layout.png"
    status, out, err = inspect(
        capsys,
        "--block",
        "doctor_blocks:TwoWidths",
        "--field",
        "hidden=6",
        "--features",
        "3",
        "--layers",
        "2",
        "--batch",
        "2",
        "--format",
        "json",
        "--plot",
        str(png),
    )
    assert status == 0, err
    report = json.loads(out)
    assert report["block"] == "TwoWidths(features=3, hidden=6)"
    shapes = {leaf["path"]: (leaf["shape"], leaf["roles"]) for leaf in report["layout"]["leaves"]}
    assert shapes["params/up/kernel"] == ([2, 3, 6], ["layer", "feature", "feature"])
    assert shapes["params/down/kernel"] == ([2, 6, 3], ["layer", "feature", "feature"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and report["plot"] == str(png)
    assert os.listdir(tmp_path) == ["layout.png"]  # written atomically, no temporary left


@pytest.mark.parametrize(
    "args, words",
    [
        (["--block", "no_such_module_xyz:Block"], "cannot import module 'no_such_module_xyz'"),
        (["--block", "doctor_blocks"], "--block must be MODULE:CLASS"),
        (["--block", "doctor_blocks:Nope"], "has no attribute 'Nope'"),
        (["--block", "doctor_blocks:NOT_A_BLOCK"], "not a Linen module class"),
        (["--field", "depth=2"], "'depth': Block has no such field"),
        (["--field", "oops"], "--field must be NAME=VALUE"),
        (["--layers", "0"], "--layers must be >= 1, got 0"),
        (["--width", "0"], "--width must be >= 1, got 0"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, args, words):
    status, out, err = inspect(capsys, *args)
    assert status == 2 and out == ""
    assert err.startswith("composed-lifts inspect: error: ") and words in err
    assert err.count("\n") == 1


def test_no_plot_when_the_layout_cannot_be_evaluated(capsys, tmp_path):
    png = tmp_path / "x.png"
    status, _, err = inspect(capsys, "--width", "3", "--plot", str(png))
    assert status == 1 and not png.exists() and "no plot written" in err


def test_console_script_imports_a_block_from_the_current_folder():
    import pathlib
    import subprocess
    import sys

    script = pathlib.Path(sys.executable).parent / "composed-lifts"
    if not script.exists():
        pytest.skip("the composed-lifts console script is not installed beside this python")
    r = subprocess.run(
        [
            str(script),
            "inspect",
            "--block",
            "doctor_blocks:Gated",
            "--features",
            "2",
            "--layers",
            "2",
            "--batch",
            "3",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        cwd=pathlib.Path(__file__).parent,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert r.returncode == 0, r.stderr
    leaves = {leaf["path"]: leaf["roles"] for leaf in json.loads(r.stdout)["layout"]["leaves"]}
    assert leaves == {
        "params/mix": ["layer", "feature", "feature", "feature"],
        "params/scale": ["layer"],
    }


def test_text_keeps_brackets_in_messages():
    from rich.console import Console

    from composed_lifts.cli._doctor_text import render_text
    from composed_lifts.doctor import CheckReport, Composition, Finding, Pitfall, Severity

    finding = Finding(
        Pitfall.LIFT_ORDER_REVERSED, Severity.WARNING, "params[0] moved", "index [layer, example]"
    )
    report = CheckReport(
        "Block(features=2)", Composition(num_layers=2), "float32[3, 2]", 3, (finding,), None
    )
    console = Console(record=True, width=200)
    render_text(report, console)
    text = console.export_text()
    assert "WARNING lift-order-reversed: params[0] moved" in text
    assert "fix: index [layer, example]" in text and "carry float32[3, 2]" in text


def test_residual_width_pitfall_is_a_finding_not_a_traceback(capsys):
    status, out, err = inspect(
        capsys, "--block", "doctor_blocks:Residual", "--features", "4", "--width", "5"
    )
    assert status == 1 and "Traceback" not in out + err
    assert "ERROR width-mismatch:" in out and "x.shape[-1] is 5 but Residual(features=4)" in out
