"""composed_lifts_forward against the seed's recipe, NumPy float64, and JAX's transforms."""

import logging
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from composed_lifts import composed_lifts_forward, device_mesh, errors, forward_program
from references import numpy_forward, numpy_grad_input, seed_recipe

SEEDS = st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 2**31 - 1, 2**32 - 1]))


def _x(rng_seed, batch, features, scale=1.0):
    return (np.random.default_rng(rng_seed).standard_normal((batch, features)) * scale).astype(
        np.float32
    )


@given(
    seed=SEEDS,
    batch=st.integers(0, 5),
    features=st.integers(1, 6),
    num_layers=st.integers(0, 4),
    partitionable=st.booleans(),
)
def test_bitwise_equal_to_recipe(seed, batch, features, num_layers, partitionable):
    x = _x(seed % 1000, batch, features)
    with jax.threefry_partitionable(partitionable):  # both of JAX's threefry layouts
        want, _ = seed_recipe(seed, jnp.asarray(x), num_layers, features)
        got = composed_lifts_forward(seed, x, num_layers, features)
    assert isinstance(got, jax.Array)
    assert got.dtype == jnp.float32 and got.shape == (batch * features,)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


@pytest.mark.parametrize("seed,batch,num_layers,features", [(0, 8, 4, 64), (12345, 3, 7, 16)])
def test_matches_numpy_float64_forward_and_gradient(seed, batch, num_layers, features):
    x = _x(1, batch, features)
    _, variables = seed_recipe(seed, jnp.asarray(x), num_layers, features)
    dense = variables["params"]["Dense_0"]
    want = numpy_forward(dense["kernel"], dense["bias"], x)
    got = np.asarray(composed_lifts_forward(seed, x, num_layers, features)).reshape(batch, -1)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)

    grad = jax.grad(lambda v: composed_lifts_forward(seed, v, num_layers, features).sum())(x)
    want_grad = numpy_grad_input(dense["kernel"], dense["bias"], x)
    np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=2e-5, atol=2e-6)


def test_zero_layers_is_identity_and_empty_batch_is_empty():
    x = _x(2, 3, 4)
    np.testing.assert_array_equal(np.asarray(composed_lifts_forward(5, x, 0, 4)), x.reshape(-1))
    out = composed_lifts_forward(5, np.zeros((0, 4), np.float32), 3, 4)
    assert out.shape == (0,) and out.dtype == jnp.float32


def test_per_example_independence_and_permutation():
    x = _x(3, 6, 5)
    full = np.asarray(composed_lifts_forward(9, x, 3, 5)).reshape(6, 5)
    for i in range(6):
        alone = np.asarray(composed_lifts_forward(9, x[i : i + 1], 3, 5))
        np.testing.assert_array_equal(alone, full[i])
    perm = np.random.default_rng(0).permutation(6)
    permuted = np.asarray(composed_lifts_forward(9, x[perm], 3, 5)).reshape(6, 5)
    np.testing.assert_array_equal(permuted, full[perm])


def test_different_seeds_give_different_results():
    x = _x(4, 2, 4, scale=3.0)
    a = composed_lifts_forward(0, x, 2, 4)
    b = composed_lifts_forward(1, x, 2, 4)
    c = composed_lifts_forward(2**32 - 1, x, 2, 4)
    assert not np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize(
    "make",
    [
        lambda x: x.astype(np.float64),
        lambda x: x.astype(np.float16),
        lambda x: np.round(x * 4).astype(np.int32),
        lambda x: np.round(np.abs(x) * 4).astype(np.uint8),
        lambda x: np.round(x * 4).astype(np.int64).tolist(),
        lambda x: x.tolist(),
        lambda x: jnp.asarray(x),
        lambda x: jnp.asarray(x, jnp.bfloat16),
    ],
    ids=["float64", "float16", "int32", "uint8", "int-list", "float-list", "jax", "bfloat16"],
)
def test_any_real_array_like_is_computed_in_float32(make):
    x = make(_x(5, 3, 4))
    want, _ = seed_recipe(7, jnp.asarray(np.asarray(x, np.float32)), 2, 4)
    got = composed_lifts_forward(7, x, 2, 4)
    assert got.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_numpy_integer_arguments_are_accepted():
    x = _x(6, 2, 3)
    got = composed_lifts_forward(np.uint32(3), x, np.int64(2), np.int8(3))
    np.testing.assert_array_equal(got, composed_lifts_forward(3, x, 2, 3))


def test_jit_with_static_arguments_and_grad_through_it():
    x = _x(7, 4, 8)
    jitted = jax.jit(composed_lifts_forward, static_argnums=(0, 2, 3))
    np.testing.assert_array_equal(jitted(1, x, 3, 8), composed_lifts_forward(1, x, 3, 8))
    g1 = jax.grad(lambda v: jitted(1, v, 3, 8).sum())(x)
    g2 = jax.grad(lambda v: composed_lifts_forward(1, v, 3, 8).sum())(x)
    np.testing.assert_array_equal(g1, g2)


def test_second_call_with_new_seed_compiles_nothing(caplog):
    x = _x(8, 3, 6)
    composed_lifts_forward(100, x, 2, 6).block_until_ready()  # warm: may compile
    with jax.log_compiles(True), caplog.at_level(logging.DEBUG):
        caplog.clear()
        for seed in (101, 102, 2**32 - 1):
            composed_lifts_forward(seed, x, 2, 6).block_until_ready()
    compiles = [r.getMessage() for r in caplog.records if "ompil" in r.getMessage()]
    assert compiles == []
    # ...and a new shape does compile (the log check above can fail).
    with jax.log_compiles(True), caplog.at_level(logging.DEBUG):
        caplog.clear()
        composed_lifts_forward(100, x[:2], 2, 6).block_until_ready()
    assert any("ompil" in r.getMessage() for r in caplog.records)


def test_same_seed_same_bits_in_two_processes():
    code = (
        "import numpy as np, sys\n"
        "from composed_lifts import composed_lifts_forward\n"
        "x = np.arange(15, dtype=np.float32).reshape(3, 5) / 7 - 1\n"
        "sys.stdout.write(np.asarray(composed_lifts_forward(4242, x, 3, 5)).tobytes().hex())\n"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        for _ in range(2)
    ]
    assert runs[0].stdout == runs[1].stdout and len(runs[0].stdout) == 15 * 4 * 2
    x = np.arange(15, dtype=np.float32).reshape(3, 5) / 7 - 1
    here = np.asarray(composed_lifts_forward(4242, x, 3, 5)).tobytes().hex()
    assert runs[0].stdout == here


def test_forward_program_is_the_recipe_in_two_halves(caplog):
    x = _x(3, 4, 5)
    program = forward_program(3, 5)
    variables = program.init(7, x)
    want_final, want_params = seed_recipe(7, jnp.asarray(x), 3, 5)
    assert jax.tree_util.tree_structure(variables) == jax.tree_util.tree_structure(want_params)
    for a, b in zip(jax.tree_util.tree_leaves(variables), jax.tree_util.tree_leaves(want_params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(program.apply(variables, x)), np.asarray(want_final))
    with jax.log_compiles(True), caplog.at_level(logging.DEBUG):  # another seed: no compile
        caplog.clear()
        program.apply(program.init(8, x), x).block_until_ready()
    assert [r.getMessage() for r in caplog.records if "ompil" in r.getMessage()] == []


def test_forward_program_on_a_mesh_places_params_and_examples():
    mesh = device_mesh({"data": 2})
    x = _x(4, 4, 3)
    program = forward_program(2, 3, mesh=mesh)
    variables = program.init(5, x)
    kernel = variables["params"]["Dense_0"]["kernel"]
    assert kernel.sharding.mesh.shape == mesh.shape and kernel.shape == (2, 3, 3)
    got = program.apply(variables, x)
    assert len(got.sharding.device_set) == 2  # the examples were split over the devices
    want = composed_lifts_forward(5, x, 2, 3, mesh=mesh)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    np.testing.assert_allclose(
        np.asarray(got), np.asarray(composed_lifts_forward(5, x, 2, 3)), rtol=1e-6
    )
    with pytest.raises(errors.UnevenBatchError, match="batch of 3"):
        program.apply(variables, x[:3])


def test_forward_program_checks_its_arguments():
    with pytest.raises(errors.ArgumentRangeError, match="num_layers must be >= 0"):
        forward_program(-1, 3)
    program = forward_program(1, 3)
    with pytest.raises(errors.SeedRangeError):
        program.init(2**32, np.ones((1, 3)))
    with pytest.raises(errors.WidthMismatchError, match="x_batch.shape.-1. is 4 but features is 3"):
        program.init(0, np.ones((1, 4)))
    with pytest.raises(errors.InputShapeError):
        program.apply(program.init(0, np.ones((1, 3))), np.ones(3))
