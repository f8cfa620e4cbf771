"""Every bad input to composed_lifts_forward: the exception type and the words of its message."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from composed_lifts import composed_lifts_forward, errors

X = np.ones((2, 3), np.float32)


@pytest.mark.parametrize(
    "kwargs,cls,words",
    [
        (
            dict(x_batch=np.ones(3)),
            errors.InputShapeError,
            ["x_batch must be a rectangular 2-D array", "got 1-D", "(3,)"],
        ),
        (dict(x_batch=np.ones((1, 2, 3))), errors.InputShapeError, ["got 3-D", "(1, 2, 3)"]),
        (dict(x_batch=5.0), errors.InputShapeError, ["got 0-D"]),
        (dict(x_batch=[[1.0, 2.0], [3.0]]), errors.InputShapeError, ["rectangular"]),
        (
            dict(x_batch=np.ones((2, 5))),
            errors.WidthMismatchError,
            ["x_batch.shape[-1] is 5 but features is 3", "features=5"],
        ),
        (
            dict(x_batch=[[1.0, np.nan, 0.0]]),
            errors.NonFiniteInputError,
            ["NaN or infinite", "(0, 1)", "check_finite=False"],
        ),
        (
            dict(x_batch=[[1.0, 0.0, -np.inf]]),
            errors.NonFiniteInputError,
            ["first at index (0, 2)"],
        ),
        (dict(x_batch=np.full((1, 3), 1e300)), errors.NonFiniteInputError, ["float32's range"]),
        (dict(x_batch=np.ones((2, 3), bool)), errors.InputDtypeError, ["real numbers", "bool"]),
        (dict(x_batch=np.ones((2, 3), complex)), errors.InputDtypeError, ["complex", ".real"]),
        (dict(x_batch=[["a", "b", "c"]]), errors.InputDtypeError, ["dtype <U1"]),
        (
            dict(x_batch=np.array([[1, None, 2]], dtype=object)),
            errors.InputDtypeError,
            ["dtype object"],
        ),
        (dict(x_batch=jnp.ones((2, 3), jnp.complex64)), errors.InputDtypeError, ["complex64"]),
        (dict(seed=1.0), errors.ArgumentTypeError, ["seed must be an integer", "float 1.0"]),
        (dict(seed=True), errors.ArgumentTypeError, ["seed must be an integer", "bool True"]),
        (dict(seed=np.bool_(False)), errors.ArgumentTypeError, ["seed must be an integer"]),
        (dict(seed="0"), errors.ArgumentTypeError, ["str '0'"]),
        (dict(num_layers=2.0), errors.ArgumentTypeError, ["num_layers must be an integer"]),
        (
            dict(num_layers=False),
            errors.ArgumentTypeError,
            ["num_layers must be an integer", "bool"],
        ),
        (
            dict(features=None),
            errors.ArgumentTypeError,
            ["features must be an integer", "NoneType"],
        ),
        (dict(num_layers=-1), errors.ArgumentRangeError, ["num_layers must be >= 0, got -1"]),
        (
            dict(features=0, x_batch=np.ones((2, 0))),
            errors.ArgumentRangeError,
            ["features must be >= 1, got 0"],
        ),
        (
            dict(seed=2**32),
            errors.SeedRangeError,
            ["[0, 2**32 - 1]", "got 4294967296", "PRNGKey(2**32) == PRNGKey(0)"],
        ),
        (dict(seed=-1), errors.SeedRangeError, ["got -1", "seed % 2**32"]),
        (dict(seed=np.int64(-5)), errors.SeedRangeError, ["got -5"]),
    ],
)
def test_bad_input_is_refused_clearly(kwargs, cls, words):
    args = dict(seed=0, x_batch=X, num_layers=2, features=3)
    args.update(kwargs)
    with pytest.raises(cls) as info:
        composed_lifts_forward(**args)
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    assert isinstance(info.value, errors.ComposedLiftsError)


def test_check_finite_false_skips_the_check():
    out = composed_lifts_forward(0, [[1.0, np.nan, 0.0]], 2, 3, check_finite=False)
    assert out.shape == (3,)


def test_tracers_are_checked_for_shape_and_dtype_but_not_finiteness():
    def f(x):
        return composed_lifts_forward(0, x, 2, 3)

    jax.jit(f)(jnp.array([[1.0, jnp.nan, 0.0]]))  # NaN cannot be seen through a tracer
    with pytest.raises(errors.WidthMismatchError, match="is 4 but features is 3"):
        jax.jit(f)(jnp.ones((2, 4)))
    with pytest.raises(errors.InputDtypeError, match="bool"):
        jax.jit(f)(jnp.ones((2, 3), bool))


def test_traced_seed_is_refused_with_the_fix():
    with pytest.raises(errors.ArgumentTypeError, match="static_argnames"):
        jax.jit(composed_lifts_forward, static_argnums=(2, 3))(0, X, 2, 3)
