"""``describe``: the param tree a composition of lifts will make, without running the model.

Every shape comes from ``jax.eval_shape`` (nothing is computed), and the role
of every axis from probing (:mod:`._roles`): the stack is evaluated again with
one more layer and with two more examples, and the axes that move are the
layer and batch axes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from .._block_spec import block_name
from .._options import StackOptions
from ..errors import ConfusedSplitError, UnliftedVariablesError
from ..layout import Form, Stack
from ._inputs import (
    BlockSpec,
    as_block,
    as_carry,
    check_one_layer,
    one_layer_init,
    per_example,
    with_batch,
)
from ._roles import AxisRole, axis_roles, probe_sizes
from ._spec import Composition, as_composition, compose
from ._written import unlifted_variables

__all__ = [
    "LayoutReport",
    "LeafReport",
    "UnrolledTotals",
    "abstract_variables",
    "confused_splits",
    "describe",
    "leaf_reports",
]


@dataclasses.dataclass(frozen=True)
class LeafReport:
    """One leaf of the variables: where it lives, its shape and dtype, and each axis's role."""

    path: str
    shape: tuple[int, ...]
    dtype: str
    roles: tuple[AxisRole, ...]

    @property
    def count(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.count * np.dtype(self.dtype).itemsize

    def axes_text(self) -> str:
        """``(N=3, F=8, F=8)``: each axis's role letter and size."""
        return "(" + ", ".join(f"{r.letter}={d}" for r, d in zip(self.roles, self.shape)) + ")"

    def as_dict(self) -> dict:
        return {
            "path": self.path,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "roles": [r.value for r in self.roles],
            "count": self.count,
            "bytes": self.nbytes,
        }


@dataclasses.dataclass(frozen=True)
class UnrolledTotals:
    """The same stack written as a Python loop over ``blocks`` separate block instances.

    ``blocks`` is N (times B when each example has its own stack, times 1/N
    when the scan shares params across layers); each has ``per_block_count``
    params.
    """

    blocks: int
    per_block_count: int
    per_block_bytes: int

    @property
    def count(self) -> int:
        return self.blocks * self.per_block_count

    @property
    def nbytes(self) -> int:
        return self.blocks * self.per_block_bytes

    def as_dict(self) -> dict:
        return {
            "blocks": self.blocks,
            "per_block_count": self.per_block_count,
            "per_block_bytes": self.per_block_bytes,
            "count": self.count,
            "bytes": self.nbytes,
        }


@dataclasses.dataclass(frozen=True)
class LayoutReport:
    """What :func:`describe` found: every leaf with its axis roles, and the totals."""

    block: str
    composition: Composition
    batch: int
    leaves: tuple[LeafReport, ...]
    unrolled: UnrolledTotals

    @property
    def block_name(self) -> str:
        """The block's class name (``Block``), as the lifts line names it."""
        return block_name(self.block)

    @property
    def count(self) -> int:
        return sum(leaf.count for leaf in self.leaves)

    @property
    def nbytes(self) -> int:
        return sum(leaf.nbytes for leaf in self.leaves)

    def stack(self) -> Stack | None:
        """The params' layout as a :class:`~composed_lifts.layout.Stack` (path ``"params"`` of
        the variables), from the probed roles; ``None`` when no one ``Stack`` describes it
        (weight tying has no layer axis; the reversed ensemble puts its members on axis 1).

        >>> from composed_lifts import Block
        >>> describe(Block(features=2), Composition(num_layers=3), carry=(4, 2)).stack()
        Stack(path='params', layer_axis=0, ensemble_size=None, num_layers=3, form=<Form.STACKED: 'stacked'>)
        """
        axes, members = set(), set()
        for leaf in self.leaves:
            if leaf.path.split("/")[0] != "params":
                continue
            roles = list(leaf.roles)
            axes.add(roles.index(AxisRole.LAYER) if AxisRole.LAYER in roles else None)
            members.add(roles.index(AxisRole.BATCH) if AxisRole.BATCH in roles else None)
        axis = axes.pop() if len(axes) == 1 else None
        if axis is None or members not in ({None}, {0}):
            return None
        return Stack(
            "params",
            layer_axis=axis,
            ensemble_size=None if members == {None} else self.batch,
            num_layers=self.composition.num_layers,
            form=Form.STACKED,
        )

    def leaf(self, path: str) -> LeafReport:
        """The leaf at ``path`` (``"params/Dense_0/kernel"``)."""
        for leaf in self.leaves:
            if leaf.path == path:
                return leaf
        raise KeyError(f"no leaf {path!r}; the leaves are {[leaf.path for leaf in self.leaves]}")

    def as_dict(self) -> dict:
        c = self.composition
        return {
            "block": self.block,
            "recipe": c.recipe(self.block_name),
            "order": c.order.value,
            "num_layers": c.num_layers,
            "batch": self.batch,
            "scan": dataclasses.asdict(c.scan),
            "vmap": dataclasses.asdict(c.vmap),
            "intent": c.intent.value,
            "leaves": [leaf.as_dict() for leaf in self.leaves],
            "count": self.count,
            "bytes": self.nbytes,
            "unrolled": self.unrolled.as_dict(),
        }


def leaf_reports(base, more_layers, more_batch) -> tuple[LeafReport, ...]:
    """Every leaf of ``base`` with its axis roles, from the same variables evaluated with one
    more layer and two more examples (trees of anything with ``.shape`` and ``.dtype``)."""
    roles = axis_roles(base, more_layers, more_batch)
    return tuple(
        LeafReport(path, tuple(int(d) for d in leaf.shape), np.dtype(leaf.dtype).name, r)
        for (path, r), leaf in zip(roles, jax.tree_util.tree_leaves(base))
    )


def confused_splits(composition: Composition, batch: int) -> list[ConfusedSplitError]:
    """The lifts of ``composition`` that split an RNG no params axis can hold (scan first)."""
    faults = []
    if composition.scan.variable_axis is None and composition.scan.split_rngs:
        faults.append(ConfusedSplitError("scan", composition.num_layers))
    vmap = composition.vmap
    if composition.batched and vmap.variable_axis is None and vmap.split_rngs:
        faults.append(ConfusedSplitError("vmap", batch))
    return faults


def abstract_variables(block: BlockSpec, composition: Composition, carry):
    """``jax.eval_shape`` of ``init`` of the composed stack (shapes only, metadata unboxed)."""
    model = compose(block.cls, composition)(**dict(block.fields))
    return nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), carry, None))


def describe(
    block: nn.Module | type[nn.Module], composition: Composition | StackOptions, carry: Any
) -> LayoutReport:
    """The variables ``composition`` of ``block`` will have for ``carry``, with each axis's role.

    Args:
      block: a Linen module instance, e.g. ``Block(features=8)``; it is called as
        ``block(carry, None)`` and returns ``(carry, y)``.
      composition: the lifts: a :class:`Composition`, or a ``StackOptions`` (read as
        ``Composition.from_options(options)``, what ``linen_stack`` builds).
      carry: the batched carry: a shape tuple (float32), an array, a ``ShapeDtypeStruct``
        or a pytree of them, with the batch B on axis 0.

    Raises:
      ConfusedSplitError: a lift splits the params RNG without a params axis to hold it.
      CarryChangedError: one layer changes the carry's shape (``x.shape[-1] != features``).
      UnliftedVariablesError: the lifts as written cannot carry the block's variables
        (partition names without ``metadata_params``, a collection no lift names).
      BlockOutputError, MissingRngError, LayoutProbeError.

    >>> from composed_lifts import Block
    >>> report = describe(Block(features=8), Composition(num_layers=3), carry=(4, 8))
    >>> for leaf in report.leaves:
    ...     print(leaf.path, leaf.axes_text(), leaf.count)
    params/Dense_0/bias (N=3, F=8) 24
    params/Dense_0/kernel (N=3, F=8, F=8) 192
    >>> report.count, report.unrolled.blocks, report.unrolled.count
    (216, 3, 216)
    """
    spec = as_block(block)
    composition = as_composition(composition)
    abstract, batch = as_carry(carry, composition)
    faults = confused_splits(composition, batch)
    if faults:
        raise faults[0]
    check_one_layer(spec, abstract, composition)
    unlifted = unlifted_variables(spec, composition, abstract)
    if unlifted:
        raise UnliftedVariablesError(
            spec.text(),
            None if unlifted.partitioned is None else f"params/{unlifted.partitioned[0]}",
            unlifted.unnamed_in,
            tuple(name for name, _ in unlifted.collections),
        )
    n = composition.num_layers
    more_n, more_b = probe_sizes(n, batch)
    base = abstract_variables(spec, composition, abstract)
    leaves = leaf_reports(
        base,
        abstract_variables(spec, composition.with_layers(more_n), abstract),
        abstract_variables(spec, composition, with_batch(abstract, more_b)),
    )
    one = nn.meta.unbox(
        jax.eval_shape(
            one_layer_init(spec, composition),
            jax.random.PRNGKey(0),
            per_example(abstract, composition),
        )
    )
    one_leaves = jax.tree_util.tree_leaves(one)
    per_block = sum(int(np.prod(s.shape, dtype=np.int64)) for s in one_leaves)
    per_block_bytes = sum(
        int(np.prod(s.shape, dtype=np.int64)) * np.dtype(s.dtype).itemsize for s in one_leaves
    )
    blocks = (n if composition.scan.variable_axis is not None else 1) * (
        batch if composition.batched and composition.vmap.variable_axis is not None else 1
    )
    return LayoutReport(
        block=spec.text(),
        composition=composition,
        batch=batch,
        leaves=leaves,
        unrolled=UnrolledTotals(blocks, per_block, per_block_bytes),
    )
