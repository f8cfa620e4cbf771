"""doctor._spec: the typed composition, its Flax keyword arguments, and compose() against the seed."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from composed_lifts import BatchMode, Block, StackOptions, seed_model
from composed_lifts.doctor import Composition, LiftOrder, LiftParams, Spelling, compose
from composed_lifts.errors import ArgumentRangeError, ArgumentTypeError


def test_default_is_the_seed_recipe():
    c = Composition(num_layers=4)
    assert c.order is LiftOrder.VMAP_OF_SCAN and c.intent is BatchMode.SHARED
    assert c.scan == LiftParams(variable_axis=0, split_rngs=True)
    assert c.vmap == LiftParams(variable_axis=None, split_rngs=False)
    lifts = c.lifts()
    assert lifts.scan["variable_axes"]["params"] == 0 and lifts.scan["length"] == 4
    assert lifts.scan["split_rngs"]["params"] is True
    assert lifts.vmap["variable_axes"]["params"] is None
    assert lifts.vmap["split_rngs"]["params"] is False
    assert c.recipe("Block") == (  # the seed's recipe as written: params entries only
        'nn.vmap(nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True}, '
        'length=4, in_axes=0, out_axes=0), variable_axes={"params": None}, split_rngs={"params": '
        'False}, in_axes=(0, None), out_axes=0, axis_name="batch")'
    )
    complete = dataclasses.replace(c, spelling=Spelling.COMPLETE)
    assert complete.recipe("Block").startswith(
        'nn.vmap(nn.scan(Block, variable_axes={"params": 0, True: 0}, split_rngs={"params": True, '
        "True: True}, length=4, in_axes=0, out_axes=0, metadata_params={nn.PARTITION_NAME: "
        '"layers"}), variable_axes={"params": None, "batch_stats": None, True: 0}, '
        'split_rngs={"params": False, True: True}'
    )
    reversed_ = c.with_order(LiftOrder.SCAN_OF_VMAP).recipe("Block")
    assert reversed_.startswith("nn.scan(nn.vmap(Block, ")


@pytest.mark.parametrize(
    "options",
    [
        StackOptions(num_layers=3),
        StackOptions(num_layers=3, batch=BatchMode.ENSEMBLE, layer_axis_name=None),
        StackOptions(num_layers=3, batch=BatchMode.NONE),
        StackOptions(num_layers=3, collection_axes={"batch_stats": 0}, batch_axis_name="b"),
    ],
)
def test_from_options_derives_the_same_lifts_as_linen_stack(options):
    from composed_lifts._lifts import stack_lifts

    assert Composition.from_options(options).lifts() == stack_lifts(options)


def test_compose_is_bitwise_the_seed_model():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3)), jnp.float32)
    key = jax.random.PRNGKey(5)
    ours = compose(Block, Composition(num_layers=2))(features=3)

    @jax.jit
    def both(key, x):
        return ours.init(key, x, None), seed_model(2, 3).init(key, x, None)

    mine, seeds = both(key, x)
    assert jax.tree_util.tree_structure(mine) == jax.tree_util.tree_structure(seeds)
    for a, b in zip(jax.tree_util.tree_leaves(mine), jax.tree_util.tree_leaves(seeds)):
        assert a.shape == b.shape and np.array_equal(a, b)


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"variable_axis": 1, "split_rngs": True}, ArgumentRangeError, ["0 or None", "got 1"]),
        ({"variable_axis": True, "split_rngs": True}, ArgumentTypeError, ["0 or None", "True"]),
        ({"variable_axis": "0", "split_rngs": True}, ArgumentTypeError, ["0 or None", "'0'"]),
        ({"variable_axis": 0, "split_rngs": "yes"}, ArgumentTypeError, ["True or False", "'yes'"]),
    ],
)
def test_lift_params_refuse_bad_values(kwargs, error, words):
    with pytest.raises(error) as info:
        LiftParams(**kwargs)
    for word in words:
        assert word in str(info.value)


def test_composition_refuses_bad_values():
    with pytest.raises(ArgumentRangeError, match=r"num_layers must be >= 1, got 0"):
        Composition(num_layers=0)
    with pytest.raises(ArgumentTypeError, match=r"Composition.order must be a LiftOrder.*'vmap'"):
        Composition(num_layers=2, order="vmap")
    with pytest.raises(ArgumentTypeError, match=r"Composition.vmap must be a LiftParams.*e.g."):
        Composition(num_layers=2, vmap={"params": None})
    with pytest.raises(ArgumentTypeError, match=r"options must be a StackOptions, got 4"):
        Composition.from_options(4)
    with pytest.raises(ArgumentTypeError, match=r"Linen module class.*got <function"):
        compose(lambda x: x, Composition(num_layers=2))
    assert issubclass(compose(Block, Composition(num_layers=2)), nn.Module)


def test_describe_and_check_take_stack_options():
    from composed_lifts.doctor import check, describe

    options = StackOptions(num_layers=2, batch=BatchMode.ENSEMBLE)
    report = check(Block(features=2), options, carry=(3, 2))
    assert report.findings == () and report.composition.intent is BatchMode.ENSEMBLE
    kernel = describe(Block(features=2), options, carry=(3, 2)).leaf("params/Dense_0/kernel")
    assert kernel.shape == (3, 2, 2, 2)
    with pytest.raises(ArgumentTypeError, match=r"block\(carry, None\).*layer_index=True"):
        Composition.from_options(StackOptions(num_layers=2, layer_index=True))
