"""Layout conversions round-trip exactly: structure first, then values with ==."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from blocks import ResidualMLPLinen, ResidualMLPNNX
from composed_lifts import (
    BatchMode,
    StackOptions,
    errors,
    linen_stack,
    linen_to_nnx,
    nnx_stack,
    nnx_to_linen,
    stack_params,
    unstack_params,
)

N, B = 3, 2


def assert_identical(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("mode", [BatchMode.SHARED, BatchMode.ENSEMBLE])
def test_stack_unstack_round_trip(mode):
    model = linen_stack(ResidualMLPLinen, StackOptions(num_layers=N, batch=mode))()
    params = model.init(jax.random.PRNGKey(0), jnp.ones((B, 6)))["params"]
    axis = 1 if mode is BatchMode.ENSEMBLE else 0
    layers = unstack_params(params, axis=axis)
    assert sorted(layers) == ["layers_0", "layers_1", "layers_2"]
    kernel = params["Dense_0"]["kernel"]
    np.testing.assert_array_equal(
        layers["layers_1"]["Dense_0"]["kernel"], jnp.take(kernel, 1, axis)
    )
    assert_identical(stack_params(layers, axis=axis), params)
    assert_identical(unstack_params(stack_params(layers, axis=axis), axis=axis), layers)


def test_linen_nnx_round_trip():
    model = linen_stack(ResidualMLPLinen, StackOptions(num_layers=N))()
    variables = model.init(jax.random.PRNGKey(1), jnp.ones((B, 6)))
    stack = nnx_stack(ResidualMLPNNX, StackOptions(num_layers=N), rngs=nnx.Rngs(0))
    before = nnx_to_linen(stack)
    converted = linen_to_nnx(variables, stack)
    assert_identical(nnx_to_linen(converted), {"params": variables["params"]})
    assert_identical(nnx_to_linen(stack), before)  # the original is untouched
    again = linen_to_nnx(nnx_to_linen(converted), stack)
    assert_identical(nnx.state(again, nnx.Param), nnx.state(converted, nnx.Param))


def test_conversion_errors_name_the_difference():
    layers = {"layers_0": {"w": jnp.ones((2,))}, "layers_2": {"w": jnp.ones((2,))}}
    with pytest.raises(
        errors.LayoutMismatchError,
        match=r"layers_0 \.\.\. layers_1: missing \['layers_1'\], unexpected \['layers_2'\]",
    ):
        stack_params(layers)
    layers = {"layers_0": {"w": jnp.ones((2,))}, "layers_1": {"w": jnp.ones((3,))}}
    with pytest.raises(errors.LayoutMismatchError, match=r"layers_1\['w'\] is float32\(3,\)"):
        stack_params(layers)
    layers = {"layers_0": {"w": jnp.ones((2,))}, "layers_1": {"v": jnp.ones((2,))}}
    with pytest.raises(errors.LayoutMismatchError, match="tree structure"):
        stack_params(layers)
    with pytest.raises(errors.StackLayoutError, match=r"\['a'\] has 3, \['b'\] has 4"):
        unstack_params({"a": jnp.ones((3, 2)), "b": jnp.ones((4, 2))})
    with pytest.raises(errors.StackLayoutError, match="no layer axis 2"):
        unstack_params({"a": jnp.ones((3, 2))}, axis=2)

    stack = nnx_stack(ResidualMLPNNX, StackOptions(num_layers=N), rngs=nnx.Rngs(0))
    wrong = nnx_to_linen(stack)
    wrong["params"]["Dense_9"] = wrong["params"].pop("Dense_0")
    with pytest.raises(errors.LayoutMismatchError, match="missing.*Dense_0.*unexpected.*Dense_9"):
        linen_to_nnx(wrong, stack)
    with pytest.raises(errors.ArgumentTypeError, match="'params' collection"):
        linen_to_nnx({"Dense_0": {}}, stack)
