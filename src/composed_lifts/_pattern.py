"""``LayerPattern``: which kind of block each of N layers is, as a period that repeats.

A stack of N layers whose kinds repeat with period k (Gemma 2: ``("sliding",
"full")``; Gemma 3: five ``"sliding"`` then one ``"full"``) is stored as two
scans. Its params tree, the one layout every function here reads and writes::

    {"repeats":   {"kind_0": {... (R, ...)}, ..., "kind_{k-1}": {... (R, ...)}},
     "remainder": {"kind_0": {... (1, ...)}, ..., "kind_{r-1}": {... (1, ...)}}}

with R = N // k repeats of the whole period and r = N % k layers left over (the
first r kinds of the period). ``kind_j`` is the j-th position of the period (two
positions of the same kind label hold different params); its leading axis is
the layer axis of that position: ``repeats/kind_j[i]`` is layer ``i * k + j``,
``remainder/kind_j[0]`` is layer ``R * k + j``. ``repeats`` is absent when R == 0,
``remainder`` when r == 0. An ensemble puts its member axis first, ``(B, R, ...)``.
The names are formed here and nowhere else (:data:`REPEATS`, :data:`REMAINDER`,
:func:`kind_key`, :func:`layer_key`).

>>> pattern = LayerPattern.from_layer_types(["sliding", "full"] * 3 + ["sliding"])
>>> pattern
LayerPattern(period=('sliding', 'full'), num_layers=7)
>>> pattern.repeats, pattern.remainder, pattern.kind(4), pattern.where(6)
(3, 1, 'sliding', ('remainder', 'kind_0', 0))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ._arguments import check_integer, describe_value
from ._layout._stack import layer_name
from .errors import AperiodicLayersError, ArgumentRangeError, ArgumentTypeError

__all__ = [
    "REMAINDER",
    "REPEATS",
    "LayerPattern",
    "kind_key",
    "layer_key",
]

REPEATS = "repeats"
"""The params subtree of the scan over the N // k whole periods."""
REMAINDER = "remainder"
"""The params subtree of the scan (of length 1) over the N % k layers left over."""


def kind_key(position: int) -> str:
    """The key of the period's ``position``-th kind in a part: ``kind_{position}``."""
    return f"kind_{position}"


def layer_key(index: int) -> str:
    """The unrolled layout's key of true layer ``index``: ``layers_{index}``, formed by
    :func:`composed_lifts.layout.layer_name` (the one place per-layer names are formed)."""
    return layer_name(index)


@dataclasses.dataclass(frozen=True)
class LayerPattern:
    """N layers whose kinds repeat with a period: layer ``i`` is of kind ``period[i % k]``.

    Attributes:
      period: the kinds of one period, in order (labels such as ``"sliding"``;
        a label may occur more than once, as Gemma 3's five local layers).
      num_layers: N, the number of layers; it need not be a multiple of the period.

    Make one from the per-layer kinds, as ``transformers`` configs list them
    (``config.layer_types``), with :meth:`from_layer_types`.
    """

    period: tuple[str, ...]
    num_layers: int

    def __post_init__(self) -> None:
        period = self.period
        if isinstance(period, str) or not isinstance(period, Sequence):
            raise ArgumentTypeError(
                "LayerPattern.period",
                "a non-empty tuple of kind labels (str)",
                describe_value(period),
                'e.g. period=("sliding", "full")',
            )
        period = tuple(period)
        if not period or not all(isinstance(kind, str) and kind for kind in period):
            raise ArgumentTypeError(
                "LayerPattern.period",
                "a non-empty tuple of non-empty kind labels (str)",
                describe_value(period),
                'e.g. period=("sliding", "full")',
            )
        object.__setattr__(self, "period", period)
        num_layers = check_integer("LayerPattern.num_layers", self.num_layers, minimum=0)
        object.__setattr__(self, "num_layers", num_layers)

    @classmethod
    def from_layer_types(
        cls, layer_types: Sequence[str], *, period: int | None = None
    ) -> LayerPattern:
        """The pattern of the per-layer kinds ``layer_types`` (``config.layer_types``).

        ``period``: its length k; by default the shortest k that the kinds repeat
        with (``layer_types[i] == layer_types[i % k]`` for every i), which is N
        itself when they do not repeat (one group of N different layers: correct,
        but compiled as N layers). A ``period`` they do not repeat with raises
        :class:`~composed_lifts.errors.AperiodicLayersError`.
        """
        if isinstance(layer_types, str) or not isinstance(layer_types, Sequence):
            raise ArgumentTypeError(
                "layer_types",
                "a sequence of kind labels (str), one per layer",
                describe_value(layer_types),
                'e.g. ["sliding", "sliding", "full"]',
            )
        types = tuple(layer_types)
        for i, kind in enumerate(types):
            if not isinstance(kind, str) or not kind:
                raise ArgumentTypeError(
                    f"layer_types[{i}]", "a non-empty kind label (str)", describe_value(kind)
                )
        if not types:
            raise ArgumentRangeError(
                "layer_types",
                "at least one layer (the period's kinds are read from it)",
                "an empty sequence",
                'for no layers use LayerPattern(period=("sliding", "full"), num_layers=0)',
            )
        if period is None:
            k = next(
                (p for p in range(1, len(types)) if _first_break(types, p) is None), len(types)
            )
        else:
            k = check_integer("period", period, minimum=1)
            if k > len(types):
                raise ArgumentRangeError(
                    "period",
                    f"at most len(layer_types) = {len(types)} (the kinds of a longer period "
                    f"are not all listed)",
                    k,
                    "give every kind: LayerPattern(period=(...), num_layers=N)",
                )
            broken = _first_break(types, k)
            if broken is not None:
                raise AperiodicLayersError(broken, types[broken], types[broken % k], k)
        return cls(types[:k], len(types))

    @property
    def size(self) -> int:
        """k, the number of kinds in one period."""
        return len(self.period)

    @property
    def repeats(self) -> int:
        """R = N // k: how many whole periods (the length of the ``repeats`` scan)."""
        return self.num_layers // self.size

    @property
    def remainder(self) -> int:
        """r = N % k: the layers after the last whole period (the first r kinds of it)."""
        return self.num_layers % self.size

    @property
    def layer_types(self) -> tuple[str, ...]:
        """The kind of every layer, ``(period[i % k] for i in range(N))``."""
        return tuple(self.kind(i) for i in range(self.num_layers))

    def kind(self, index: int) -> str:
        """The kind label of true layer ``index``."""
        return self.period[index % self.size]

    def layers_of(self, position: int) -> tuple[int, ...]:
        """The true layer indices of the period's ``position``-th kind (``j, j + k, ...``)."""
        return tuple(range(position, self.num_layers, self.size))

    def where(self, index: int) -> tuple[str, str, int]:
        """Where true layer ``index`` lives: ``(part, kind key, index on its layer axis)``."""
        index = check_integer("index", index, minimum=0)
        if index >= self.num_layers:
            raise ArgumentRangeError("index", f"< num_layers = {self.num_layers}", index)
        repeat, position = divmod(index, self.size)
        if repeat < self.repeats:
            return REPEATS, kind_key(position), repeat
        return REMAINDER, kind_key(position), 0

    def parts(self) -> tuple[tuple[str, int, int], ...]:
        """The scans that exist: ``(part key, its length, how many kinds it applies)``."""
        out = []
        if self.repeats:
            out.append((REPEATS, self.repeats, self.size))
        if self.remainder:
            out.append((REMAINDER, 1, self.remainder))
        return tuple(out)

    def first_layer(self, part: str) -> int:
        """The true index of the first layer of ``part`` (0, or R * k for the remainder)."""
        return self.repeats * self.size if part == REMAINDER else 0


def _first_break(types: tuple[str, ...], period: int) -> int | None:
    """The first i with ``types[i] != types[i % period]``, or ``None``."""
    return next((i for i in range(period, len(types)) if types[i] != types[i % period]), None)
