"""doctor.describe and doctor.axis_roles: shapes without running, axis roles found by probing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from composed_lifts import BatchMode, Block, StackOptions
from composed_lifts.doctor import (
    AxisRole,
    Composition,
    LiftOrder,
    LiftParams,
    axis_roles,
    describe,
)
from composed_lifts.errors import (
    ArgumentTypeError,
    BatchSizeError,
    CarryChangedError,
    ConfusedSplitError,
    LayoutProbeError,
    MissingBatchAxisError,
)
from doctor_blocks import Gated, Halves, PairCarry, TwoWidths

L, B, F = AxisRole.LAYER, AxisRole.BATCH, AxisRole.FEATURE
ENSEMBLE = LiftParams(variable_axis=0, split_rngs=True)


def roles(report):
    return {leaf.path: (leaf.shape, leaf.roles) for leaf in report.leaves}


def test_seed_roles_when_n_b_and_f_are_equal():
    # N == B == F == 3: sizes cannot tell the axes apart, the probe can.
    report = describe(Block(features=3), Composition(num_layers=3), carry=(3, 3))
    assert roles(report) == {
        "params/Dense_0/bias": ((3, 3), (L, F)),
        "params/Dense_0/kernel": ((3, 3, 3), (L, F, F)),
    }
    assert (report.count, report.nbytes, report.batch) == (36, 144, 3)
    assert (report.unrolled.blocks, report.unrolled.per_block_count, report.unrolled.count) == (
        3,
        12,
        36,
    )
    assert report.unrolled.nbytes == report.nbytes


@pytest.mark.parametrize(
    "order, lead", [(LiftOrder.VMAP_OF_SCAN, (B, L)), (LiftOrder.SCAN_OF_VMAP, (L, B))]
)
def test_ensemble_roles_in_both_orders_when_n_equals_b(order, lead):
    c = Composition(num_layers=3, order=order, vmap=ENSEMBLE, intent=BatchMode.ENSEMBLE)
    report = describe(Block(features=3), c, carry=(3, 3))
    assert roles(report)["params/Dense_0/kernel"] == ((3, 3, 3, 3), lead + (F, F))
    assert report.unrolled.blocks == 9 and report.count == report.unrolled.count == 9 * 12


def test_two_dense_layers_of_different_widths():
    report = describe(TwoWidths(features=4, hidden=6), Composition(num_layers=2), carry=(2, 4))
    assert roles(report) == {
        "params/down/bias": ((2, 4), (L, F)),
        "params/down/kernel": ((2, 6, 4), (L, F, F)),
        "params/up/bias": ((2, 6), (L, F)),
        "params/up/kernel": ((2, 4, 6), (L, F, F)),
    }
    per_block = 4 * 6 + 6 + 6 * 4 + 4
    assert report.unrolled.per_block_count == per_block and report.count == 2 * per_block


def test_scalar_and_rank3_params_and_a_pytree_carry():
    report = describe(Gated(features=2), Composition(num_layers=3), carry=(2, 2))
    assert roles(report) == {
        "params/mix": ((3, 2, 2, 2), (L, F, F, F)),
        "params/scale": ((3,), (L,)),
    }
    carry = {
        "h": jax.ShapeDtypeStruct((4, 2), jnp.float32),
        "step": jax.ShapeDtypeStruct((4,), jnp.int32),
    }
    report = describe(PairCarry(features=2), Composition(num_layers=4, vmap=ENSEMBLE), carry)
    assert roles(report)["params/Dense_0/kernel"] == ((4, 4, 2, 2), (B, L, F, F))


def test_params_shared_across_layers_and_scan_only():
    shared = Composition(num_layers=3, scan=LiftParams(variable_axis=None, split_rngs=False))
    report = describe(Block(features=2), shared, carry=(3, 2))
    assert roles(report)["params/Dense_0/kernel"] == ((2, 2), (F, F))
    assert report.unrolled.blocks == 1
    scan_only = Composition.from_options(StackOptions(num_layers=2, batch=BatchMode.NONE))
    report = describe(Block(features=2), scan_only, carry=np.zeros((5, 2), np.float32))
    assert roles(report)["params/Dense_0/kernel"] == ((2, 2, 2), (L, F, F))


def test_describe_refuses_what_would_fail_in_jax():
    confused = Composition(num_layers=2, vmap=LiftParams(variable_axis=None, split_rngs=True))
    with pytest.raises(ConfusedSplitError) as info:
        describe(Block(features=2), confused, carry=(4, 2))
    message = str(info.value)
    assert (
        "4 different inits" in message and "vmap has mapped output but out_axes is None" in message
    )
    assert "split_rngs={'params': False}" in message  # the fix
    with pytest.raises(CarryChangedError, match=r"from float32\[5\] to float32\[4\]"):
        describe(Block(features=4), Composition(num_layers=2), carry=(2, 5))
    with pytest.raises(CarryChangedError, match=r"from float32\[4\] to float32\[2\]"):
        describe(Halves(features=4), Composition(num_layers=2), carry=(2, 4))


def test_bad_arguments():
    with pytest.raises(MissingBatchAxisError, match=r"carry is a scalar.*leading batch axis"):
        describe(Block(features=2), Composition(num_layers=2), carry=jnp.zeros(()))
    ragged = {"a": jnp.zeros((2, 2)), "b": jnp.zeros((3, 2))}
    with pytest.raises(BatchSizeError, match=r"carry\['a'\] has 2, carry\['b'\] has 3"):
        describe(Block(features=2), Composition(num_layers=2), carry=ragged)
    with pytest.raises(
        ArgumentTypeError, match=r"carry leaves must be arrays.*got float 1.0.*carry=\(4, 8\)"
    ):
        describe(Block(features=2), Composition(num_layers=2), carry=[[1.0, 2.0]])
    with pytest.raises(
        ArgumentTypeError, match=r"the class Block, which needs field values.*Block\(features=8\)"
    ):
        describe(Block, Composition(num_layers=2), carry=(2, 2))
    with pytest.raises(
        ArgumentTypeError, match=r"composition must be a Composition or a StackOptions, got 3"
    ):
        describe(Block(features=2), 3, carry=(2, 2))


def test_axis_roles_is_pure_and_strict():
    base = {"k": np.zeros((2, 4, 7)), "s": np.zeros(())}
    more_n = {"k": np.zeros((3, 4, 7)), "s": np.zeros(())}
    more_b = {"k": np.zeros((2, 6, 7)), "s": np.zeros(())}
    assert axis_roles(base, more_n, more_b) == [("k", (L, B, F)), ("s", ())]
    mixed = {"k": np.zeros((3, 6, 7)), "s": np.zeros(())}
    assert axis_roles(base, mixed, mixed)[0] == ("k", (AxisRole.MIXED, AxisRole.MIXED, F))
    with pytest.raises(LayoutProbeError, match=r"changes structure.*N \+ 1 layers"):
        axis_roles(base, {"k": base["k"]}, more_b)
    with pytest.raises(LayoutProbeError, match=r"param k has shape \(2, 4, 7\).*rank changes"):
        axis_roles(base, more_n, {"k": np.zeros((2, 4)), "s": np.zeros(())})
