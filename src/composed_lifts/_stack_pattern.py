"""``linen_pattern_stack``: a stack whose layers repeat a pattern of block kinds, in two scans.

``linen_pattern_stack(blocks, pattern, options)`` stacks N layers where layer
``i`` is the block of kind ``pattern.kind(i)``. It is built from two
:func:`~composed_lifts.linen_stack` stacks of a *group*, a module that applies
kinds in order: one scan over the R = N // k repeats of the whole period (k
kinds per step), then one scan of length 1 over the r = N % k layers left over
(the period's first r kinds). Params follow the layout documented in
:mod:`composed_lifts._pattern` (``repeats/kind_j``, ``remainder/kind_j``). It
equals this loop (``BatchMode.SHARED``)::

    for b in range(B):
        c = carry[b]
        for i in range(N):
            kind = pattern.kind(i)
            c, y[b, i] = blocks[kind].apply(params of layer i, c, xs[i])   # (c, xs[i], i)
        final[b] = c                                                       # with layer_index

with every :class:`~composed_lifts.StackOptions` setting meaning what it means
for ``linen_stack``: the batch modes, ``layer_inputs``, ``reverse``, ``unroll``
(of the repeats' scan), ``remat`` (of each block), the axis names, and
``layer_index``, which passes the true layer index ``i``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ._block_probe import check_layer_inputs, check_same_batch, leaf_type
from ._block_spec import BlockSpec
from ._lifts import stack_lifts
from ._options import LayerInputs, Remat, StackOptions, require_options
from ._pattern import REMAINDER, LayerPattern, kind_key
from ._stack_linen import linen_stack
from .errors import ArgumentRangeError, ArgumentTypeError, KindOutputsError, PatternKindsError

__all__ = [
    "block_spec",
    "check_kinds",
    "join_layers",
    "linen_pattern_stack",
    "part_options",
    "pattern_stack_class",
    "require_pattern",
    "split_layers",
    "stack_kinds",
]


def require_pattern(pattern: Any, options: StackOptions) -> LayerPattern:
    """``pattern`` checked to be a :class:`LayerPattern` of ``options.num_layers`` layers."""
    if not isinstance(pattern, LayerPattern):
        raise ArgumentTypeError(
            "pattern",
            "a LayerPattern",
            repr(pattern),
            "e.g. LayerPattern.from_layer_types(config.layer_types)",
        )
    require_options(options)
    if options.num_layers != pattern.num_layers:
        raise ArgumentRangeError(
            "options.num_layers",
            f"pattern.num_layers = {pattern.num_layers}",
            options.num_layers,
            "give both the same number of layers",
        )
    return pattern


def check_kinds(argument: str, given: Mapping, pattern: LayerPattern) -> None:
    """``given`` has exactly one entry per kind label of ``pattern``."""
    if not isinstance(given, Mapping):
        raise ArgumentTypeError(
            argument,
            "a mapping from each kind label of the pattern to its block",
            repr(given),
            'e.g. {"sliding": Local(), "full": Global()}',
        )
    kinds = list(dict.fromkeys(pattern.period))
    missing = [k for k in kinds if k not in given]
    unexpected = [str(k) for k in given if k not in kinds]
    if missing or unexpected:
        raise PatternKindsError(argument, missing, unexpected, kinds)


def part_options(options: StackOptions, length: int) -> StackOptions:
    """The options of one part's ``linen_stack`` / ``nnx_stack``: its length, and no remat
    (each block inside the group is rematerialised instead, as ``options.remat`` says)."""
    return dataclasses.replace(options, num_layers=length, remat=Remat.NONE)


def _layer_axis(options: StackOptions) -> int:
    """The layer axis of ``xs`` (and of ``ys`` when batched): 1 after a batch axis."""
    return 1 if options.layer_inputs is LayerInputs.PER_EXAMPLE else 0


def split_layers(xs, start: int, length: int, count: int, axis: int):
    """Layers ``start .. start + length * count - 1`` of ``xs`` as ``(length, count, ...)`` on
    ``axis``: what one part's scan takes (``x[r, j]`` is layer ``start + r * count + j``)."""
    if xs is None:
        return None

    def take(a):
        part = jax.lax.slice_in_dim(a, start, start + length * count, axis=axis)
        return part.reshape(a.shape[:axis] + (length, count) + a.shape[axis + 1 :])

    return jax.tree_util.tree_map(take, xs)


def join_layers(parts: list, axis: int):
    """The parts' ys ``(length, count, ...)`` on ``axis``, in layer order: ``(N, ...)``."""
    if not parts or parts[0] is None:
        return None

    def merge(a):
        return a.reshape(
            a.shape[:axis] + (a.shape[axis] * a.shape[axis + 1],) + a.shape[axis + 2 :]
        )

    flat = [jax.tree_util.tree_map(merge, y) for y in parts]
    return jax.tree_util.tree_map(lambda *a: jnp.concatenate(a, axis=axis), *flat)


def _y_text(y) -> str:
    if y is None:
        return "None"
    return str(jax.tree_util.tree_map(lambda a: leaf_type(jnp.shape(a), jnp.result_type(a)), y))


def stack_kinds(ys: list, labels: tuple[str, ...]):
    """The kinds' ys of one group step stacked on a new axis 0 (``None`` if all are ``None``)."""
    first = _y_text(ys[0])
    for label, y in zip(labels[1:], ys[1:]):
        if _y_text(y) != first:
            raise KindOutputsError(label, _y_text(y), labels[0], first)
    if ys[0] is None:
        return None
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *ys)


def run_group(
    call: Callable[[int, Any, Any, Any], tuple[Any, Any]],
    labels: tuple[str, ...],
    carry,
    x,
    index,
    *,
    first: int,
    size: int,
    options: StackOptions,
):
    """One step of a part's scan: the kinds applied in order (reversed under ``reverse``).

    ``call(j, carry, x_j, true_index)`` applies the j-th kind; ``index`` is the step's
    repeat index (or ``None`` without ``layer_index``), so layer ``j`` of the step is
    the true layer ``first + index * size + j``.
    """
    count = len(labels)
    ys: list = [None] * count
    order = reversed(range(count)) if options.reverse else range(count)
    for j in order:
        x_j = None if x is None else jax.tree_util.tree_map(lambda a, j=j: a[j], x)
        true_index = None if index is None else first + index * size + j
        carry, ys[j] = call(j, carry, x_j, true_index)
    return carry, stack_kinds(ys, labels)


def block_spec(argument: str, block) -> BlockSpec:
    if isinstance(block, type) and issubclass(block, nn.Module):
        try:
            block = block()
        except TypeError as err:
            raise ArgumentTypeError(
                argument,
                "a Linen module instance with its field values",
                f"the class {block.__name__}, which needs field values ({err})",
                f"pass an instance, e.g. {block.__name__}(features=8)",
            ) from None
    if not isinstance(block, nn.Module):
        raise ArgumentTypeError(
            argument,
            "a Linen module instance (its fields set) or a class without required fields",
            repr(block),
            "for Flax NNX blocks use nnx_pattern_stack",
        )
    return BlockSpec.of(block)


def _group(
    specs: tuple[BlockSpec, ...],
    labels: tuple[str, ...],
    *,
    first: int,
    size: int,
    options: StackOptions,
) -> type[nn.Module]:
    """A module applying ``specs`` in order as children ``kind_0, kind_1, ...``."""
    classes = [spec.cls for spec in specs]
    if options.remat is not Remat.NONE:
        policy = options.remat.policy()
        classes = [nn.remat(cls, policy=policy, prevent_cse=False) for cls in classes]

    class Group(nn.Module):
        @nn.compact
        def __call__(self, carry, x, index=None):
            def call(j, c, x_j, true_index):
                block = classes[j](**dict(specs[j].fields), name=kind_key(j))
                return block(c, x_j) if true_index is None else block(c, x_j, true_index)

            return run_group(call, labels, carry, x, index, first=first, size=size, options=options)

    Group.__name__ = Group.__qualname__ = "".join(dict.fromkeys(s.name for s in specs)) + "Group"
    return Group


def linen_pattern_stack(
    blocks: Mapping[str, nn.Module | type[nn.Module]],
    pattern: LayerPattern,
    options: StackOptions,
) -> type[nn.Module]:
    """Stack ``pattern.num_layers`` layers, layer ``i`` of the kind ``pattern.kind(i)``.

    ``blocks`` maps each kind label to a Linen block, an instance with its fields
    set (``Block(features=8, window=4)``) or a class without required fields;
    each is called as ``block(carry, x)`` (``block(carry, x, index)`` with
    ``options.layer_index``, ``index`` the true layer index) and returns
    ``(carry, y)``, every kind the same kind of ``y``. ``options.num_layers``
    must equal ``pattern.num_layers``. The returned class takes no fields and is
    called as ``stack(carry, xs=None)``, returning ``(carry, ys)``, ``ys`` stacked
    to ``(B, N, ...)``. Params: see :mod:`composed_lifts._pattern`.

    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> from composed_lifts import LayerPattern, StackOptions, linen_pattern_stack
    >>> class Mix(nn.Module):
    ...     width: int = 4
    ...     @nn.compact
    ...     def __call__(self, x, _):
    ...         return x + nn.Dense(self.width)(x), None
    >>> pattern = LayerPattern(period=("a", "a", "b"), num_layers=7)    # a a b a a b a
    >>> Stack = linen_pattern_stack({"a": Mix(), "b": Mix(width=4)}, pattern,
    ...                             StackOptions(num_layers=7))
    >>> variables = Stack().init(jax.random.PRNGKey(0), jnp.ones((2, 4)))
    >>> jax.tree_util.tree_map(jnp.shape, variables["params"]["repeats"]["kind_2"])
    {'Dense_0': {'bias': (2, 4), 'kernel': (2, 4, 4)}}
    >>> sorted(variables["params"]["remainder"])
    ['kind_0']
    """
    require_pattern(pattern, options)
    check_kinds("blocks", blocks, pattern)
    specs = {label: block_spec(f"blocks[{label!r}]", block) for label, block in blocks.items()}
    return pattern_stack_class(specs, pattern, options)


def pattern_stack_class(
    specs: Mapping[str, BlockSpec],
    pattern: LayerPattern,
    options: StackOptions,
    lengths: Mapping[str, int] | None = None,
) -> type[nn.Module]:
    """The class :func:`linen_pattern_stack` returns, for checked ``specs``.

    ``lengths`` overrides the length of a part's scan (the doctor evaluates the
    stack again with longer scans to find which axes are layer axes); called
    with ``xs=None`` only then.
    """
    lifts = stack_lifts(options)
    batched, xs_per_example = lifts.batched, lifts.xs_axis() == 0
    axis = _layer_axis(options)
    ys_axis = 1 if batched else 0
    parts = []
    for part, length, count in pattern.parts():
        length = (lengths or {}).get(part, length)
        labels = pattern.period[:count]
        first = pattern.first_layer(part)
        group = _group(
            tuple(specs[label] for label in labels),
            labels,
            first=first,
            size=pattern.size,
            options=options,
        )
        parts.append(
            (part, first, length, count, linen_stack(group, part_options(options, length)))
        )
    if options.reverse:  # the remainder's layers come last, so they run first
        parts.reverse()
    num_layers = pattern.num_layers

    class PatternStack(nn.Module):
        @nn.compact
        def __call__(self, carry, xs=None):
            check_same_batch(carry, xs, batched=batched, xs_per_example=xs_per_example)
            check_layer_inputs(xs, num_layers=num_layers, xs_per_example=xs_per_example)
            ys = {}
            for part, first, length, count, stack in parts:
                x_part = split_layers(xs, first, length, count, axis)
                carry, ys[part] = stack(name=part)(carry, x_part)
            in_order = [ys[part] for part, *_ in sorted(parts, key=lambda p: p[0] == REMAINDER)]
            return carry, join_layers(in_order, ys_axis)

    names = "".join(dict.fromkeys(spec.name for spec in specs.values()))
    PatternStack.__name__ = PatternStack.__qualname__ = f"{names}PatternStack"
    PatternStack.__doc__ = (
        f"{num_layers} layers of the pattern {pattern.period}, {options.batch.name.lower()} "
        f"params across the batch (built by composed_lifts.linen_pattern_stack)."
    )
    return PatternStack
