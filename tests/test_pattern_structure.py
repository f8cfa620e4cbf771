"""LayerPattern's arithmetic, and the structure of a compiled pattern stack: one scan over the
whole periods (and one of length 1 for the remainder) in the jaxpr, whatever N."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

import pattern_blocks as pb
from composed_lifts import LayerPattern, StackOptions, linen_pattern_stack, nnx_pattern_stack

GEMMA3 = ("sliding",) * 5 + ("full",)


def test_from_layer_types_finds_the_shortest_period():
    types = list(GEMMA3) * 4 + ["sliding", "sliding"]  # 26 layers: 4 x 6 + 2
    pattern = LayerPattern.from_layer_types(types)
    assert pattern == LayerPattern(GEMMA3, 26)
    assert (pattern.repeats, pattern.remainder, pattern.size) == (4, 2, 6)
    assert pattern.layer_types == tuple(types)
    assert pattern.layers_of(5) == (5, 11, 17, 23)
    assert pattern.where(23) == ("repeats", "kind_5", 3)
    assert pattern.where(25) == ("remainder", "kind_1", 0)
    assert LayerPattern.from_layer_types(["a", "b"] * 3).period == ("a", "b")
    assert LayerPattern.from_layer_types(["full"] * 4).period == ("full",)
    assert LayerPattern.from_layer_types(["a", "b", "b"]).period == ("a", "b", "b")  # no repeat
    assert LayerPattern.from_layer_types(["a", "a", "a", "a"], period=2).period == ("a", "a")


def _size(jaxpr) -> int:
    """How many equations a closed jaxpr holds, counting those of every sub-jaxpr."""
    total = 0
    for eqn in jaxpr.jaxpr.eqns if hasattr(jaxpr, "jaxpr") else jaxpr.eqns:
        total += 1
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(sub, (jax.extend.core.ClosedJaxpr, jax.extend.core.Jaxpr)):
                    total += _size(sub)
    return total


def _scans(jaxpr):
    """Every scan in a closed jaxpr, recursively: a list of their lengths."""
    found = []
    for eqn in jaxpr.jaxpr.eqns if hasattr(jaxpr, "jaxpr") else jaxpr.eqns:
        if eqn.primitive.name == "scan":
            found.append(eqn.params["length"])
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(sub, (jax.extend.core.ClosedJaxpr, jax.extend.core.Jaxpr)):
                    found += _scans(sub)
    return found


def _linen_jaxprs(num_layers):
    pattern = LayerPattern(GEMMA3, num_layers)
    blocks = {"sliding": pb.Local(), "full": pb.Global()}
    model = linen_pattern_stack(blocks, pattern, StackOptions(num_layers=num_layers))()
    x = jax.ShapeDtypeStruct((2, pb.F), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
    forward = jax.make_jaxpr(model.apply)(variables, x)
    grad = jax.make_jaxpr(jax.grad(lambda v, x: jnp.sum(model.apply(v, x)[0])))(variables, x)
    return forward, grad


@pytest.mark.parametrize("remainder", [0, 2])
def test_linen_pattern_stack_is_one_scan_or_two_whatever_n(remainder):
    sizes = set()
    for num_layers in (6 + remainder, 24 + remainder, 96 + remainder):
        forward, grad = _linen_jaxprs(num_layers)
        want = [num_layers // 6] + ([1] if remainder else [])
        assert _scans(forward) == want
        assert sorted(_scans(grad)) == sorted(want * 2)  # forward and backward, one scan each
        sizes.add((_size(forward), _size(grad)))
    assert len(sizes) == 1, sizes  # the same program whatever N: only the scans' lengths differ


@pytest.mark.parametrize("num_layers", [8, 98])
def test_nnx_pattern_stack_is_two_scans(num_layers):
    pattern = LayerPattern(GEMMA3, num_layers)
    make = {"sliding": pb.LocalNNX, "full": pb.GlobalNNX}
    options = StackOptions(num_layers=num_layers)
    stack = nnx.eval_shape(lambda: nnx_pattern_stack(make, pattern, options, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(stack)

    def forward(state, x):
        return nnx.merge(graphdef, state)(x)[0]

    scans = _scans(jax.make_jaxpr(forward)(state, jax.ShapeDtypeStruct((2, pb.F), jnp.float32)))
    assert scans == [num_layers // 6, 1]


def test_no_layers_is_the_identity():
    pattern = LayerPattern(GEMMA3, 0)
    x = jnp.arange(2.0 * pb.F).reshape(2, pb.F)
    model = linen_pattern_stack(
        {"sliding": pb.Local(), "full": pb.Global()}, pattern, StackOptions(num_layers=0)
    )()
    variables = model.init(jax.random.PRNGKey(0), x)
    assert variables == {}
    final, ys = model.apply(variables, x)
    assert (final == x).all() and ys is None
    make = {"sliding": pb.LocalNNX, "full": pb.GlobalNNX}
    stack = nnx_pattern_stack(make, pattern, StackOptions(num_layers=0), rngs=nnx.Rngs(0))
    final, ys = stack(x)
    assert (final == x).all() and ys is None
