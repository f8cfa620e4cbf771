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

from typing import Any

import flax.errors
import flax.linen as nn
import jax
import jax.numpy as jnp

from ._block_probe import check_block_step, check_layer_inputs, check_same_batch, drop_axis
from ._block_spec import field_values
from ._lifts import Lifts, stack_lifts
from ._options import Remat, StackOptions, require_options
from .errors import ArgumentTypeError, EnsembleSizeError, LayoutMismatchError, MissingRngError

__all__ = ["linen_stack"]


def _one_layer(tree, lead: int):
    """Layer 0 of example 0 of every leaf: index 0 on the ``lead`` axes the lifts added.

    Used only inside ``jax.eval_shape``, so the indexing computes nothing.
    """

    def first(a):  # zeros when an axis is empty
        if 0 in a.shape[:lead]:
            return jnp.zeros(a.shape[lead:], a.dtype)
        return a[(0,) * lead]

    return jax.tree_util.tree_map(first, tree)


def _drop_leading(tree, count: int):
    """Abstract leaves without their first ``count`` axes (one example, one layer)."""
    return jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct(jnp.shape(a)[count:], jnp.result_type(a)), tree
    )


def _one_example(tree, batched: bool):
    """Abstract leaves with the batch axis (axis 0) resized to 1, when ``batched``."""
    if not batched:
        return tree
    return jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct((1, *jnp.shape(a)[1:]), jnp.result_type(a)), tree
    )


def _check_variables(variables, one_layer, lifts: Lifts, batch: int, num_layers: int) -> None:
    """The stack's variables have the layout these lifts make: lifted axes, then one layer's."""
    for collection, tree in variables.items():
        if collection not in one_layer:
            continue
        # linen_stack builds nn.vmap(nn.scan(block)): the batch axis (if any), then the layers
        want_lead: tuple[int, ...] = ()
        if lifts.batch_axis(collection) is not None:
            want_lead += (batch,)
        if lifts.layer_axis(collection) is not None:
            want_lead += (num_layers,)
        got = jax.tree_util.tree_flatten_with_path(nn.meta.unbox(tree))[0]
        want = jax.tree_util.tree_leaves(nn.meta.unbox(one_layer[collection]))
        if len(got) != len(want):
            continue  # a different tree: Flax names the missing or unexpected variable
        for (path, leaf), ref in zip(got, want):
            shape, own = tuple(leaf.shape), tuple(ref.shape)
            if collection != "params":  # state may outgrow a fresh init's (a KV cache sized
                own = shape[len(want_lead) :]  # for the whole sequence): check the lifted axes
            expected = want_lead + own
            if shape == expected:
                continue
            members = collection == "params" and lifts.batch_axis("params") == 0
            if members and len(shape) == len(expected) and shape[1:] == expected[1:]:
                raise EnsembleSizeError(shape[0], batch)
            raise LayoutMismatchError(
                "leaf",
                f"{collection}{jax.tree_util.keystr(path)}",
                f"this stack (lifted axes {want_lead}, then the block's own {own})",
                seen=f"of shape {shape}",
                expected=f"shape {expected}",
                fix="were these variables made by a stack with other StackOptions (batch, "
                "num_layers)? Initialise this stack, or convert the variables (stack_params / "
                "unstack_params)",
            )


def _check_linen_step(stack: nn.Module, block, carry, xs, options: StackOptions, lifts) -> None:
    """Run :func:`check_block_step` on a fresh copy of ``block`` with the stack's fields."""
    init = stack.is_initializing()
    scope = stack.scope
    assert scope is not None  # called from the bound stack's __call__
    provided = set(scope.rngs) | {"params"}
    keys = {name: jax.random.PRNGKey(0) for name in provided}
    fields = field_values(stack, block)

    def call_args(c, x, index):
        return (c, x, index) if options.layer_index else (c, x)

    if init:

        def step(c, x, index):
            out, _ = block(**fields, parent=None).init_with_output(keys, *call_args(c, x, index))
            return out, {}

    else:  # apply one layer's slice of the stack's own variables, with the call's rngs only
        if "params" not in scope.rngs:
            keys.pop("params")
        variables = stack.variables
        shared = [
            c
            for c in variables
            if c != "params" and lifts.batch_axis(c) is None and stack.is_mutable_collection(c)
        ]

        def step(c, x, index):
            one_layer = {
                name: _one_layer(tree, lifts.leading_axes(name)) for name, tree in variables.items()
            }
            out, state = block(**fields, parent=None).apply(
                one_layer, *call_args(c, x, index), rngs=keys, mutable=True
            )
            return out, {name: state[name] for name in shared if name in state}

    batched, xs_per_example = lifts.batched, lifts.xs_axis() == 0
    try:
        if not init:  # the variables given have the layout this stack makes
            batch = jax.tree_util.tree_leaves(carry)[0].shape[0] if batched else 0
            init_keys = {**keys, "params": jax.random.PRNGKey(0)}

            def init_one(c, x):
                index = jnp.zeros((), jnp.int32)
                return block(**fields, parent=None).init(init_keys, *call_args(c, x, index))

            if batched:  # under a vmap of one example, so that collectives find the axis
                init_one = jax.vmap(
                    init_one,
                    in_axes=(0, 0 if xs_per_example else None),
                    axis_name=options.batch_axis_name,
                )
            one_layer = jax.eval_shape(
                init_one,
                _one_example(carry, batched),
                _one_example(drop_axis(xs, 1 if xs_per_example else 0), xs_per_example),
            )
            if batched:
                one_layer = _drop_leading(one_layer, 1)
            _check_variables(stack.variables, one_layer, lifts, batch, options.num_layers)
        check_block_step(
            step,
            carry,
            xs,
            batched=batched,
            xs_per_example=xs_per_example,
            axis_name=options.batch_axis_name,
        )
    except flax.errors.InvalidRngError as err:
        phase = "init" if init else "apply"
        given = sorted(provided if init else provided - {"params"})
        raise MissingRngError(phase, given, str(err)) from None


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
            "block",
            "a Linen module class (a subclass of flax.linen.Module)",
            repr(block),
            "for a Flax NNX module use nnx_stack, for a function use scan_layers",
        )
    require_options(options)
    target: Any = block
    if options.remat is not Remat.NONE:
        target = nn.remat(target, policy=options.remat.policy(), prevent_cse=False)
    lifts = stack_lifts(options)
    lifted: Any = lifts.build(target)
    num_layers = options.num_layers
    xs_per_example = lifts.xs_axis() == 0

    class Stack(lifted):
        def __call__(self, carry, xs=None):
            check_same_batch(carry, xs, batched=lifts.batched, xs_per_example=xs_per_example)
            check_layer_inputs(xs, num_layers=num_layers, xs_per_example=xs_per_example)
            _check_linen_step(self, block, carry, xs, options, lifts)
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
