"""``nnx_stack``: the same layer stack for Flax NNX blocks (``nnx.vmap`` over ``nnx.scan``).

Layers are created with ``nnx.split_rngs`` + ``nnx.vmap`` (one block per layer,
params stacked on a leading N axis), and called with ``nnx.vmap`` over the
batch (``nnx.StateAxes``: params shared, or per example for an ensemble)
around ``nnx.scan`` over the layers. For speed, call it through
:func:`nnx_split_apply` (split/merge under ``jax.jit``): the default ``nnx.jit``
copies the whole graph state on every call.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from ._arguments import check_integer
from ._block_probe import check_block_step, check_layer_inputs, check_same_batch
from ._lifts import stack_lifts
from ._options import BatchMode, Remat, StackOptions, require_options
from .errors import ArgumentTypeError, EnsembleSizeError, UnsplitRngError

__all__ = ["NNXSplitApply", "NNXStack", "nnx_split_apply", "nnx_stack"]


class NNXStack(nnx.Module):
    """N NNX blocks stacked on a leading layer axis (``(B, N, ...)`` for an ensemble).

    Build it with :func:`nnx_stack`. Call it as ``stack(carry, xs=None)``; it
    returns ``(carry, ys)`` exactly as the Linen stack of the same options does.
    RNG streams the blocks hold (``nnx.Dropout(rngs=...)``) are split per layer at
    creation; at each call, example ``b`` draws from ``fold_in(layer_key, b)`` and
    the streams' counts advance, so the next call draws anew.
    """

    def __init__(self, layers: nnx.Module, options: StackOptions, batch_size: int | None):
        self.layers = layers
        self.options = options
        self.batch_size = batch_size

    def __call__(self, carry, xs=None):
        options = self.options
        lifts = stack_lifts(options)
        xs_per_example = lifts.xs_axis() == 0
        num_layers = options.num_layers
        check_same_batch(carry, xs, batched=lifts.batched, xs_per_example=xs_per_example)
        check_layer_inputs(xs, num_layers=num_layers, xs_per_example=xs_per_example)
        batch = jax.tree_util.tree_leaves(carry)[0].shape[0] if lifts.batched else None
        if options.batch is BatchMode.ENSEMBLE and batch != self.batch_size:
            raise EnsembleSizeError(self.batch_size, batch)
        if num_layers == 0:  # the identity, as linen_stack gives it
            return carry, None
        self._check_step(carry, xs, lifts)
        index = jnp.arange(num_layers, dtype=jnp.int32)

        def step(layer, c, x, i, b):
            # Each example draws from its own key: fold the example index into each
            # RNG stream's (per-layer) key for this call, then put the key back, so
            # the state leaving the vmap is not batched; the streams' counts advance.
            streams = _rng_streams(layer) if b is not None else []
            saved = [stream.key.get_value() for stream in streams]
            for stream, key in zip(streams, saved):
                stream.key.set_value(jax.random.fold_in(key, b))
            out = layer(c, x, i) if options.layer_index else layer(c, x)
            for stream, key in zip(streams, saved):
                stream.key.set_value(key)
            return out

        if options.remat is not Remat.NONE:
            step = nnx.remat(step, policy=options.remat.policy(), prevent_cse=False)
        # The same lifts as linen_stack: the scan's length, direction and unroll, and the
        # vmap's axes (the layers' state follows the params' axis, xs theirs).
        scan, vmap = lifts.scan, lifts.vmap
        scanned = nnx.scan(
            step,
            in_axes=(0, nnx.Carry, 0, 0, None),
            out_axes=(nnx.Carry, 0),
            length=scan["length"],
            reverse=scan.get("reverse", False),
            unroll=scan.get("unroll", 1),
        )
        if vmap is None:
            return scanned(self.layers, carry, xs, index, None)
        state_axes = nnx.StateAxes({...: lifts.batch_axis("params")})
        batched = nnx.vmap(
            scanned,
            in_axes=(state_axes, 0, lifts.xs_axis(), None, 0),
            out_axes=(0, 0),
            axis_size=batch,
            axis_name=vmap["axis_name"],
            spmd_axis_name=vmap.get("spmd_axis_name"),
        )
        return batched(self.layers, carry, xs, index, jnp.arange(batch, dtype=jnp.uint32))

    def _check_step(self, carry, xs, lifts) -> None:
        """Probe one layer abstractly (see :func:`check_block_step`)."""
        graphdef, state = nnx.split(self.layers)
        first = (0,) * lifts.leading_axes("params")

        shares_state = lifts.batched and lifts.batch_axis("params") is None

        def step(c, x, index):
            layer = nnx.merge(graphdef, jax.tree_util.tree_map(lambda a: a[first], state))
            out = layer(c, x, index) if self.options.layer_index else layer(c, x)
            # The vmap shares the layers' state across the batch: BatchNorm's statistics
            # updated per example (no axis_name) would have nowhere to go.
            stats = nnx.state(layer, nnx.BatchStat) if shares_state else {}
            return out, ({"batch_stats": stats} if jax.tree_util.tree_leaves(stats) else {})

        check_block_step(
            step,
            carry,
            xs,
            batched=lifts.batched,
            xs_per_example=lifts.xs_axis() == 0,
            axis_name=self.options.batch_axis_name,
            per_example_state=False,
        )


def _rng_streams(module: nnx.Module) -> list[nnx.RngStream]:
    return [node for _, node in nnx.iter_graph(module) if isinstance(node, nnx.RngStream)]


def nnx_stack(
    make_block: Callable[[nnx.Rngs], nnx.Module],
    options: StackOptions,
    *,
    rngs: nnx.Rngs,
    batch_size: int | None = None,
) -> NNXStack:
    """Create ``options.num_layers`` NNX blocks with ``make_block(rngs)``, stacked for a scan.

    ``make_block`` builds one layer from an ``nnx.Rngs`` (its keys are split per
    layer, and per ensemble member for ``BatchMode.ENSEMBLE``, which needs
    ``batch_size``). The block's ``__call__(carry, x)`` returns ``(carry, y)``.
    A block that draws random numbers must keep a stream of its own
    (``self.dropout = rngs.dropout.fork()``, as ``nnx.Dropout`` does); one that keeps
    the ``rngs`` object it was given would share one unsplit stream across layers,
    which is refused (:class:`~composed_lifts.errors.UnsplitRngError`).

    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from composed_lifts import nnx_stack, StackOptions
    >>> class Layer(nnx.Module):
    ...     def __init__(self, rngs):
    ...         self.Dense_0 = nnx.Linear(8, 8, rngs=rngs)
    ...     def __call__(self, x, _):
    ...         return nnx.relu(self.Dense_0(x)), None
    >>> stack = nnx_stack(Layer, StackOptions(num_layers=4), rngs=nnx.Rngs(0))
    >>> stack.layers.Dense_0.kernel.shape
    (4, 8, 8)
    >>> final, ys = stack(jnp.ones((3, 8)))
    >>> final.shape
    (3, 8)
    """
    if not callable(make_block):
        raise ArgumentTypeError(
            "make_block",
            "a callable that takes an nnx.Rngs and returns an nnx.Module",
            repr(make_block),
            "e.g. the block class itself, or lambda rngs: Block(64, rngs=rngs)",
        )
    require_options(options)
    if not isinstance(rngs, nnx.Rngs):
        raise ArgumentTypeError("rngs", "an nnx.Rngs", repr(rngs), "e.g. nnx.Rngs(0)")
    if options.batch is BatchMode.ENSEMBLE:
        if batch_size is None:
            raise ArgumentTypeError(
                "batch_size",
                "the number of members (an NNX ensemble creates one stack per example eagerly)",
                "None",
                "nnx_stack(..., batch_size=B)",
            )
        batch_size = check_integer("batch_size", batch_size, minimum=1)
        splits: tuple[int, ...] = (batch_size, options.num_layers)
    else:
        splits = (options.num_layers,)

    def create(r):
        return make_block(r)

    # Each vmap adds a leading axis; transform_metadata adds its name to the params'
    # sharding metadata too, so that metadata and array keep the same rank.
    names: tuple[str | None, ...] = (options.layer_axis_name,)
    if options.batch is BatchMode.ENSEMBLE:
        names = (options.batch_axis_name, *names)
    for size, name in zip(reversed(splits), reversed(names)):
        create = nnx.vmap(
            create,
            in_axes=(0,),
            out_axes=0,
            axis_size=size,
            transform_metadata={nnx.PARTITION_NAME: name},
        )
    layers = nnx.split_rngs(splits=splits)(create)(rngs)
    if not isinstance(layers, nnx.Module):
        raise ArgumentTypeError("make_block's result", "an nnx.Module", type(layers).__name__)
    for path, stream in nnx.iter_graph(layers):
        if isinstance(stream, nnx.RngStream) and stream.key.shape[: len(splits)] != splits:
            where = ".".join(str(p) for p in path)
            raise UnsplitRngError(where, stream.key.shape, splits)
    _shard_as_named(layers)
    return NNXStack(layers, options, batch_size)


def _shard_as_named(layers: nnx.Module) -> None:
    """Under a mesh, place every variable that has sharding metadata as the metadata says.

    NNX shards a variable when it is created (eager sharding), inside the vmaps that
    stack the layers; the vmaps then add the stacked axes' names to the metadata but
    not to the arrays' shardings (an ensemble's member axis stays unsplit), so the two
    would disagree. Resharding once here makes the arrays follow the metadata.
    """
    if jax.sharding.get_abstract_mesh().empty:
        return
    for _, var in nnx.iter_graph(layers):
        if isinstance(var, nnx.Variable) and var.get_metadata().get("out_sharding"):
            spec = nnx.get_partition_spec(var).get_value()
            var.set_value(jax.lax.with_sharding_constraint(var.get_value(), spec))


class NNXSplitApply:
    """The compiled call of an :class:`NNXStack`, split once (made by :func:`nnx_split_apply`).

    ``apply(state, carry, xs=None)`` returns ``((carry, ys), new_state)``; pass the
    new state to the next call (it carries the advanced RNG counts).
    ``apply.merge(state)`` gives the module back. The state is a pair of flat
    lists of arrays, ``(params, rest)``: ``nnx.State`` and its ``Param`` nodes
    are Python pytree nodes, and flattening them on every call costs about as
    much as the whole forward at small sizes, so they are flattened once, here.
    """

    def __init__(self, stack: nnx.Module):
        graphdef, params, rest = nnx.split(stack, nnx.Param, ...)  # type: ignore[misc]
        param_leaves, self._params_def = jax.tree_util.tree_flatten(params)
        rest_leaves, self._rest_def = jax.tree_util.tree_flatten(rest)
        self._graphdef = graphdef
        self.initial_state = (param_leaves, rest_leaves)
        self._run = jax.jit(self._call)

    def merge(self, state) -> nnx.Module:
        """The module holding ``state`` (a copy; the state's arrays are shared)."""
        params, rest = state
        return nnx.merge(
            self._graphdef,
            jax.tree_util.tree_unflatten(self._params_def, params),
            jax.tree_util.tree_unflatten(self._rest_def, rest),
            copy=True,
        )

    def _call(self, params, rest, carry, xs):
        module = self.merge((params, rest))
        out = module(carry, xs)
        new_rest = nnx.state(module, nnx.Not(nnx.Param))
        return out, jax.tree_util.tree_leaves(new_rest)

    def __call__(self, state, carry, xs=None):
        params, rest = state
        out, rest = self._run(params, rest, carry, xs)
        return out, (params, rest)


def nnx_split_apply(stack: nnx.Module) -> tuple[NNXSplitApply, tuple]:
    """Split ``stack`` once and return ``(apply, state)`` for fast jitted calls.

    This is the split/merge pattern under ``jax.jit``: the graph is traversed
    once, here, instead of on every call as ``nnx.jit`` does by default; only the
    non-param state (RNG counts) is returned from the compiled call, so params are
    never copied; and the state travels as flat lists of arrays. See
    :class:`NNXSplitApply`.

    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from composed_lifts import StackOptions, nnx_split_apply, nnx_stack
    >>> class Layer(nnx.Module):
    ...     def __init__(self, rngs):
    ...         self.Dense_0 = nnx.Linear(4, 4, rngs=rngs)
    ...     def __call__(self, x, _):
    ...         return nnx.relu(self.Dense_0(x)), None
    >>> apply, state = nnx_split_apply(nnx_stack(Layer, StackOptions(num_layers=3), rngs=nnx.Rngs(0)))
    >>> (final, ys), state = apply(state, jnp.ones((2, 4)))
    >>> final.shape, apply.merge(state).layers.Dense_0.kernel.shape
    ((2, 4), (3, 4, 4))
    """
    apply = NNXSplitApply(stack)
    return apply, apply.initial_state
