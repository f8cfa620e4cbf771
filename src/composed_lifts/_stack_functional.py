"""The stack as plain functions: ``scan_layers`` (the definition) and ``unroll_layers`` (the loop).

``scan_layers`` is ``jax.lax.scan`` over stacked params inside ``jax.vmap`` over
the batch; ``unroll_layers`` is a Python loop over N separately named layers
(``layers_0 ... layers_{N-1}``, see :func:`composed_lifts.unstack_params`) and
over the examples. Both take a ``layer_fn(params_i, carry, x_i) -> (carry, y)``
(``layer_fn(params_i, carry, x_i, i)`` with ``options.layer_index``), e.g.
``lambda p, c, x: Block(features=F).apply(p, c, x)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ._layout._form import layer_names
from ._options import BatchMode, LayerInputs, Remat, StackOptions, require_options
from .errors import ArgumentRangeError

__all__ = ["scan_layers", "unroll_layers"]


def _stack_trees(trees):
    if not trees or trees[0] is None:
        return None
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *trees)


def scan_layers(
    layer_fn: Callable[..., tuple[Any, Any]],
    params: Any,
    carry: Any,
    xs: Any = None,
    *,
    options: StackOptions,
) -> tuple[Any, Any]:
    """Apply N layers with ``jax.lax.scan`` over ``params`` (leading axis N), batched by ``jax.vmap``.

    This is the stack's definition, small enough to read::

        def one_example(params, carry, xs):
            def body(c, inputs):
                p, x, i = inputs
                return layer_fn(p, c, x)             # (c, y)
            return jax.lax.scan(body, carry, (params, xs, jnp.arange(N)))
        # SHARED: params broadcast, ENSEMBLE: params (B, N, ...) mapped
        return jax.vmap(one_example, in_axes=(None or 0, 0, None or 0))(params, carry, xs)

    >>> import jax.numpy as jnp
    >>> from composed_lifts import scan_layers, StackOptions
    >>> w = jnp.stack([2.0 * jnp.eye(2), 3.0 * jnp.eye(2)])       # N=2 layers
    >>> final, ys = scan_layers(lambda p, c, x: (c @ p, None), w, jnp.ones((4, 2)),
    ...                         options=StackOptions(num_layers=2))
    >>> final[0]
    Array([6., 6.], dtype=float32)
    """
    require_options(options)
    num_layers = options.num_layers
    index = jnp.arange(num_layers, dtype=jnp.int32)

    def body(c, inputs):
        p, x, i = inputs
        return layer_fn(p, c, x, i) if options.layer_index else layer_fn(p, c, x)

    if options.remat is not Remat.NONE:
        body = jax.checkpoint(body, policy=options.remat.policy(), prevent_cse=False)

    def one_example(p, c, x):
        return jax.lax.scan(
            body,
            c,
            (p, x, index),
            length=num_layers,
            reverse=options.reverse,
            unroll=options.unroll,
        )

    if options.batch is BatchMode.NONE:
        return one_example(params, carry, xs)
    in_axes = (
        0 if options.batch is BatchMode.ENSEMBLE else None,
        0,
        0 if options.layer_inputs is LayerInputs.PER_EXAMPLE else None,
    )
    return jax.vmap(one_example, in_axes=in_axes, axis_name=options.batch_axis_name)(
        params, carry, xs
    )


def unroll_layers(
    layer_fn: Callable[..., tuple[Any, Any]],
    layers: Mapping[str, Any],
    carry: Any,
    xs: Any = None,
    *,
    options: StackOptions,
) -> tuple[Any, Any]:
    """The reference loop: ``layers`` maps ``"layers_0" ... "layers_{N-1}"`` to each layer's params.

    For ``BatchMode.SHARED`` every example uses the same ``layers``; for
    ``ENSEMBLE`` each leaf has a leading batch axis. Loops over examples and
    layers in Python (no vmap, no scan), then stacks ``ys`` to ``(B, N, ...)``::

        for b in range(B):
            c = carry[b]
            for i in (reversed(range(N)) if reverse else range(N)):
                c, y[b][i] = layer_fn(layers[layer_name(i)], c, xs[i])
    """
    require_options(options)
    num_layers = options.num_layers
    names = layer_names(layers, num_layers)
    order = list(reversed(range(num_layers))) if options.reverse else list(range(num_layers))

    def run(per_layer, c, x_all):
        ys = [None] * num_layers
        for i in order:
            x_i = jax.tree_util.tree_map(lambda a, i=i: a[i], x_all)
            args = (per_layer[names[i]], c, x_i)
            if options.layer_index:
                args += (jnp.asarray(i, jnp.int32),)
            c, ys[i] = layer_fn(*args)
        return c, _stack_trees(ys)

    if options.batch is BatchMode.NONE:
        return run(layers, carry, xs)
    batch = jax.tree_util.tree_leaves(carry)[0].shape[0]
    outs = []
    for b in range(batch):
        pick = lambda tree, b=b: jax.tree_util.tree_map(lambda a: a[b], tree)  # noqa: E731
        per_layer = pick(layers) if options.batch is BatchMode.ENSEMBLE else layers
        x_b = pick(xs) if options.layer_inputs is LayerInputs.PER_EXAMPLE else xs
        outs.append(run(per_layer, pick(carry), x_b))
    if not outs:
        raise ArgumentRangeError("carry", "a batch of at least one example", "an empty batch")
    finals = _stack_trees([o[0] for o in outs])
    ys = _stack_trees([o[1] for o in outs])
    return finals, ys
