"""The doctor on a pattern stack: which layers are which kind, their param shapes and axis roles,
equal to what the stack really makes (and to the unrolled layers' shapes)."""

import jax
import jax.numpy as jnp
import pytest

import pattern_blocks as pb
from composed_lifts import (
    BatchMode,
    LayerPattern,
    StackOptions,
    linen_pattern_stack,
    unstack_pattern_params,
)
from composed_lifts.doctor import AxisRole, describe_pattern

BLOCKS = {"local": pb.Local(), "global": pb.Global()}


@pytest.mark.parametrize("batch", [BatchMode.SHARED, BatchMode.ENSEMBLE], ids=lambda b: b.name)
def test_describe_pattern_matches_the_stack(batch):
    pattern = LayerPattern(("local", "local", "global"), 7)  # 2 whole periods + 1
    options = StackOptions(num_layers=7, batch=batch)
    report = describe_pattern(BLOCKS, pattern, (3, pb.F), options)
    model = linen_pattern_stack(BLOCKS, pattern, options)()
    real = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.ones((3, pb.F)))["params"]
    flat = {
        "params/" + "/".join(str(k.key) for k in path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(real)[0]
    }
    assert {leaf.path for leaf in report.leaves} == set(flat)
    lead = (AxisRole.BATCH,) if batch is BatchMode.ENSEMBLE else ()
    for leaf in report.leaves:
        assert leaf.shape == flat[leaf.path].shape
        assert leaf.roles[: len(lead) + 1] == lead + (AxisRole.LAYER,)
        assert set(leaf.roles[len(lead) + 1 :]) <= {AxisRole.FEATURE}
    # which layers are which kind
    assert [k.kind for k in report.kinds] == ["local", "local", "global"]
    assert [k.layers for k in report.kinds] == [(0, 3, 6), (1, 4), (2, 5)]
    assert [report.layer(i) for i in (0, 5, 6)] == [
        ("local", "repeats/kind_0[0]"),
        ("global", "repeats/kind_2[1]"),
        ("local", "remainder/kind_0[0]"),
    ]
    assert report.kinds[0].block == "Local()"
    # the count is the unrolled layers' (times B for an ensemble)
    layers = unstack_pattern_params(
        jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), real),
        pattern,
        axis=1 if batch is BatchMode.ENSEMBLE else 0,
    )
    assert report.count == sum(a.size for a in jax.tree_util.tree_leaves(layers))
    text = "\n".join(report.lines())
    assert "N=7 layers = 2 x 3 + 1" in text and "6 local" in text and "5 global" in text
    assert report.as_dict()["layer_types"] == list(pattern.layer_types)


def test_describe_pattern_without_remainder_and_short():
    whole = describe_pattern(BLOCKS, LayerPattern(("local", "global"), 4), (2, pb.F))
    assert all(leaf.path.startswith("params/repeats/") for leaf in whole.leaves)
    short = describe_pattern(BLOCKS, LayerPattern(("local", "local", "global"), 2), (2, pb.F))
    assert all(leaf.path.startswith("params/remainder/") for leaf in short.leaves)
    assert short.kinds[2].leaves == () and short.kinds[2].layers == ()
