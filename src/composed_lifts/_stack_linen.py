"""``linen_stack``: lift any Linen block into a stack scanned over layers, vmapped over a batch.

The result of ``linen_stack(Block, options)`` is a Linen module class with the
block's fields, called as ``stack(carry, xs=None)`` and equal to this loop
(``BatchMode.SHARED``, one set of params ``p[i]`` per layer, shared by all
examples)::

    for b in range(B):                  # nn.vmap, params shared across b
        c = carry[b]
        for i in range(N):              # nn.scan over the layer axis
            c, y[b, i] = Block(**fields).apply(p[i], c, xs[i])
        final[b] = c
    return final, y                     # (B, ...), (B, N, ...)

It is built as ``nn.vmap(nn.scan(Block))`` with the ``variable_axes`` /
``split_rngs`` pairs that :class:`~composed_lifts.StackOptions` spells out, so
``linen_stack(Block, StackOptions(num_layers=N))`` is exactly the seed's recipe.
"""

from __future__ import annotations

import dataclasses

import flax.errors
import flax.linen as nn
import jax
import jax.numpy as jnp

from ._checks import check_block_step, check_layer_inputs, check_same_batch
from ._errors import ArgumentTypeError, MissingRngError
from ._options import BatchMode, LayerInputs, Remat, StackOptions

__all__ = ["linen_stack"]


def _block_fields(block: type[nn.Module], module: nn.Module) -> dict:
    return {
        f.name: getattr(module, f.name)
        for f in dataclasses.fields(block)
        if f.init and f.name not in ("parent", "name")
    }


def _one_layer_variables(variables, options: StackOptions) -> dict:
    """Variables of one layer of one example: index 0 on the axes the lifts added.

    Used only inside ``jax.eval_shape``, so the indexing computes nothing.
    """
    vmap_axes = options.vmap_variable_axes()

    def lead(collection: str) -> int:
        if options.batch is BatchMode.NONE:
            return 1
        axis = vmap_axes.get(collection, vmap_axes[True])
        return 2 if axis == 0 else 1

    def first(a, n):  # layer 0 of example 0 (zeros when an axis is empty)
        if 0 in a.shape[:n]:
            return jnp.zeros(a.shape[n:], a.dtype)
        return a[(0,) * n]

    out = {}
    for name, tree in variables.items():
        n = lead(name)
        out[name] = jax.tree_util.tree_map(lambda a, n=n: first(a, n), tree)
    return out


def _check_linen_step(stack: nn.Module, block, carry, xs, options: StackOptions) -> None:
    """Run :func:`check_block_step` on a fresh copy of ``block`` with the stack's fields."""
    init = stack.is_initializing()
    provided = set(stack.scope.rngs) | {"params"}
    keys = {name: jax.random.PRNGKey(0) for name in provided}
    fields = _block_fields(block, stack)

    if init:

        def step(c, x, index):
            args = (c, x, index) if options.layer_index else (c, x)
            out, _ = block(**fields, parent=None).init_with_output(keys, *args)
            return out

    else:  # apply one layer's slice of the stack's own variables, with the call's rngs only
        if "params" not in stack.scope.rngs:
            keys.pop("params")
        variables = stack.variables

        def step(c, x, index):
            args = (c, x, index) if options.layer_index else (c, x)
            one_layer = _one_layer_variables(variables, options)
            out, _ = block(**fields, parent=None).apply(one_layer, *args, rngs=keys, mutable=True)
            return out

    try:
        check_block_step(step, carry, xs, options)
    except flax.errors.InvalidRngError as err:
        phase = "init" if init else "apply"
        given = sorted(provided if init else provided - {"params"})
        raise MissingRngError(
            f"the block asks for an RNG stream that this {phase} call does not provide (it "
            f"provides {given}); Flax says: {err}. Pass the stream to {phase}, e.g. "
            f"model.{phase}(..., rngs={{'dropout': jax.random.PRNGKey(1)}}), or make the block "
            f"deterministic"
        ) from None


def linen_stack(block: type[nn.Module], options: StackOptions) -> type[nn.Module]:
    """Lift ``block`` into a stack of ``options.num_layers`` layers, batched per ``options.batch``.

    ``block`` is a Linen module class whose ``__call__(carry, x)`` returns
    ``(carry, y)`` (``y`` may be ``None``); with ``options.layer_index`` it is
    called as ``block(carry, x, index)``. The returned class takes the block's
    fields and is called as ``stack(carry, xs=None)``, returning ``(carry, ys)``
    with ``ys`` stacked to ``(B, N, ...)`` (``(N, ...)`` without a batch).

    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> from composed_lifts import linen_stack, StackOptions
    >>> class Residual(nn.Module):
    ...     width: int
    ...     @nn.compact
    ...     def __call__(self, x, _):
    ...         return x + nn.Dense(self.width)(nn.LayerNorm()(x)), None
    >>> Stack = linen_stack(Residual, StackOptions(num_layers=6))
    >>> model = Stack(width=16)
    >>> x = jnp.ones((4, 16))                       # a batch of 4 examples
    >>> variables = model.init(jax.random.PRNGKey(0), x)
    >>> jax.tree_util.tree_map(jnp.shape, variables["params"]["Dense_0"])
    {'bias': (6, 16), 'kernel': (6, 16, 16)}
    >>> final, ys = model.apply(variables, x)
    >>> final.shape, ys
    ((4, 16), None)
    """
    if not (isinstance(block, type) and issubclass(block, nn.Module)):
        raise ArgumentTypeError(
            f"block must be a Linen module class (a subclass of flax.linen.Module), got "
            f"{block!r}; for a Flax NNX module use nnx_stack, for a function use scan_layers"
        )
    if not isinstance(options, StackOptions):
        raise ArgumentTypeError(
            f"options must be a StackOptions, got {options!r}; e.g. StackOptions(num_layers=4)"
        )
    num_layers = options.num_layers
    target = block
    if options.remat is not Remat.NONE:
        target = nn.remat(target, policy=options.remat.policy(), prevent_cse=False)
    scan_metadata = {nn.PARTITION_NAME: options.layer_axis_name} if options.layer_axis_name else {}
    lifted = nn.scan(
        target,
        variable_axes={True: 0},
        split_rngs={True: True},
        length=num_layers,
        in_axes=(0, 0) if options.layer_index else 0,
        out_axes=0,
        reverse=options.reverse,
        unroll=options.unroll,
        metadata_params=scan_metadata,
    )
    if options.batch is not BatchMode.NONE:
        xs_axis = 0 if options.layer_inputs is LayerInputs.PER_EXAMPLE else None
        lifted = nn.vmap(
            lifted,
            in_axes=(0, xs_axis, None) if options.layer_index else (0, xs_axis),
            out_axes=0,
            variable_axes=options.vmap_variable_axes(),
            split_rngs=options.vmap_split_rngs(),
            axis_name=options.batch_axis_name,
            metadata_params={nn.PARTITION_NAME: options.batch_axis_name},
        )

    class Stack(lifted):
        def __call__(self, carry, xs=None):
            check_same_batch(carry, xs, options)
            check_layer_inputs(xs, options)
            _check_linen_step(self, block, carry, xs, options)
            args = (carry, xs)
            if options.layer_index:
                args += (jnp.arange(num_layers, dtype=jnp.int32),)
            return super().__call__(*args)

    Stack.__name__ = Stack.__qualname__ = f"{block.__name__}Stack"
    Stack.__doc__ = (
        f"{num_layers} layers of {block.__name__}, {options.batch.name.lower()} params across "
        f"the batch (built by composed_lifts.linen_stack with {options!r})."
    )
    return Stack
