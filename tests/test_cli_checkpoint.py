"""`composed-lifts convert` and `composed-lifts show`, in process."""

import numpy as np
import pytest

from composed_lifts import stack_params, unstack_params
from composed_lifts.checkpoint import Form, KeyMapName, Stack, load, read_layout, save
from composed_lifts.cli import main
from test_keymap import assert_identical

N = 4


@pytest.fixture(autouse=True)
def no_compilation_cache(monkeypatch):
    monkeypatch.setenv("COMPOSED_LIFTS_CACHE", "off")  # main() would turn JAX's cache on here


@pytest.fixture
def scanned(tmp_path):
    rng = np.random.default_rng(0)
    params = {
        "embed": rng.standard_normal((9, 3)).astype(np.float32),
        "stack": {
            "Dense_0": {
                "kernel": rng.standard_normal((N, 3, 3)).astype(np.float32),
                "bias": rng.standard_normal((N, 3)).astype(np.float32),
            }
        },
    }
    path = tmp_path / "scanned.safetensors"
    save(path, params, stacks=[Stack("stack")])
    return path, params


def test_convert_between_layouts_and_verify(tmp_path, scanned, capsys):
    path, params = scanned
    unrolled = {"embed": params["embed"], "stack": unstack_params(params["stack"])}
    out = tmp_path / "unrolled.safetensors"
    assert main(["convert", str(path), str(out), "--to", "unrolled", "--verify"]) == 0
    text = capsys.readouterr().out
    assert "1 stack(s), unrolled, native keys" in text and "largest difference 0" in text
    assert read_layout(out).stacks[0].form is Form.UNROLLED
    assert_identical(load(out), unrolled)

    axis1 = tmp_path / "axis1.safetensors"
    assert (
        main(["convert", str(out), str(axis1), "--to", "scanned", "--layer-axis", "1", "--verify"])
        == 0
    )
    assert "stacked, layer axis 1" in capsys.readouterr().out
    assert load(axis1)["stack"]["Dense_0"]["kernel"].shape == (3, N, 3)
    assert_identical(load(axis1, like=params), params)

    torch = tmp_path / "torch.safetensors"
    assert main(["convert", str(path), str(torch), "--to", "unrolled", "--key-map", "torch"]) == 0
    assert read_layout(torch).keymap is KeyMapName.TORCH
    assert_identical(
        load(torch)["stack.2.Dense_0.weight"], params["stack"]["Dense_0"]["kernel"][2].T.copy()
    )

    orbax = tmp_path / "orbax"
    assert main(["convert", str(out), str(orbax), "--to", "scanned", "--verify"]) == 0
    assert "largest difference 0" in capsys.readouterr().out
    assert_identical(load(orbax, like=params), params)
    assert_identical(stack_params(load(orbax, like=unrolled)["stack"]), params["stack"])


def test_show_prints_tensors_layout_and_size(scanned, capsys):
    path, _ = scanned
    assert main(["show", str(path)]) == 0
    text = capsys.readouterr().out
    assert "safetensors file, 3 tensors" in text
    assert "stack stack: 4 layers, stacked, layer axis 0, shared, float32" in text
    assert "stack.Dense_0.kernel" in text and "(4, 3, 3)" in text
    total = (9 * 3 + N * 9 + N * 3) * 4
    assert f"total: {total:,} bytes" in text


@pytest.mark.parametrize(
    "args,message",
    [
        (["convert", "{tmp}/none.safetensors", "{tmp}/o.safetensors"], "does not exist"),
        (
            ["convert", "{path}", "{tmp}/no/o.safetensors"],
            "OUT '{tmp}/no/o.safetensors' is in folder '{tmp}/no', which does not exist",
        ),
        (
            ["convert", "{path}", "{tmp}/o.safetensors", "--to", "scanned", "--key-map", "torch"],
            "--key-map torch) names one tensor per layer, so the layers cannot be saved stacked; "
            "pass form=Form.UNROLLED (on the command line, --to unrolled)",
        ),
        (["convert", "{path}", "{path}"], "OUT '{path}' is the file being read (IN)"),
        (["show", "README.md"], "is not a safetensors file"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, scanned, capsys, args, message):
    path, _ = scanned
    fill = {"tmp": str(tmp_path), "path": str(path)}
    assert main([a.format(**fill) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.format(**fill) in err
    assert_identical(load(path), scanned[1])  # the input is untouched
