"""Pattern stacks' params <-> unrolled layers named by true index: exact round trips (structure
compared first, then ==), checked against the documented layout read by index arithmetic."""

import jax
import numpy as np
import pytest

import pattern_blocks as pb
from composed_lifts import LayerPattern, stack_pattern_params, unstack_pattern_params
from composed_lifts.errors import LayoutMismatchError


def tree_for(pattern, lead=(), seed=0):
    """Random params in the documented layout: kinds differ in structure by position."""
    rng = np.random.default_rng(seed)
    parts = {}
    for part, length in (
        ("repeats", pattern.repeats),
        ("remainder", 1 if pattern.remainder else 0),
    ):
        if not length:
            continue
        count = pattern.size if part == "repeats" else pattern.remainder
        parts[part] = {
            f"kind_{j}": {
                "w": rng.standard_normal(lead + (length, j + 1, 2)).astype(np.float32),
                **({"b": rng.integers(0, 9, lead + (length, 3)).astype(np.int32)} if j % 2 else {}),
            }
            for j in range(count)
        }
    return parts


def assert_equal_trees(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        assert np.asarray(x).shape == np.asarray(y).shape
        assert (np.asarray(x) == np.asarray(y)).all()


@pytest.mark.parametrize(
    "period,num_layers",
    [(("s",) * 5 + ("f",), 26), (("s",) * 5 + ("f",), 24), (("s", "f"), 1), (("a", "b", "c"), 0)],
)
@pytest.mark.parametrize("ensemble", [False, True])
def test_round_trip_is_exact(period, num_layers, ensemble):
    pattern = LayerPattern(period, num_layers)
    lead, axis = ((3,), 1) if ensemble else ((), 0)
    tree = tree_for(pattern, lead)
    layers = unstack_pattern_params(tree, pattern, axis=axis)
    assert list(layers) == [f"layers_{i}" for i in range(num_layers)]
    for i in range(num_layers):  # the true layer i, read independently
        assert_equal_trees(
            layers[f"layers_{i}"], pb.layer_of(tree, len(period), num_layers, i, axis)
        )
    assert_equal_trees(stack_pattern_params(layers, pattern, axis=axis), tree)


def test_layers_of_the_wrong_pattern_are_refused():
    pattern = LayerPattern(("s", "f"), 5)
    tree = tree_for(pattern)
    with pytest.raises(
        LayoutMismatchError, match=r"the keys of tree\['repeats'\] differ .*missing \['kind_2'\]"
    ):
        unstack_pattern_params(tree, LayerPattern(("s", "f", "g"), 5))
    with pytest.raises(LayoutMismatchError, match=r"repeats/kind_0\['w'\] is of shape \(2, 1, 2\)"):
        unstack_pattern_params(tree, LayerPattern(("s", "f"), 7))
    with pytest.raises(
        LayoutMismatchError, match=r"the keys of tree differ .*unexpected \['remainder'\]"
    ):
        unstack_pattern_params(tree, LayerPattern(("s", "f"), 4))
    layers = unstack_pattern_params(tree, pattern)
    with pytest.raises(LayoutMismatchError, match=r"layers_0 \.\.\. layers_5"):
        stack_pattern_params(layers, LayerPattern(("s", "f"), 6))
    layers["layers_2"] = {"w": np.zeros((1, 3), np.float32)}  # another shape for kind_0
    with pytest.raises(LayoutMismatchError, match=r"layers_2\['w'\] is float32\(1, 3\).*same kind"):
        stack_pattern_params(layers, pattern)
