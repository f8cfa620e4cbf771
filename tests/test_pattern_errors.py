"""Bad input to the pattern stacks: each refused by our code, naming the argument and the fix."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest
from flax import nnx

import pattern_blocks as pb
from composed_lifts import LayerPattern, StackOptions, linen_pattern_stack, nnx_pattern_stack
from composed_lifts.errors import (
    AperiodicLayersError,
    ArgumentRangeError,
    ArgumentTypeError,
    KindOutputsError,
    LayerInputsError,
    PatternKindsError,
)

PATTERN = LayerPattern(("local", "local", "global"), 4)
BLOCKS = {"local": pb.Local(), "global": pb.Global()}


def test_layer_pattern_arguments():
    with pytest.raises(AperiodicLayersError, match=r"layer_types\[2\] is 'b' but a period of 2"):
        LayerPattern.from_layer_types(["a", "b", "b", "b"], period=2)
    with pytest.raises(ArgumentRangeError, match="period must be at most len"):
        LayerPattern.from_layer_types(["a", "a"], period=6)
    with pytest.raises(ArgumentRangeError, match="layer_types must be at least one layer"):
        LayerPattern.from_layer_types([])
    with pytest.raises(ArgumentTypeError, match=r"layer_types\[1\] must be a non-empty"):
        LayerPattern.from_layer_types(["a", None])
    with pytest.raises(ArgumentTypeError, match="LayerPattern.period must be a non-empty tuple"):
        LayerPattern("sliding", 3)
    with pytest.raises(ArgumentTypeError, match="LayerPattern.period"):
        LayerPattern((), 3)
    with pytest.raises(ArgumentRangeError, match="LayerPattern.num_layers must be >= 0"):
        LayerPattern(("a",), -1)
    with pytest.raises(ArgumentRangeError, match="index must be < num_layers = 4"):
        PATTERN.where(4)


def test_blocks_must_match_the_kinds():
    options = StackOptions(num_layers=4)
    with pytest.raises(PatternKindsError, match=r"has no block for the kinds \['global'\]"):
        linen_pattern_stack({"local": pb.Local()}, PATTERN, options)
    with pytest.raises(PatternKindsError, match=r"has blocks for \['full'\], which the pattern"):
        linen_pattern_stack({**BLOCKS, "full": pb.Global()}, PATTERN, options)
    with pytest.raises(PatternKindsError, match="make_blocks has no block"):
        nnx_pattern_stack({"local": pb.LocalNNX}, PATTERN, options, rngs=nnx.Rngs(0))
    with pytest.raises(ArgumentTypeError, match=r"blocks\['local'\] must be a Linen module"):
        linen_pattern_stack({"local": pb.LocalNNX, "global": pb.Global()}, PATTERN, options)
    with pytest.raises(ArgumentTypeError, match="pattern must be a LayerPattern"):
        linen_pattern_stack(BLOCKS, ("local", "global"), options)


def test_options_must_have_the_pattern_s_length():
    with pytest.raises(
        ArgumentRangeError, match="options.num_layers must be pattern.num_layers = 4"
    ):
        linen_pattern_stack(BLOCKS, PATTERN, StackOptions(num_layers=5))


def test_kinds_must_return_the_same_y():
    class WithY(nn.Module):
        @nn.compact
        def __call__(self, x, _):
            return x + nn.Dense(pb.F)(x), x[0]

    model = linen_pattern_stack(
        {"local": WithY(), "global": pb.Global()}, PATTERN, StackOptions(num_layers=4)
    )()
    with pytest.raises(KindOutputsError, match="kind 'global' returns y = None but kind 'local'"):
        model.init(jax.random.PRNGKey(0), jnp.ones((2, pb.F)))


def test_per_layer_inputs_need_all_n_layers():
    model = linen_pattern_stack(BLOCKS, PATTERN, StackOptions(num_layers=4))()
    with pytest.raises(LayerInputsError, match="num_layers=4"):
        model.init(jax.random.PRNGKey(0), jnp.ones((2, pb.F)), jnp.ones((3, pb.F)))
