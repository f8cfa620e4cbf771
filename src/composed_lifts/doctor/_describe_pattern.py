"""``describe_pattern``: which layers of a pattern stack are which kind, and their params.

The params tree comes from ``jax.eval_shape`` of the stack's init (nothing is
computed), and each axis's role from probing, as :func:`describe` does: the same
stack evaluated again with longer scans (one more repeat of the period, a
remainder scan of two steps) and with two more examples; the axes that move are
the layer and batch axes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax

from .._options import StackOptions
from .._pattern import REMAINDER, REPEATS, LayerPattern, kind_key
from .._stack_pattern import block_spec, check_kinds, pattern_stack_class, require_pattern
from ._describe import LeafReport, leaf_reports
from ._inputs import as_carry, with_batch
from ._spec import Composition

__all__ = ["KindReport", "PatternReport", "describe_pattern"]


@dataclasses.dataclass(frozen=True)
class KindReport:
    """One position of the period: its kind, block, true layers and params.

    Attributes:
      position: j, the position in the period (the params' ``kind_{j}``).
      kind: the kind label (``"sliding"``).
      block: the block, as ``Local(window=4)``.
      layers: the true indices of its layers (``j, j + k, ...``).
      leaves: its params in both parts (``params/repeats/kind_j/...`` with the R
        repeats on the layer axis, ``params/remainder/kind_j/...`` with one), with roles.
    """

    position: int
    kind: str
    block: str
    layers: tuple[int, ...]
    leaves: tuple[LeafReport, ...]

    @property
    def count(self) -> int:
        return sum(leaf.count for leaf in self.leaves)

    def as_dict(self) -> dict:
        return {
            "position": self.position,
            "kind": self.kind,
            "block": self.block,
            "layers": list(self.layers),
            "leaves": [leaf.as_dict() for leaf in self.leaves],
            "count": self.count,
        }


@dataclasses.dataclass(frozen=True)
class PatternReport:
    """What :func:`describe_pattern` found: the kinds, every leaf with its roles, the totals."""

    pattern: LayerPattern
    options: StackOptions
    batch: int
    kinds: tuple[KindReport, ...]

    @property
    def leaves(self) -> tuple[LeafReport, ...]:
        return tuple(leaf for kind in self.kinds for leaf in kind.leaves)

    @property
    def count(self) -> int:
        return sum(leaf.count for leaf in self.leaves)

    @property
    def nbytes(self) -> int:
        return sum(leaf.nbytes for leaf in self.leaves)

    def layer(self, index: int) -> tuple[str, str]:
        """True layer ``index``'s kind and where its params are (``repeats/kind_0[1]``)."""
        part, key, step = self.pattern.where(index)
        return self.pattern.kind(index), f"{part}/{key}[{step}]"

    def lines(self) -> list[str]:
        """The report as text: the layers' kinds, then each kind's params."""
        p = self.pattern
        split = f"{p.repeats} x {p.size}" + (f" + {p.remainder}" if p.remainder else "")
        out = [
            f"pattern {p.period}: N={p.num_layers} layers = {split}, B={self.batch} examples, "
            f"{self.options.batch.name.lower()} params",
            "layers: "
            + ", ".join(f"{i} {k}" for i, k in enumerate(p.layer_types))
            + (f" (scans: {_scans(p)})" if p.num_layers else ""),
        ]
        for kind in self.kinds:
            layers = ", ".join(str(i) for i in kind.layers)
            out.append(f"{kind_key(kind.position)} {kind.kind!r} {kind.block}: layers {layers}")
            for leaf in kind.leaves:
                out.append(f"    {leaf.path}  {leaf.shape}  {leaf.axes_text()}  {leaf.dtype}")
        out.append(f"total: {self.count:,} params, {self.nbytes:,} bytes")
        return out

    def as_dict(self) -> dict:
        return {
            "period": list(self.pattern.period),
            "num_layers": self.pattern.num_layers,
            "repeats": self.pattern.repeats,
            "remainder": self.pattern.remainder,
            "layer_types": list(self.pattern.layer_types),
            "batch": self.batch,
            "kinds": [kind.as_dict() for kind in self.kinds],
            "count": self.count,
            "bytes": self.nbytes,
        }


def _scans(pattern: LayerPattern) -> str:
    parts = {REPEATS: f"{REPEATS} of {pattern.repeats}", REMAINDER: f"{REMAINDER} of 1"}
    return ", ".join(parts[part] for part, _, _ in pattern.parts())


def describe_pattern(
    blocks: Mapping[str, nn.Module | type[nn.Module]],
    pattern: LayerPattern,
    carry: Any,
    options: StackOptions | None = None,
) -> PatternReport:
    """The params a :func:`~composed_lifts.linen_pattern_stack` of ``blocks`` will have.

    Args:
      blocks: each kind label's Linen block, as for ``linen_pattern_stack``; each is
        called as ``block(carry, None)``.
      pattern: the :class:`~composed_lifts.LayerPattern`.
      carry: the batched carry (a shape tuple, an array, a ``ShapeDtypeStruct`` or a
        pytree of them, the batch on axis 0).
      options: the stack's options (default ``StackOptions(num_layers=pattern.num_layers)``).

    >>> import flax.linen as nn
    >>> from composed_lifts import LayerPattern
    >>> class Mix(nn.Module):
    ...     @nn.compact
    ...     def __call__(self, x, _):
    ...         return x + nn.Dense(4)(x), None
    >>> report = describe_pattern({"a": Mix(), "b": Mix()}, LayerPattern(("a", "a", "b"), 7), (2, 4))
    >>> report.layer(6), report.kinds[2].layers
    (('a', 'remainder/kind_0[0]'), (2, 5))
    >>> for leaf in report.kinds[0].leaves:
    ...     print(leaf.path, leaf.axes_text())
    params/remainder/kind_0/Dense_0/bias (N=1, F=4)
    params/remainder/kind_0/Dense_0/kernel (N=1, F=4, F=4)
    params/repeats/kind_0/Dense_0/bias (N=2, F=4)
    params/repeats/kind_0/Dense_0/kernel (N=2, F=4, F=4)
    """
    options = StackOptions(num_layers=pattern.num_layers) if options is None else options
    require_pattern(pattern, options)
    check_kinds("blocks", blocks, pattern)
    specs = {label: block_spec(f"blocks[{label!r}]", block) for label, block in blocks.items()}
    abstract, batch = as_carry(carry, Composition.from_options(options))

    def variables(lengths, c):
        model = pattern_stack_class(specs, pattern, options, lengths)()
        return nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), c))

    longer = {REPEATS: pattern.repeats + 1, REMAINDER: 2}
    leaves = leaf_reports(
        variables(None, abstract),
        variables(longer, abstract),
        variables(None, with_batch(abstract, batch + 2)),
    )
    kinds = []
    for j, label in enumerate(pattern.period):
        mine = tuple(leaf for leaf in leaves if leaf.path.split("/")[2:3] == [kind_key(j)])
        kinds.append(KindReport(j, label, specs[label].text(), pattern.layers_of(j), mine))
    return PatternReport(pattern, options, batch, tuple(kinds))
