"""FAST_THREEFRY against JAX's own threefry: the same key data, the same words, the same draws."""

import jax
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from composed_lifts._threefry import FAST_THREEFRY

SHAPES = [(), (0,), (1,), (2,), (7,), (3, 5), (1, 1), (2, 0, 3), (3, 1, 5), (1031, 1025)]


def _both(seed):
    key = jax.random.PRNGKey(seed)
    return key, jax.random.wrap_key_data(key, impl=FAST_THREEFRY)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_words_equal_jax_threefry(partitionable, shape):
    key, fast = _both(2**32 - 1)
    want = jax.random.bits(key, shape)
    got = jax.random.bits(fast, shape)
    assert got.dtype == want.dtype == np.uint32 and got.shape == want.shape == shape
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 40))
def test_words_equal_jax_threefry_any_seed(seed, n):
    key, fast = _both(seed)
    np.testing.assert_array_equal(jax.random.bits(fast, (n,)), jax.random.bits(key, (n,)))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_other_widths_are_jax_own(partitionable, dtype):
    key, fast = _both(11)
    want = jax.random.bits(key, (5, 3), dtype)
    got = jax.random.bits(fast, (5, 3), dtype)
    assert got.dtype == want.dtype == dtype
    np.testing.assert_array_equal(got, want)


def test_seed_split_and_fold_in_are_jax_own(partitionable):
    key, fast = _both(123)
    assert jax.random.key_impl(fast) is not jax.random.key_impl(jax.random.key(0))
    np.testing.assert_array_equal(
        jax.random.key_data(jax.random.split(fast, 5)), jax.random.split(key, 5)
    )
    np.testing.assert_array_equal(
        jax.random.key_data(jax.random.fold_in(fast, 2**31 + 7)), jax.random.fold_in(key, 2**31 + 7)
    )
    np.testing.assert_array_equal(
        jax.random.key_data(jax.random.key(9, impl=FAST_THREEFRY)), jax.random.PRNGKey(9)
    )


@pytest.mark.parametrize(
    "draw",
    [
        lambda k: jax.random.truncated_normal(k, -2.0, 2.0, (33, 17)),
        lambda k: jax.nn.initializers.lecun_normal()(k, (17, 33)),
        lambda k: jax.random.uniform(k, (5, 7), minval=-3.0, maxval=0.5),
        lambda k: jax.random.normal(k, (4, 9)),
        lambda k: jax.random.bernoulli(k, 0.3, (6, 5)),
    ],
    ids=["truncated_normal", "lecun_normal", "uniform", "normal", "bernoulli"],
)
def test_jitted_draws_equal_jax(partitionable, draw):
    key, fast = _both(5)
    want = jax.jit(draw)(key)
    got = jax.jit(draw)(fast)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_vmapped_over_keys_equals_one_key_at_a_time(partitionable):
    keys = jax.random.split(jax.random.PRNGKey(3), 4)
    fast = jax.random.wrap_key_data(keys, impl=FAST_THREEFRY)
    got = jax.jit(jax.vmap(lambda k: jax.random.bits(k, (3, 7))))(fast)
    want = np.stack([jax.random.bits(k, (3, 7)) for k in keys])
    np.testing.assert_array_equal(got, want)
