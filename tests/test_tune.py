"""tune_stack and `composed-lifts tune`: every candidate measured, the recommendation fits the budget.

No timing is asserted (that is the benchmarks' job): only the structure of the report and
that the memory budget is honoured, using XLA's exact scratch accounting.
"""

import json
import os
import subprocess
import sys

import jax.numpy as jnp
import pytest

from composed_lifts import Block, Remat, StackOptions, errors, tune_stack

CARRY = jnp.ones((2, 4))
OPTS = StackOptions(num_layers=3)


def small_tune(**kw):
    return tune_stack(
        Block,
        {"features": 4},
        CARRY,
        OPTS,
        unrolls=(1, 3),
        remats=(Remat.NONE, Remat.FULL),
        dots=("default",),
        rounds=1,
        min_sample_s=0.001,
        **kw,
    )


@pytest.fixture(scope="module")
def report():
    return small_tune()


def test_every_candidate_is_measured_and_the_best_is_fastest(report):
    assert len(report.results) == 4
    for r in report.results:
        assert r.step_s > 0 and r.compile_s > 0 and r.temp_bytes >= 0 and r.fits
        assert r.options.num_layers == 3
    assert report.best is min(report.results, key=lambda r: r.step_s)
    assert report.baseline.options.unroll == 1 and report.baseline.options.remat is Remat.NONE


def test_memory_budget_is_honoured(report):
    smallest = min(r.temp_bytes for r in report.results)
    tight = small_tune(memory_budget_bytes=smallest)
    assert not all(r.fits for r in tight.results), "the budget should exclude a candidate"
    assert all(r.fits == (r.temp_bytes <= smallest) for r in tight.results)
    assert tight.best is not None and tight.best.temp_bytes <= smallest
    assert tight.best is min((r for r in tight.results if r.fits), key=lambda r: r.step_s)
    assert small_tune(memory_budget_bytes=0).best is None or smallest == 0


def test_bad_arguments():
    with pytest.raises(errors.ArgumentRangeError, match="unroll factor"):
        tune_stack(Block, {"features": 4}, CARRY, OPTS, unrolls=())
    with pytest.raises(errors.ArgumentTypeError, match="Remat"):
        tune_stack(Block, {"features": 4}, CARRY, OPTS, remats=("full",))
    with pytest.raises(errors.ArgumentRangeError, match="dots"):
        tune_stack(Block, {"features": 4}, CARRY, OPTS, dots=("mkl",))


def tune_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "composed_lifts", "tune", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "COMPOSED_LIFTS_CACHE": "off"},
    )


SMALL = ["--layers", "2", "--features", "4", "--batch", "2", "--rounds", "1", "--format", "json"]


def test_cli_tune_json():
    r = tune_cli("--unrolls", "1,2", *SMALL)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["best"] is not None and len(out["results"]) >= 2
    assert {"unroll", "remat", "dots", "step_s", "temp_bytes"} <= set(out["results"][0])


def test_cli_tune_takes_a_users_block(tmp_path):
    (tmp_path / "myblocks.py").write_text(
        "import flax.linen as nn\n"
        "class Wide(nn.Module):\n"
        "    features: int\n"
        "    hidden: int = 3\n"
        "    @nn.compact\n"
        "    def __call__(self, x, _):\n"
        "        return x + nn.Dense(self.features)(nn.relu(nn.Dense(self.hidden)(x))), None\n"
    )
    block = ["--block", "myblocks:Wide"]
    only = ["--unrolls", "1", "--remats", "none", "--dots", "default"]
    r = tune_cli(*block, "--field", "hidden=5", *only, *SMALL, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["best"]["unroll"] == 1
    bad = tune_cli(*block, "--field", "nope=1", cwd=tmp_path)
    assert bad.returncode == 2 and "has no such field" in bad.stderr
