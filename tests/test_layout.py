"""composed_lifts.layout: the stack layout as one value, and the only functions that read or change it.

Every conversion is checked against a plain NumPy loop over layers (``np.take``) and round
trips exactly (structure first, then bits); the consumers (key maps, sharding, checkpoint
records, the doctor) are checked to agree with ``find_stacks`` on the same trees.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from blocks import ResidualMLPLinen
from composed_lifts import (
    BatchMode,
    Block,
    ShardingRules,
    StackOptions,
    errors,
    linen_stack,
    logical_specs,
    to_state_dict,
    torch_linear_keymap,
)
from composed_lifts.checkpoint import Stack as CheckpointStack
from composed_lifts.doctor import Composition, LiftOrder, LiftParams, describe
from composed_lifts.layout import (
    Form,
    Stack,
    as_stacks,
    find_stack,
    find_stacks,
    layer_index,
    layer_name,
    move_layer_axis,
    stack_params,
    to_form,
    unrolled_count,
    unstack_params,
)
from test_keymap import B, N, assert_identical, model_tree


def test_one_value_everywhere():
    assert CheckpointStack is Stack


def test_layer_names_parse_back_and_nothing_else_parses():
    for i in (0, 1, 10, 123):
        assert layer_index(layer_name(i)) == i
    assert layer_name("{i}") == "layers_{i}"
    for name in ("layers_", "layers_01", "layers_-1", "layers_1x", "layer_1", "Dense_0", 3):
        assert layer_index(name) is None
    assert unrolled_count({layer_name(i): {} for i in range(4)}) == 4
    assert unrolled_count({"layers_0": {}, "layers_2": {}}) is None  # a gap
    assert unrolled_count({"layers_0": {}, "embed": {}}) is None
    assert unrolled_count({}) is None and unrolled_count(np.zeros(3)) is None


def test_membership_is_by_whole_path_segments():
    s = Stack("params/stack")
    assert s.contains("params/stack") and s.contains("params/stack/Dense_0/kernel")
    assert not s.contains("params/stacks/w") and not s.contains("params")
    assert Stack().contains("anything/at/all")
    assert s.layer_path(3) == "params/stack/layers_3" and Stack().layer_path(0) == "layers_0"
    assert s.layer_key(2) == "params.stack.2." and Stack().layer_key("{i}") == "{i}."


def test_the_value_refuses_bad_fields():
    with pytest.raises(errors.ArgumentTypeError, match="Stack.ensemble_size"):
        Stack("p", 1, True)  # the ensemble's size, not a flag
    with pytest.raises(errors.ArgumentRangeError, match="Stack.layer_axis"):
        Stack("p", layer_axis=-1)
    with pytest.raises(errors.ArgumentTypeError, match="Stack.form"):
        Stack("p", form="stacked")
    with pytest.raises(errors.ArgumentTypeError, match="Stack.path"):
        Stack(("p",))
    with pytest.raises(errors.ArgumentTypeError, match="stacks"):
        as_stacks([1])
    assert as_stacks(None) == (Stack(),) and as_stacks("a") == (Stack("a"),)


@pytest.mark.parametrize("mode", [BatchMode.SHARED, BatchMode.ENSEMBLE])
def test_find_reads_form_layers_and_members(mode):
    tree = model_tree(ResidualMLPLinen, mode, np.float32)
    ensemble = mode is BatchMode.ENSEMBLE
    said = Stack(
        "params/stack", layer_axis=1 if ensemble else 0, ensemble_size=B if ensemble else None
    )
    (found,) = find_stacks(tree, [said])
    assert (found.num_layers, found.form, found.ensemble_size) == (
        N,
        Form.STACKED,
        B if ensemble else None,
    )
    unrolled = to_form(tree, found, found.replace(form=Form.UNROLLED))
    again = find_stack(unrolled, said)
    assert again == found.replace(form=Form.UNROLLED)
    with pytest.raises(errors.StackLayoutError, match="num_layers=3 in the tree, not 5"):
        find_stack(tree, said.replace(num_layers=5))
    with pytest.raises(errors.StackLayoutError, match="no key 'nowhere'"):
        find_stack(tree, Stack("params/nowhere"))
    bad = {"s": {"a": np.zeros((3, 2)), "b": np.zeros((4, 2))}}
    with pytest.raises(errors.StackLayoutError, match="disagree on the number of layers"):
        find_stack(bad, Stack("s"))


@pytest.mark.parametrize("mode", [BatchMode.SHARED, BatchMode.ENSEMBLE])
def test_to_form_against_a_loop_over_layers_and_back_exactly(mode):
    tree = model_tree(ResidualMLPLinen, mode, np.float32)
    axis = 1 if mode is BatchMode.ENSEMBLE else 0
    found = find_stack(tree, Stack("params/stack", layer_axis=axis))
    unrolled = to_form(tree, found, found.replace(form=Form.UNROLLED))
    assert unrolled["params"]["head"] is tree["params"]["head"]  # outside: untouched
    stacked = tree["params"]["stack"]
    for i in range(N):  # the reference: a plain loop of np.take
        want = jax.tree_util.tree_map(lambda a, i=i: np.take(a, i, axis=axis), stacked)
        assert_identical(unrolled["params"]["stack"][layer_name(i)], want)
    # back, and to another layer axis: moveaxis of the original, exactly
    said = Stack(found.path, layer_axis=axis)
    back = to_form(unrolled, find_stack(unrolled, said), found)
    assert_identical(back, tree)
    moved = to_form(unrolled, find_stack(unrolled, said), found.replace(layer_axis=axis + 1))
    want = move_layer_axis(tree, axis, axis + 1, stacks=[found])
    assert_identical(moved, want)
    assert_identical(to_form(moved, found.replace(layer_axis=axis + 1), found), tree)


def test_array_kind_is_kept():
    np_layers = unstack_params({"w": np.arange(6.0).reshape(3, 2)})
    assert isinstance(stack_params(np_layers)["w"], np.ndarray)
    jax_layers = unstack_params({"w": jnp.arange(6.0).reshape(3, 2)})
    assert isinstance(stack_params(jax_layers)["w"], jax.Array)


def test_key_maps_name_the_same_keys_for_both_forms():
    tree = model_tree(ResidualMLPLinen, BatchMode.SHARED, np.float32)
    found = find_stack(tree, Stack("params/stack"))
    unrolled = to_form(tree, found, found.replace(form=Form.UNROLLED))
    keymap = torch_linear_keymap([found])
    a, b = to_state_dict(tree, keymap), to_state_dict(unrolled, keymap)
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
    assert f"params.stack.{N - 1}.Dense_0.weight" in a
    assert torch_linear_keymap(("params/stack",)) == keymap  # paths still work


def test_sharding_takes_stack_values_or_paths():
    model = linen_stack(Block, StackOptions(num_layers=2))(features=4)
    abstract = {
        "params": {
            "stack": jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.ones((2, 4)))["params"],
            "head": jax.ShapeDtypeStruct((4,), jnp.float32),
        }
    }
    rules = ShardingRules()
    by_value = logical_specs(abstract, rules, stacks=[Stack("params/stack")])
    by_path = logical_specs(abstract, rules, stacks=("stack",))  # without the collection
    assert by_value == by_path
    assert by_value["params"]["stack"]["Dense_0"]["kernel"] == jax.sharding.PartitionSpec(
        "layers", None, None
    )
    assert by_value["params"]["head"] == jax.sharding.PartitionSpec(None)


@pytest.mark.parametrize(
    "composition, expect",
    [
        (Composition(num_layers=3), Stack("params", 0, None, 3, Form.STACKED)),
        (
            Composition(num_layers=3, vmap=LiftParams(variable_axis=0, split_rngs=True)),
            Stack("params", 1, 4, 3, Form.STACKED),
        ),
        (Composition(3, order=LiftOrder.SCAN_OF_VMAP), Stack("params", 0, None, 3, Form.STACKED)),
        (Composition(3, scan=LiftParams(variable_axis=None, split_rngs=False)), None),
    ],
)
def test_doctor_reports_the_stack_find_stacks_reads(composition, expect):
    layout = describe(Block(features=2), composition, carry=(4, 2))
    assert layout.stack() == expect
    if expect is not None:  # the params Flax makes, measured by find_stack, agree
        model = composition.lifts().build(Block)(features=2)
        variables = model.init(jax.random.PRNGKey(0), jnp.ones((4, 2)), None)
        said = Stack("params", expect.layer_axis, expect.ensemble_size)
        assert find_stack(variables, said) == expect
