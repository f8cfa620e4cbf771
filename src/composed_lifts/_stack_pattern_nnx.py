"""``nnx_pattern_stack``: the pattern stack for Flax NNX blocks, on :func:`~composed_lifts.nnx_stack`.

The same two scans as :func:`~composed_lifts.linen_pattern_stack` (the R whole
periods, then the r layers left over), each an :class:`~composed_lifts.NNXStack`
of a group module whose attributes ``kind_0, kind_1, ...`` are the period's
blocks. The params sit under ``stack.layers`` in the Linen layout
(``layers.repeats.kind_j``, ``layers.remainder.kind_j``), so
:func:`~composed_lifts.nnx_to_linen` and :func:`~composed_lifts.linen_to_nnx` move
them between the two exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from flax import nnx

from ._arguments import check_integer
from ._block_probe import check_layer_inputs, check_same_batch
from ._lifts import stack_lifts
from ._options import BatchMode, Remat, StackOptions
from ._pattern import LayerPattern, kind_key
from ._stack_nnx import NNXStack, nnx_stack
from ._stack_pattern import (
    check_kinds,
    join_layers,
    part_options,
    require_pattern,
    run_group,
    split_layers,
)
from .errors import ArgumentTypeError

__all__ = ["NNXPatternStack", "nnx_pattern_stack"]


class _Group(nnx.Module):
    """One step of a part's scan: the blocks ``kind_0, kind_1, ...`` applied in order."""

    def __init__(
        self,
        blocks: list[nnx.Module],
        labels: tuple[str, ...],
        first: int,
        size: int,
        options: StackOptions,
    ):
        for j, block in enumerate(blocks):
            setattr(self, kind_key(j), block)
        self.labels, self.first, self.size, self.options = labels, first, size, options

    def __call__(self, carry, x, index=None):
        options = self.options

        def apply(block, c, x_j, *true_index):
            return block(c, x_j, *true_index)

        if options.remat is not Remat.NONE:
            apply = nnx.remat(apply, policy=options.remat.policy(), prevent_cse=False)

        def call(j, c, x_j, true_index):
            extra = () if true_index is None else (true_index,)
            return apply(getattr(self, kind_key(j)), c, x_j, *extra)

        return run_group(
            call, self.labels, carry, x, index, first=self.first, size=self.size, options=options
        )


class _Parts(nnx.Module):
    """The stacked groups: ``repeats`` and ``remainder`` (each present when it has layers)."""

    def __init__(self, parts: Mapping[str, nnx.Module]):
        for name, layers in parts.items():
            setattr(self, name, layers)


class NNXPatternStack(nnx.Module):
    """N NNX blocks of a repeating pattern, in two scans (build it with :func:`nnx_pattern_stack`).

    Called as ``stack(carry, xs=None)``; returns ``(carry, ys)`` as the Linen
    pattern stack of the same options does. ``stack.layers`` holds the params in
    the layout of :mod:`composed_lifts._pattern`.
    """

    def __init__(
        self,
        layers: _Parts,
        pattern: LayerPattern,
        options: StackOptions,
        batch_size: int | None,
    ):
        self.layers = layers
        self.pattern, self.options, self.batch_size = pattern, options, batch_size

    def __call__(self, carry, xs=None):
        pattern, options = self.pattern, self.options
        lifts = stack_lifts(options)
        xs_per_example = lifts.xs_axis() == 0
        check_same_batch(carry, xs, batched=lifts.batched, xs_per_example=xs_per_example)
        check_layer_inputs(xs, num_layers=pattern.num_layers, xs_per_example=xs_per_example)
        axis = 1 if xs_per_example else 0
        ys = {}
        parts = list(pattern.parts())
        if options.reverse:
            parts.reverse()
        for part, length, count in parts:
            first = pattern.first_layer(part)
            x_part = split_layers(xs, first, length, count, axis)
            stack = NNXStack(
                getattr(self.layers, part), part_options(options, length), self.batch_size
            )
            carry, ys[part] = stack(carry, x_part)
        in_order = [ys[part] for part, _, _ in pattern.parts()]
        return carry, join_layers(in_order, 1 if lifts.batched else 0)


def nnx_pattern_stack(
    make_blocks: Mapping[str, Callable[[nnx.Rngs], nnx.Module]],
    pattern: LayerPattern,
    options: StackOptions,
    *,
    rngs: nnx.Rngs,
    batch_size: int | None = None,
) -> NNXPatternStack:
    """Create the NNX blocks of ``pattern`` (``make_blocks[kind](rngs)`` per layer), stacked.

    ``make_blocks`` maps each kind label of ``pattern`` to a function that builds one
    block of that kind from an ``nnx.Rngs`` (split per layer, as
    :func:`~composed_lifts.nnx_stack` does; ``batch_size`` for an ensemble).
    ``options.num_layers`` must equal ``pattern.num_layers``.

    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from composed_lifts import LayerPattern, StackOptions, nnx_pattern_stack
    >>> class Layer(nnx.Module):
    ...     def __init__(self, rngs):
    ...         self.Dense_0 = nnx.Linear(4, 4, rngs=rngs)
    ...     def __call__(self, x, _):
    ...         return x + self.Dense_0(x), None
    >>> pattern = LayerPattern(period=("a", "b"), num_layers=5)
    >>> stack = nnx_pattern_stack({"a": Layer, "b": Layer}, pattern, StackOptions(num_layers=5),
    ...                           rngs=nnx.Rngs(0))
    >>> stack.layers.repeats.kind_1.Dense_0.kernel.shape, stack.layers.remainder.kind_0.Dense_0.kernel.shape
    ((2, 4, 4), (1, 4, 4))
    >>> final, ys = stack(jnp.ones((3, 4)))
    >>> final.shape
    (3, 4)
    """
    require_pattern(pattern, options)
    check_kinds("make_blocks", make_blocks, pattern)
    for label, make in make_blocks.items():
        if not callable(make):
            raise ArgumentTypeError(
                f"make_blocks[{label!r}]",
                "a callable that takes an nnx.Rngs and returns an nnx.Module",
                repr(make),
                "e.g. the block class itself, or lambda rngs: Block(64, rngs=rngs)",
            )
    if options.batch is BatchMode.ENSEMBLE and batch_size is not None:
        batch_size = check_integer("batch_size", batch_size, minimum=1)
    parts: dict[str, nnx.Module] = {}
    for part, length, count in pattern.parts():
        labels = pattern.period[:count]
        first = pattern.first_layer(part)

        def make_group(r, labels=labels, first=first):
            blocks = [make_blocks[label](r) for label in labels]
            return _Group(blocks, labels, first, pattern.size, options)

        stack = nnx_stack(
            make_group, part_options(options, length), rngs=rngs, batch_size=batch_size
        )
        parts[part] = stack.layers
    return NNXPatternStack(_Parts(parts), pattern, options, batch_size)
