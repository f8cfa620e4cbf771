"""Argument checks shared by the public functions.

Every check raises one of the classes in :mod:`composed_lifts.errors` with a
message that names the argument, the value seen, the value expected and the
fix, before any JAX tracing starts.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .errors import (
    ArgumentRangeError,
    ArgumentTypeError,
    InputDtypeError,
    InputShapeError,
    NonFiniteInputError,
    SeedRangeError,
    WidthMismatchError,
)

SEED_MAX = 2**32 - 1


def describe_value(value: Any) -> str:
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


def check_integer(name: str, value: Any, *, minimum: int | None = None) -> int:
    """Return ``value`` as a Python int; ``bool`` is refused, NumPy integers are accepted."""
    if isinstance(value, jax.core.Tracer):
        raise ArgumentTypeError(
            name,
            "a concrete integer",
            f"a traced value {value!r}",
            f"under jax.jit mark it static, e.g. jax.jit(f, static_argnames=({name!r},))",
        )
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ArgumentTypeError(
            name, "an integer (int or numpy integer)", describe_value(value), f"pass e.g. {name}=4"
        )
    value = int(value)
    if minimum is not None and value < minimum:
        raise ArgumentRangeError(name, f">= {minimum}", value)
    return value


def check_seed(seed: Any, name: str = "seed") -> int:
    """Return ``seed`` as an int in ``[0, 2**32 - 1]``, the values a 32-bit PRNG key holds."""
    seed = check_integer(name, seed)
    if not 0 <= seed <= SEED_MAX:
        raise SeedRangeError(name, seed)
    return seed


def _check_real_dtype(name: str, dtype: np.dtype) -> None:
    real = jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)
    if jnp.issubdtype(dtype, jnp.bool_) or not real:
        raise InputDtypeError(name, dtype)


def as_float32_matrix(
    x: Any,
    name: str,
    *,
    width: int,
    width_name: str,
    check_finite: bool = True,
    finite_fix: str | None = None,
) -> jax.Array:
    """Check ``x`` is a 2-D array of real numbers of width ``width``; return it as float32.

    Tracers are accepted (their shape and dtype are checked; finiteness cannot be).
    ``finite_fix`` replaces the fix the :class:`NonFiniteInputError` suggests (the command
    line has no ``check_finite``).
    """
    if isinstance(x, jax.core.Tracer) or isinstance(x, jax.Array):
        _check_real_dtype(name, np.dtype(x.dtype))
        host = None
    else:
        try:
            host = np.asarray(x)
        except ValueError as err:  # ragged nested lists
            raise InputShapeError(
                name, f"a ragged sequence (no array could be made: {err})"
            ) from None
        _check_real_dtype(name, host.dtype)
    shape = tuple(x.shape) if host is None else host.shape
    if len(shape) != 2:
        raise InputShapeError(
            name,
            f"{len(shape)}-D with shape {shape}",
            f"for one example use {name}[None, :], for a stack of batches reshape to (-1, {width})",
        )
    if shape[-1] != width:
        raise WidthMismatchError(name, shape[-1], width_name, width)
    if host is None:
        x32 = jnp.asarray(x, jnp.float32)
        if check_finite and not isinstance(x32, jax.core.Tracer):
            host = np.asarray(x32)
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            host = host.astype(np.float32)
        x32 = None
    if check_finite and host is not None and not np.isfinite(host).all():
        bad = np.argwhere(~np.isfinite(host))
        first = tuple(int(i) for i in bad[0])
        fix = {} if finite_fix is None else {"fix": finite_fix}
        raise NonFiniteInputError(name, len(bad), first, float(host[first]), **fix)
    return jnp.asarray(host) if x32 is None else x32
