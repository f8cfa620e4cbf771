"""A pattern stack through today's checkpoints: its two parts saved as two stacks (each with its
own layer axis, R and 1), loaded back exactly into the Linen and the NNX pattern stack. The
pattern itself (period, kinds) is not recorded in the file."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import pattern_blocks as pb
from composed_lifts import (
    LayerPattern,
    StackOptions,
    linen_pattern_stack,
    nnx_pattern_stack,
    nnx_to_linen,
)
from composed_lifts.checkpoint import Form, Stack, load, read_layout, save

PATTERN = LayerPattern(("local", "local", "global"), 7)
OPTIONS = StackOptions(num_layers=7)


def assert_equal_trees(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        assert (np.asarray(x) == np.asarray(y)).all()


def test_pattern_stack_saves_as_two_stacks_and_loads_exactly(tmp_path):
    model = linen_pattern_stack({"local": pb.Local(), "global": pb.Global()}, PATTERN, OPTIONS)()
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.ones((2, pb.F)))
    path = str(tmp_path / "pattern.safetensors")
    save(path, variables, stacks=[Stack("params/repeats"), Stack("params/remainder")])
    records = {r.path: (r.num_layers, r.form) for r in read_layout(path).stacks}
    assert records == {"params/repeats": (2, Form.STACKED), "params/remainder": (1, Form.STACKED)}
    assert_equal_trees(load(path, like=variables), variables)

    make = {"local": pb.LocalNNX, "global": pb.GlobalNNX}
    stack = nnx_pattern_stack(make, PATTERN, OPTIONS, rngs=nnx.Rngs(1))
    assert_equal_trees(nnx_to_linen(load(path, like=stack)), variables)
