"""The keyword arguments of ``nn.scan`` and ``nn.vmap`` for a stack, derived in one place.

:func:`derive_lifts` is a pure function from the typed description of a stack
(the lift order, each lift's ``params`` settings, the other collections' vmap
axes, the axis names, the scan's settings) to a :class:`Lifts`: the exact
keyword arguments of each lift. :func:`~composed_lifts.linen_stack` builds
from it (through :func:`stack_lifts`), :func:`~composed_lifts.nnx_stack`
reads its axes from it, and the doctor builds and prints (:meth:`Lifts.recipe`)
the same arguments, so the ``lifts:`` line it shows is the code that runs.

>>> lifts = derive_lifts(3, order=LiftOrder.SCAN_ONLY, scan=PER_LAYER, vmap=SHARED)
>>> print(lifts.recipe("Block"))
nn.scan(Block, variable_axes={"params": 0, True: 0}, split_rngs={"params": True, True: True},
length=3, in_axes=0, out_axes=0, metadata_params={nn.PARTITION_NAME: "layers"})
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Mapping
from typing import Any

import flax.linen as nn

from ._options import BatchMode, LayerInputs, StackOptions
from .errors import ArgumentRangeError, ArgumentTypeError

__all__ = [
    "DEFAULT_COLLECTION_AXES",
    "ENSEMBLE",
    "PER_LAYER",
    "SHARED",
    "LiftOrder",
    "LiftParams",
    "Lifts",
    "Spelling",
    "batch_params",
    "derive_lifts",
    "stack_lifts",
]


class LiftOrder(enum.Enum):
    """Which lift wraps which.

    - ``VMAP_OF_SCAN``: ``nn.vmap(nn.scan(Block))``, the seed's order: the scan over
      layers is inside, the batch vmap outside.
    - ``SCAN_OF_VMAP``: ``nn.scan(nn.vmap(Block))``, the order reversed: every layer
      of the scan is a vmapped block.
    - ``SCAN_ONLY``: ``nn.scan(Block)``, no batch lift (``BatchMode.NONE``); the block
      sees the whole batch itself, and the vmap's settings are ignored.
    """

    VMAP_OF_SCAN = "vmap-of-scan"
    SCAN_OF_VMAP = "scan-of-vmap"
    SCAN_ONLY = "scan-only"


class Spelling(enum.Enum):
    """How much of the lifts' keyword arguments a recipe writes out.

    - ``PARAMS_ONLY``: entries for the ``params`` collection only, as the seed's recipe
      writes them (``variable_axes={"params": 0}, split_rngs={"params": True}``): no
      ``metadata_params``, no other collection or RNG stream lifted.
    - ``COMPLETE``: as :func:`~composed_lifts.linen_stack` builds them: every other
      collection and RNG stream lifted too, and partition names in ``metadata_params``.
    """

    PARAMS_ONLY = "params-only"
    COMPLETE = "complete"


@dataclasses.dataclass(frozen=True)
class LiftParams:
    """One lift's entries for the ``params`` collection.

    Attributes:
      variable_axis: ``0`` gives params a new leading axis (one slice per layer for
        the scan, per example for the vmap); ``None`` shares them across the lift
        (the vmap's ``variable_axes={"params": None}``; for the scan, whose
        ``variable_axes`` Flax refuses ``None`` in, ``variable_broadcast="params"``:
        weight tying).
      split_rngs: ``split_rngs["params"]``: split the init RNG so that every slice
        initialises differently.
    """

    variable_axis: int | None
    split_rngs: bool

    def __post_init__(self) -> None:
        axis = self.variable_axis
        if axis is not None and (isinstance(axis, bool) or not isinstance(axis, int)):
            raise ArgumentTypeError(
                "LiftParams.variable_axis",
                "0 or None",
                repr(axis),
                "use 0 for one slice per step of the lift, None to share params across it",
            )
        if axis not in (0, None):
            raise ArgumentRangeError(
                "LiftParams.variable_axis",
                "0 or None",
                repr(axis),
                "the doctor examines lifts that add a leading axis (0) or none (None)",
            )
        if not isinstance(self.split_rngs, bool):
            raise ArgumentTypeError("LiftParams.split_rngs", "True or False", repr(self.split_rngs))


PER_LAYER = LiftParams(variable_axis=0, split_rngs=True)
"""The scan's usual settings: one slice of params per layer, each initialised differently."""
SHARED = LiftParams(variable_axis=None, split_rngs=False)
"""The vmap's usual settings (the seed's): one set of params for every example."""
ENSEMBLE = LiftParams(variable_axis=0, split_rngs=True)
"""The vmap's settings for an ensemble: one stack per example, each initialised differently."""

DEFAULT_COLLECTION_AXES: Mapping[str, int | None] = {"batch_stats": None}
"""The vmap's axis for collections other than params: ``batch_stats`` shared, the rest (``True``) 0."""


def _axis(variable_axes: Mapping, collection: str) -> int | None:
    """The axis a lift gives ``collection``: its own entry, else the ``True`` (catch-all) one."""
    return variable_axes[collection] if collection in variable_axes else variable_axes.get(True)


def _code(value: Any) -> str:
    """``value`` as Python source (strings in double quotes, as Flax code is written)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_code(k)}: {_code(v)}" for k, v in value.items()) + "}"
    if isinstance(value, tuple):
        inner = ", ".join(_code(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    return repr(value)


def _kwargs_code(kwargs: Mapping[str, Any]) -> str:
    parts = []
    for key, value in kwargs.items():
        if key == "metadata_params":
            names = ", ".join(
                f"nn.PARTITION_NAME: {_code(v)}"
                if k == nn.PARTITION_NAME
                else f"{_code(k)}: {_code(v)}"
                for k, v in value.items()
            )
            parts.append(f"metadata_params={{{names}}}")
        else:
            parts.append(f"{key}={_code(value)}")
    return ", ".join(parts)


@dataclasses.dataclass(frozen=True)
class Lifts:
    """The exact keyword arguments of each lift, and which lift wraps which.

    Attributes:
      order: the lift order (:class:`LiftOrder`).
      scan: the keyword arguments of ``nn.scan``.
      vmap: the keyword arguments of ``nn.vmap`` (``None`` for ``SCAN_ONLY``).
    """

    order: LiftOrder
    scan: Mapping[str, Any]
    vmap: Mapping[str, Any] | None

    def build(self, target: type[nn.Module]) -> type[nn.Module]:
        """The lifted module class: ``nn.vmap(nn.scan(target, **scan), **vmap)`` or as ordered."""
        if self.vmap is None or self.order is LiftOrder.SCAN_ONLY:
            return nn.scan(target, **self.scan)
        if self.order is LiftOrder.VMAP_OF_SCAN:
            return nn.vmap(nn.scan(target, **self.scan), **self.vmap)
        return nn.scan(nn.vmap(target, **self.vmap), **self.scan)

    def recipe(self, block_name: str = "Block") -> str:
        """:meth:`build` as one line of Flax code that runs as printed (``nn`` is ``flax.linen``)."""
        scan = _kwargs_code(self.scan)
        if self.vmap is None or self.order is LiftOrder.SCAN_ONLY:
            return f"nn.scan({block_name}, {scan})"
        vmap = _kwargs_code(self.vmap)
        if self.order is LiftOrder.VMAP_OF_SCAN:
            return f"nn.vmap(nn.scan({block_name}, {scan}), {vmap})"
        return f"nn.scan(nn.vmap({block_name}, {vmap}), {scan})"

    @property
    def batched(self) -> bool:
        """Whether a vmap maps a leading batch axis of the carry."""
        return self.vmap is not None

    def batch_axis(self, collection: str) -> int | None:
        """The vmap's axis for ``collection`` (``None``: shared across the batch, or no vmap)."""
        return None if self.vmap is None else _axis(self.vmap["variable_axes"], collection)

    def layer_axis(self, collection: str) -> int | None:
        """The scan's axis for ``collection`` (``None``: broadcast, one value for every layer)."""
        if collection in _broadcast(self.scan):
            return None
        return _axis(self.scan.get("variable_axes", {}), collection)

    def lifted(self, collection: str) -> bool:
        """Whether every lift names ``collection`` (or all collections, ``True``)."""
        lifts = [self.scan] + ([] if self.vmap is None else [self.vmap])
        return all(
            collection in _broadcast(k) or {collection, True} & set(k.get("variable_axes", {}))
            for k in lifts
        )

    def unnamed_param_axes(self) -> list[str]:
        """The lifts (``"nn.scan"``, ``"nn.vmap"``) that give params a new axis without a
        partition name in ``metadata_params``: Flax refuses to move a param made with
        ``nn.with_partitioning`` through them."""
        lifts = [("nn.scan", self.scan, self.layer_axis("params"))]
        if self.vmap is not None:
            lifts.append(("nn.vmap", self.vmap, self.batch_axis("params")))
        return [
            name
            for name, kwargs, axis in lifts
            if axis is not None and nn.PARTITION_NAME not in kwargs.get("metadata_params", {})
        ]

    def leading_axes(self, collection: str) -> int:
        """How many leading axes the lifts add to the leaves of ``collection``."""
        return (self.layer_axis(collection) is not None) + (self.batch_axis(collection) is not None)

    def xs_axis(self) -> int | None:
        """The vmap's axis for the per-layer inputs ``xs`` (``None``: shared by every example)."""
        if self.vmap is None:
            return None
        return self.vmap["in_axes"][1]


def _broadcast(scan: Mapping[str, Any]) -> tuple[str, ...]:
    value = scan.get("variable_broadcast", ())
    return (value,) if isinstance(value, str) else tuple(value)


def derive_lifts(
    num_layers: int,
    *,
    order: LiftOrder,
    scan: LiftParams,
    vmap: LiftParams,
    collection_axes: Mapping[str, int | None] | tuple[tuple[str, int | None], ...] = (),
    layer_axis_name: str | None = "layers",
    batch_axis_name: str = "batch",
    spmd_axis_name: str | None = None,
    layer_index: bool = False,
    xs_per_example: bool = False,
    reverse: bool = False,
    unroll: int = 1,
    spelling: Spelling = Spelling.COMPLETE,
) -> Lifts:
    """The keyword arguments of ``nn.scan`` and ``nn.vmap`` for a stack of ``num_layers`` layers.

    The block is called as ``block(carry, x)`` (``block(carry, x, index)`` with
    ``layer_index``). Params follow ``scan`` and ``vmap`` (:class:`LiftParams`);
    other collections are per layer on the scan, and on the vmap follow
    :data:`DEFAULT_COLLECTION_AXES` overridden by ``collection_axes`` (every other
    collection per example); other RNG streams are split by both lifts. Partition
    metadata (``nn.with_partitioning``) gets the axis names, ``None`` included:
    Flax needs ``metadata_params`` to move such a param at all. With
    ``spelling=Spelling.PARAMS_ONLY`` only the params entries are written, as the
    seed's recipe writes them.
    """
    complete = spelling is Spelling.COMPLETE
    rest = {True: 0} if complete else {}
    scan_kwargs: dict[str, Any] = {}
    if scan.variable_axis is None:  # weight tying: Flax wants a broadcast, not an axis of None
        if rest:
            scan_kwargs["variable_axes"] = rest
        scan_kwargs["variable_broadcast"] = "params"
    else:
        scan_kwargs["variable_axes"] = {"params": scan.variable_axis, **rest}
    scan_kwargs["split_rngs"] = {"params": scan.split_rngs, **({True: True} if complete else {})}
    scan_kwargs.update(length=num_layers, in_axes=(0, 0) if layer_index else 0, out_axes=0)
    if reverse:  # Flax's defaults are left out of the printed line
        scan_kwargs["reverse"] = True
    if unroll != 1:
        scan_kwargs["unroll"] = unroll
    if complete:
        scan_kwargs["metadata_params"] = {nn.PARTITION_NAME: layer_axis_name}
    if order is LiftOrder.SCAN_ONLY:
        return Lifts(order, scan_kwargs, None)
    variable_axes: dict[Any, int | None] = {"params": vmap.variable_axis}
    if complete:
        variable_axes.update(DEFAULT_COLLECTION_AXES)
        variable_axes.update(dict(collection_axes))
        variable_axes[True] = 0
    xs_axis = 0 if xs_per_example else None
    vmap_kwargs: dict[str, Any] = {
        "variable_axes": variable_axes,
        "split_rngs": {"params": vmap.split_rngs, **({True: True} if complete else {})},
        "in_axes": (0, xs_axis, None) if layer_index else (0, xs_axis),
        "out_axes": 0,
        "axis_name": batch_axis_name,
    }
    if complete:
        vmap_kwargs["metadata_params"] = {nn.PARTITION_NAME: batch_axis_name}
    if spmd_axis_name is not None:  # left out of the printed line when unset, as Flax's default
        vmap_kwargs["spmd_axis_name"] = spmd_axis_name
    return Lifts(order, scan_kwargs, vmap_kwargs)


def batch_params(batch: BatchMode) -> LiftParams:
    """The vmap's params settings for ``batch``: :data:`ENSEMBLE` or :data:`SHARED`."""
    return ENSEMBLE if batch is BatchMode.ENSEMBLE else SHARED


def stack_lifts(options: StackOptions) -> Lifts:
    """The lifts :func:`~composed_lifts.linen_stack` builds for ``options``."""
    return derive_lifts(
        options.num_layers,
        order=LiftOrder.SCAN_ONLY if options.batch is BatchMode.NONE else LiftOrder.VMAP_OF_SCAN,
        scan=PER_LAYER,
        vmap=batch_params(options.batch),
        collection_axes=options.collection_axes,
        layer_axis_name=options.layer_axis_name,
        batch_axis_name=options.batch_axis_name,
        spmd_axis_name=options.spmd_axis_name,
        layer_index=options.layer_index,
        xs_per_example=options.layer_inputs is LayerInputs.PER_EXAMPLE,
        reverse=options.reverse,
        unroll=options.unroll,
    )
