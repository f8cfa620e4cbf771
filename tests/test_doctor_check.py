"""doctor.check: each pitfall built for real, its finding, severity and message; clean compositions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from composed_lifts import BatchMode, Block, StackOptions
from composed_lifts.doctor import (
    Composition,
    LiftOrder,
    LiftParams,
    Pitfall,
    Severity,
    check,
    compose,
)
from doctor_blocks import NoPair, TwoWidths

SHARED = LiftParams(variable_axis=None, split_rngs=False)
ENSEMBLE = LiftParams(variable_axis=0, split_rngs=True)
NO_SPLIT = LiftParams(variable_axis=0, split_rngs=False)
CONFUSED = LiftParams(variable_axis=None, split_rngs=True)


def only(report):
    assert len(report.findings) == 1, report.findings
    return report.findings[0]


@pytest.mark.parametrize(
    "block, composition",
    [
        (Block(features=4), Composition(num_layers=3)),
        (TwoWidths(features=4, hidden=2), Composition(num_layers=3)),
        (Block(features=4), Composition(num_layers=3, vmap=ENSEMBLE, intent=BatchMode.ENSEMBLE)),
        (Block(features=4), Composition.from_options(StackOptions(3, batch=BatchMode.ENSEMBLE))),
        (Block(features=4), Composition.from_options(StackOptions(3, batch=BatchMode.NONE))),
    ],
)
def test_correct_compositions_have_no_findings(block, composition):
    report = check(block, composition, carry=(2, 4))
    assert report.findings == () and report.ok and report.layout is not None


def test_width_mismatch_is_found_before_tracing():
    report = check(Block(features=4), Composition(num_layers=3), carry=(2, 5))
    f = only(report)
    assert (f.pitfall, f.severity) == (Pitfall.WIDTH_MISMATCH, Severity.ERROR)
    assert "from float32[5] to float32[4]" in f.message
    assert "x.shape[-1] is 5 but Block(features=4)" in f.message
    assert "x.shape[-1] == features" in f.fix
    assert not report.ok and report.layout is None
    # What it saves you from: the composition itself fails inside JAX.
    model = compose(Block, Composition(num_layers=3))(features=4)
    with pytest.raises(Exception, match=r"(?i)carry"):
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((2, 5)), None)


def test_block_that_does_not_return_a_pair():
    f = only(check(NoPair(features=3), Composition(num_layers=2), carry=(2, 3)))
    assert (f.pitfall, f.severity) == (Pitfall.BLOCK_OUTPUT, Severity.ERROR)
    assert "returned a single array" in f.message and "return carry, None" in f.fix


def test_ensemble_by_accident_counts_the_layers():
    report = check(Block(features=4), Composition(num_layers=3, vmap=ENSEMBLE), carry=(2, 4))
    f = only(report)
    assert (f.pitfall, f.severity) == (Pitfall.ENSEMBLE_BY_ACCIDENT, Severity.WARNING)
    per_block = 4 * 4 + 4
    assert report.layout.count == 2 * 3 * per_block == 120
    assert "2 x 3 = 6 independent layers, 120 params (480 bytes)" in f.message
    assert "shared across the batch has 60" in f.message
    assert "variable_axes={'params': None}" in f.fix and "intent=BatchMode.ENSEMBLE" in f.fix
    assert report.ok  # a warning: it runs


def test_ensemble_without_split_makes_identical_copies():
    c = Composition(num_layers=2, vmap=NO_SPLIT)
    report = check(Block(features=2), c, carry=(3, 2))
    f = only(report)
    assert (f.pitfall, f.severity) == (Pitfall.ENSEMBLE_WITHOUT_SPLIT, Severity.WARNING)
    assert "3 x 2 = 6 layers, 36 params, 144 bytes" in f.message
    assert "3 identical copies at init, 24 params (96 bytes) spent on duplicates" in f.message
    assert "split_rngs={'params': True}" in f.fix
    # The claim, checked: every example's copy of the stack is the same at init.
    model = compose(Block, c)(features=2)
    kernel = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.ones((3, 2)), None)
    kernel = np.asarray(kernel["params"]["Dense_0"]["kernel"])
    assert kernel.shape == (3, 2, 2, 2)
    assert all(np.array_equal(kernel[0], kernel[b]) for b in range(3))


def test_confused_split_is_explained_before_jax_fails():
    c = Composition(num_layers=2, vmap=CONFUSED)
    report = check(Block(features=2), c, carry=(4, 2))
    f = only(report)
    assert (f.pitfall, f.severity) == (Pitfall.CONFUSED_SPLIT, Severity.ERROR)
    assert "split_rngs={'params': True} gives every example its own init key" in f.message
    assert "4 different inits have nowhere to go" in f.message
    assert "vmap has mapped output but out_axes is None" in f.message
    assert "split_rngs={'params': False}" in f.fix and "variable_axes={'params': 0}" in f.fix
    assert not report.ok and report.layout is None
    # The failure the finding predicts, as JAX reports it today.
    model = compose(Block, c)(features=2)
    with pytest.raises(ValueError, match=r"vmap has mapped output .* but out_axes is None"):
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.ones((4, 2)), None)


def test_confused_split_on_the_scan():
    c = Composition(num_layers=2, scan=LiftParams(variable_axis=None, split_rngs=True))
    f = only(check(Block(features=2), c, carry=(4, 2)))
    assert (f.pitfall, f.severity) == (Pitfall.CONFUSED_SPLIT, Severity.ERROR)
    assert "2 different inits" in f.message and "data dependency on the scan body" in f.message


def test_shared_when_an_ensemble_was_meant():
    c = Composition(num_layers=2, intent=BatchMode.ENSEMBLE)
    f = only(check(Block(features=2), c, carry=(3, 2)))
    assert (f.pitfall, f.severity) == (Pitfall.SHARED_BY_ACCIDENT, Severity.WARNING)
    assert "you meant an ensemble" in f.message and "variable_axes={'params': 0}" in f.fix


def test_reversed_order_for_the_seed_block_is_the_same_function():
    # The seed calls it "structurally different"; measured, for this block nothing differs.
    c = Composition(num_layers=3, order=LiftOrder.SCAN_OF_VMAP)
    report = check(Block(features=3), c, carry=(3, 3))
    f = only(report)
    assert (f.pitfall, f.severity) == (Pitfall.LIFT_ORDER_REVERSED, Severity.INFO)
    assert "initialise identical params (same tree, shapes and values)" in f.message
    assert "identical outputs on a random input" in f.message
    cmp = report.comparison
    assert cmp.identical and cmp.params_equal and cmp.outputs_max_diff == 0.0
    assert cmp.same_params_max_diff == 0.0 and not cmp.axes_swapped
    assert report.ok


def test_reversed_order_for_an_ensemble_swaps_the_axes():
    c = Composition(
        num_layers=2, order=LiftOrder.SCAN_OF_VMAP, vmap=ENSEMBLE, intent=BatchMode.ENSEMBLE
    )
    report = check(Block(features=2), c, carry=(3, 2))
    f = only(report)
    assert (f.pitfall, f.severity) == (Pitfall.LIFT_ORDER_REVERSED, Severity.WARNING)
    assert "its params are (N, B, ...) (layer axis first)" in f.message
    assert "with the same params both orders compute the same function" in f.message
    assert report.layout.leaf("params/Dense_0/kernel").shape == (2, 3, 2, 2)
    cmp = report.comparison
    assert cmp.axes_swapped and not cmp.identical and cmp.same_params_max_diff == 0.0


def test_report_as_dict_is_plain_data():
    report = check(Block(features=2), Composition(num_layers=2, vmap=ENSEMBLE), carry=(2, 2))
    d = report.as_dict()
    assert d["ok"] is True and d["carry"] == "float32[2, 2]" and d["block"] == "Block(features=2)"
    assert d["findings"][0]["pitfall"] == "ensemble-by-accident"
    assert d["findings"][0]["severity"] == "warning"
    kernel = next(leaf for leaf in d["layout"]["leaves"] if leaf["path"].endswith("kernel"))
    assert kernel["roles"] == ["batch", "layer", "feature", "feature"]
