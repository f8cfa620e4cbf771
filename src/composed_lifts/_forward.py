"""``composed_lifts_forward``: the seed's recipe, compiled once per shape and reused across seeds;
``forward_program``: its two halves, init and apply, compiled apart."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh

from ._arguments import as_float32_matrix, check_integer, check_seed
from ._fast_init import fast_init_applies, fast_seed_params
from ._options import StackOptions
from ._seed import seed_model
from ._sharding import ShardingRules, default_rules, param_shardings, shard_batch
from .errors import ArgumentTypeError

__all__ = ["ForwardProgram", "composed_lifts_forward", "forward_program"]


@functools.partial(jax.jit, static_argnames=("num_layers", "features"))
def _init_params_flax(seed: jax.Array, x_batch: jax.Array, *, num_layers: int, features: int):
    """``model.init(PRNGKey(seed), x_batch, None)``, with the seed passed as data (uint32)."""
    return seed_model(num_layers, features).init(jax.random.PRNGKey(seed), x_batch, None)


@functools.partial(jax.jit, static_argnames=("num_layers", "features"))
def _init_params(seed: jax.Array, x_batch: jax.Array, *, num_layers: int, features: int):
    """The same params as :func:`_init_params_flax`, bit for bit: one flat program on CPU
    (``_fast_init``), Flax's ``init`` elsewhere."""
    if fast_init_applies():
        return fast_seed_params(seed, num_layers, features)
    return _init_params_flax(seed, x_batch, num_layers=num_layers, features=features)


@functools.partial(jax.jit, static_argnames=("num_layers", "features"))
def _apply_params(variables, x_batch: jax.Array, *, num_layers: int, features: int):
    """``model.apply(variables, x_batch, None)``, the final carry flattened to ``(B * F,)``."""
    final, _ = seed_model(num_layers, features).apply(variables, x_batch, None)
    return final.reshape(-1)


@functools.partial(jax.jit, static_argnames=("num_layers", "features"))
def _init_and_apply(seed: jax.Array, x_batch: jax.Array, *, num_layers: int, features: int):
    variables = _init_params(seed, x_batch, num_layers=num_layers, features=features)
    return _apply_params(variables, x_batch, num_layers=num_layers, features=features)


@functools.partial(jax.jit, static_argnames=("num_layers", "features"))
def _init_and_apply_flax(seed: jax.Array, x_batch: jax.Array, *, num_layers: int, features: int):
    """The program before ``_fast_init``: Flax's ``init`` then ``apply`` (the benchmark's baseline)."""
    variables = _init_params_flax(seed, x_batch, num_layers=num_layers, features=features)
    return _apply_params(variables, x_batch, num_layers=num_layers, features=features)


SEED_PARAM_AXES = ((r"kernel", ("embed", "mlp")), (r"bias", ("mlp",)))
"""Logical names of the seed Block's per-layer axes (its ``Dense`` has no metadata)."""


def seed_rules(mesh: Mesh, rules: ShardingRules | None) -> ShardingRules:
    """``rules`` for the seed's stack (:func:`default_rules` with :data:`SEED_PARAM_AXES`)."""
    return default_rules(mesh, rules, SEED_PARAM_AXES)


@functools.lru_cache(maxsize=32)
def _sharded_program(mesh: Mesh, rules: ShardingRules, num_layers: int, features: int):
    """``(init, apply)`` compiled for ``mesh``: params created on their shards, then applied."""
    x = jax.ShapeDtypeStruct((1, features), np.float32)  # the params do not depend on the batch
    seed = jax.ShapeDtypeStruct((), np.uint32)
    init = functools.partial(_init_params, num_layers=num_layers, features=features)
    abstract = jax.eval_shape(init, seed, x)
    shardings = param_shardings(abstract, mesh, rules, StackOptions(num_layers=num_layers))
    apply = functools.partial(_apply_params, num_layers=num_layers, features=features)
    return jax.jit(init, out_shardings=shardings), apply


class ForwardProgram(NamedTuple):
    """The two halves of :func:`composed_lifts_forward`, compiled apart (see :func:`forward_program`).

    ``init(seed, x_batch)`` returns the seed stack's variables (``{"params": ...}``, on their
    shards when there is a mesh); ``apply(variables, x_batch)`` returns the final carry
    flattened to ``(B * features,)``. Only ``x_batch``'s shape matters to ``init``.
    """

    init: Callable[[Any, Any], Any]
    apply: Callable[[Any, Any], jax.Array]


def forward_program(
    num_layers: int,
    features: int,
    *,
    mesh: Mesh | None = None,
    rules: ShardingRules | None = None,
) -> ForwardProgram:
    """:func:`composed_lifts_forward` as two compiled functions, to time, keep or reuse the params.

    ``apply(init(seed, x), x)`` equals ``composed_lifts_forward(seed, x, num_layers,
    features, mesh=mesh, rules=rules)``, bit for bit: the same programs, compiled once per
    shape and reused across seeds (the seed travels as data). With a ``mesh``, ``init``
    creates the params on their shards and ``apply`` splits ``x_batch``'s examples over
    ``rules.batch`` (default: the mesh's first axis) before applying; the batch must divide
    evenly (:class:`~composed_lifts.errors.UnevenBatchError`).

    ``seed`` is checked as in :func:`composed_lifts_forward`, ``x_batch``'s shape and dtype
    too (its values are not: ``apply`` does no finiteness check).

    >>> import numpy as np
    >>> program = forward_program(num_layers=4, features=3)
    >>> x = np.ones((2, 3), np.float32)
    >>> variables = program.init(0, x)
    >>> variables["params"]["Dense_0"]["kernel"].shape  # (N, F, F)
    (4, 3, 3)
    >>> bool((program.apply(variables, x) == composed_lifts_forward(0, x, 4, 3)).all())
    True
    """
    num_layers = check_integer("num_layers", num_layers, minimum=0)
    features = check_integer("features", features, minimum=1)
    static = {"num_layers": num_layers, "features": features}
    if mesh is None:
        init = functools.partial(_init_params, **static)
        apply = functools.partial(_apply_params, **static)
        place: Callable[[Any], Any] = lambda x: x  # noqa: E731
    else:
        chosen = seed_rules(mesh, rules)
        init, apply = _sharded_program(mesh, chosen, num_layers, features)
        place = functools.partial(shard_batch, mesh=mesh, rules=chosen)

    def matrix(x_batch):
        return as_float32_matrix(
            x_batch, "x_batch", width=features, width_name="features", check_finite=False
        )

    def checked_init(seed, x_batch):
        return init(np.uint32(check_seed(seed)), matrix(x_batch))

    def checked_apply(variables, x_batch):
        return apply(variables, place(matrix(x_batch)))

    return ForwardProgram(checked_init, checked_apply)


def check_forward_args(seed, x_batch, num_layers, features, *, check_finite=True):
    """Validate the arguments of :func:`composed_lifts_forward`; return them normalised."""
    seed = check_seed(seed)
    num_layers = check_integer("num_layers", num_layers, minimum=0)
    features = check_integer("features", features, minimum=1)
    x = as_float32_matrix(
        x_batch, "x_batch", width=features, width_name="features", check_finite=check_finite
    )
    return np.uint32(seed), x, num_layers, features


def composed_lifts_forward(
    seed: int,
    x_batch: Any,
    num_layers: int,
    features: int,
    *,
    check_finite: bool = True,
    mesh: Mesh | None = None,
    rules: ShardingRules | None = None,
) -> jax.Array:
    """The seed's forward pass: ``nn.vmap(nn.scan(Block))`` initialised from ``seed`` and applied.

    Equal, bit for bit, to this recipe (which re-compiles on every call; this
    function compiles once per ``(B, num_layers, features)`` and reuses the
    program across seeds, the seed travelling as data)::

        ScanLayer = nn.scan(Block, variable_axes={"params": 0},
                            split_rngs={"params": True}, length=num_layers)
        BatchedScanLayer = nn.vmap(ScanLayer, in_axes=0, out_axes=0,
                                   variable_axes={"params": None},
                                   split_rngs={"params": False})
        model = BatchedScanLayer(features=features)
        params = model.init(jax.random.PRNGKey(seed), x_batch, None)
        final, _ = model.apply(params, x_batch, None)
        return final.reshape(-1)

    On CPU the params are drawn in one flat program outside the scan, from the
    per-layer keys Flax derives, with threefry written in ``jax.numpy``
    (``_fast_init``, ``_threefry``): the same params, bit for bit, at a fraction
    of the cost. On other backends, or with another default PRNG, Flax's ``init``.

    Args:
      seed: an integer in ``[0, 2**32 - 1]`` (``bool`` is refused; NumPy integers are fine).
      x_batch: a 2-D array-like ``(B, features)`` of real numbers (any integer or float
        dtype, nested lists, NumPy or JAX arrays); the computation is float32.
      num_layers: N >= 0; ``0`` is the identity.
      features: F >= 1, which must equal ``x_batch.shape[-1]``.
      check_finite: refuse NaN and infinity in a concrete ``x_batch`` (skipped for tracers).
      mesh: run on the devices of this ``jax.sharding.Mesh`` (see ``device_mesh``): the
        examples split over ``rules.batch`` (default: the mesh's first axis), the params
        created on their shards. ``None`` (the default): one device, bit for bit the recipe.
        On several devices the result equals one device's within about 1e-7 relative
        (XLA tiles the per-device matmuls differently); the batch must divide evenly.
      rules: how to place the stack's axes (:class:`~composed_lifts.ShardingRules`); the
        ``Dense`` params' per-layer axes are named ``("embed", "mlp")`` and ``("mlp",)``.

    Returns:
      A float32 ``jax.Array`` of shape ``(B * features,)``: the final activation, flattened.

    Raises:
      ArgumentTypeError, ArgumentRangeError, SeedRangeError, InputShapeError,
      WidthMismatchError, InputDtypeError, NonFiniteInputError (see ``composed_lifts.errors``).

    >>> import numpy as np
    >>> out = composed_lifts_forward(0, np.ones((2, 3)), num_layers=4, features=3)
    >>> out.shape, out.dtype
    ((6,), dtype('float32'))
    >>> bool((out >= 0).all())              # the last layer ends in relu
    True

    It composes with JAX: ``jax.grad`` in ``x_batch``, and ``jax.jit`` with
    ``seed``, ``num_layers`` and ``features`` static.

    >>> g = jax.grad(lambda x: composed_lifts_forward(0, x, 3, 3).sum())(np.ones((2, 3)))
    >>> g.shape
    (2, 3)
    """
    seed_u32, x, num_layers, features = check_forward_args(
        seed, x_batch, num_layers, features, check_finite=check_finite
    )
    if mesh is None:
        return _init_and_apply(seed_u32, x, num_layers=num_layers, features=features)
    if isinstance(x, jax.core.Tracer):
        raise ArgumentTypeError(
            "mesh",
            "None when x_batch is traced",
            repr(mesh),
            "place the inputs and params yourself (shard_batch, sharded_init) under a transform",
        )
    init, apply = forward_program(num_layers, features, mesh=mesh, rules=rules)
    return apply(init(seed_u32, x), x)
