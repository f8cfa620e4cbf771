"""Layer-axis position and shared <-> ensemble: exact round trips on stacks nested in a model."""

import jax
import ml_dtypes
import numpy as np
import pytest

from blocks import ResidualMLPLinen, SeedLinen
from composed_lifts import (
    BatchMode,
    ensemble_to_shared,
    errors,
    layer_axis_from,
    layer_axis_to,
    shared_to_ensemble,
)
from test_keymap import DTYPES, B, N, assert_identical, model_tree

STACK = ("params/stack",)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("mode", [BatchMode.SHARED, BatchMode.ENSEMBLE])
@pytest.mark.parametrize("block", [SeedLinen, ResidualMLPLinen], ids=lambda b: b.__name__)
def test_layer_axis_round_trip(block, mode, dtype):
    tree = model_tree(block, mode, dtype)
    start = 1 if mode is BatchMode.ENSEMBLE else 0
    for k in (0, 2) if mode is BatchMode.ENSEMBLE else (1,):
        moved = layer_axis_to(layer_axis_from(tree, start, stacks=STACK), k, stacks=STACK)
        kernel = moved["params"]["stack"]["Dense_0"]["kernel"]
        assert kernel.shape[k] == N
        # reference: layer i at position k is layer i of the original
        original = np.take(tree["params"]["stack"]["Dense_0"]["kernel"], 1, axis=start)
        assert np.array_equal(np.take(kernel, 1, axis=k), original)
        assert (
            moved["params"]["head"]["kernel"] is tree["params"]["head"]["kernel"]
        )  # outside the stack: untouched
        back = layer_axis_to(layer_axis_from(moved, k, stacks=STACK), start, stacks=STACK)
        assert_identical(back, tree)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_shared_ensemble_round_trip(dtype):
    tree = model_tree(ResidualMLPLinen, BatchMode.SHARED, dtype)
    ensemble = shared_to_ensemble(tree, B, stacks=STACK)
    kernel = ensemble["params"]["stack"]["Dense_1"]["kernel"]
    assert kernel.shape == (B,) + tree["params"]["stack"]["Dense_1"]["kernel"].shape
    for b in range(B):
        assert np.array_equal(kernel[b], tree["params"]["stack"]["Dense_1"]["kernel"])
    assert_identical(ensemble_to_shared(ensemble, stacks=STACK), tree)


def test_collapse_refuses_members_that_differ():
    tree = model_tree(SeedLinen, BatchMode.ENSEMBLE, np.float32)  # members initialised apart
    with pytest.raises(
        errors.MembersDifferError, match="member 1 differs .* 'params/stack/Dense_0/kernel'"
    ):
        ensemble_to_shared(tree, stacks=STACK)
    same = shared_to_ensemble(
        model_tree(SeedLinen, BatchMode.SHARED, ml_dtypes.bfloat16), 3, stacks=STACK
    )
    kernel = np.array(same["params"]["stack"]["Dense_0"]["kernel"])
    kernel[2, 1, 0, 0] = ml_dtypes.bfloat16(7.0)
    same["params"]["stack"]["Dense_0"]["kernel"] = kernel
    with pytest.raises(
        errors.MembersDifferError, match="member 2 .* 'params/stack/Dense_0/kernel'"
    ):
        ensemble_to_shared(same, stacks=STACK)
    with pytest.raises(
        errors.StackLayoutError, match="stacks=\\('params/nothing',\\) holds no arrays"
    ):
        layer_axis_to(tree, 1, stacks=("params/nothing",))
    with pytest.raises(errors.StackLayoutError, match="has no layer axis 5"):
        layer_axis_to(tree, 5, stacks=STACK)


def test_jax_arrays_convert_too():
    tree = jax.tree_util.tree_map(
        jax.numpy.asarray, model_tree(SeedLinen, BatchMode.SHARED, np.float32)
    )
    assert_identical(layer_axis_from(layer_axis_to(tree, 1, stacks=STACK), 1, stacks=STACK), tree)
