"""Typed options for a layer stack: how params relate to the batch, remat, scan settings."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

import jax

from ._arguments import check_integer
from .errors import ArgumentTypeError

__all__ = [
    "BatchMode",
    "LayerInputs",
    "Remat",
    "StackOptions",
    "collection_axes_pairs",
    "require_options",
]


class BatchMode(enum.Enum):
    """How the stack's params relate to the batch axis.

    - ``SHARED``: one set of N-layer params for every example (the seed's layout):
      ``nn.vmap(variable_axes={"params": None}, split_rngs={"params": False})``.
    - ``ENSEMBLE``: one N-layer stack per example; the vmap adds a leading batch axis
      ``(B, N, ...)`` and splits the init RNG, so the members differ.
    - ``NONE``: no batch transform; the stack maps one example (or whatever the block
      itself handles) and params are ``(N, ...)``.
    """

    SHARED = "shared"
    ENSEMBLE = "ensemble"
    NONE = "none"


class LayerInputs(enum.Enum):
    """Where per-layer inputs ``xs`` (leading axis N) come from.

    - ``SHARED``: ``xs`` has shape ``(N, ...)`` and is the same for every example.
    - ``PER_EXAMPLE``: ``xs`` has shape ``(B, N, ...)``, one slice per example.
    """

    SHARED = "shared"
    PER_EXAMPLE = "per_example"


class Remat(enum.Enum):
    """Rematerialisation of each block (``nn.remat`` / ``jax.checkpoint``) and its policy.

    - ``NONE``: no remat; the backward pass keeps every intermediate.
    - ``FULL``: save nothing inside a block (``jax.checkpoint_policies.nothing_saveable``).
    - ``DOTS``: save matmul outputs (``dots_saveable``), recompute the elementwise rest.
    - ``DOTS_NO_BATCH``: save matmuls without batch dims (``dots_with_no_batch_dims_saveable``).
    """

    NONE = "none"
    FULL = "full"
    DOTS = "dots"
    DOTS_NO_BATCH = "dots_no_batch"

    def policy(self):
        """The ``jax.checkpoint`` policy, or ``None`` for ``NONE``."""
        policies = jax.checkpoint_policies
        return {
            Remat.NONE: None,
            Remat.FULL: policies.nothing_saveable,
            Remat.DOTS: policies.dots_saveable,
            Remat.DOTS_NO_BATCH: policies.dots_with_no_batch_dims_saveable,
        }[self]


def _check_enum(name: str, value, cls: type[enum.Enum]):
    if not isinstance(value, cls):
        choices = ", ".join(f"{cls.__name__}.{m.name}" for m in cls)
        raise ArgumentTypeError(
            name,
            f"a {cls.__name__} ({choices})",
            repr(value),
            f"to convert a string use {cls.__name__}({value!r})",
        )


@dataclasses.dataclass(frozen=True)
class StackOptions:
    """How to lift a block into a stack of ``num_layers`` layers.

    Attributes:
      num_layers: N, the number of layers (the scan's length); 0 gives the identity.
      batch: how params relate to the batch (:class:`BatchMode`).
      layer_inputs: shape of the per-layer inputs ``xs`` (:class:`LayerInputs`).
      layer_index: pass the layer index (an int32 scalar, 0..N-1, also under
        ``reverse``) to the block as a third argument ``block(carry, x, index)``.
      reverse: run the layers from N-1 down to 0 (params stay indexed by layer).
      unroll: how many scan iterations to unroll into one loop body.
      remat: rematerialise each block, with a policy (:class:`Remat`).
      layer_axis_name: logical name of the layer axis in params' partitioning
        metadata (``nn.with_partitioning``); ``None`` adds no name.
      batch_axis_name: the vmap's axis name, for collectives such as
        ``BatchNorm(axis_name="batch")`` or ``jax.lax.pmean`` across the batch.
      spmd_axis_name: the mesh axis the examples are split over (the vmap's
        ``spmd_axis_name``), so that sharding constraints inside the block
        (``nn.with_logical_constraint``, ``jax.lax.with_sharding_constraint``) keep the
        batch split instead of gathering it; set it to ``ShardingRules.batch``.
        ``None`` (the default) adds nothing.
      collection_axes: a mapping (kept as a sorted tuple of pairs, so that the
        options stay hashable) from collection name to the vmap's axis for it, for
        collections other than
        ``params``, overriding the defaults: ``batch_stats`` shared (``None``),
        every other collection (``intermediates``, ``cache``, yours) per example (0).
    """

    num_layers: int
    batch: BatchMode = BatchMode.SHARED
    layer_inputs: LayerInputs = LayerInputs.SHARED
    layer_index: bool = False
    reverse: bool = False
    unroll: int = 1
    remat: Remat = Remat.NONE
    layer_axis_name: str | None = "layers"
    batch_axis_name: str = "batch"
    spmd_axis_name: str | None = None
    collection_axes: Mapping[str, int | None] | tuple = ()

    def __post_init__(self):
        check_integer("StackOptions.num_layers", self.num_layers, minimum=0)
        check_integer("StackOptions.unroll", self.unroll, minimum=1)
        _check_enum("StackOptions.batch", self.batch, BatchMode)
        _check_enum("StackOptions.layer_inputs", self.layer_inputs, LayerInputs)
        _check_enum("StackOptions.remat", self.remat, Remat)
        for name in ("layer_index", "reverse"):
            if not isinstance(getattr(self, name), bool):
                raise ArgumentTypeError(
                    f"StackOptions.{name}", "True or False", repr(getattr(self, name))
                )
        if self.layer_axis_name is not None and not isinstance(self.layer_axis_name, str):
            raise ArgumentTypeError(
                "StackOptions.layer_axis_name", "a str or None", repr(self.layer_axis_name)
            )
        if not isinstance(self.batch_axis_name, str):
            raise ArgumentTypeError(
                "StackOptions.batch_axis_name", "a str", repr(self.batch_axis_name)
            )
        if self.spmd_axis_name is not None and not isinstance(self.spmd_axis_name, str):
            raise ArgumentTypeError(
                "StackOptions.spmd_axis_name",
                "a mesh axis name (str) or None",
                repr(self.spmd_axis_name),
            )
        # Stored as a sorted tuple of pairs so that options stay hashable (static under jit).
        pairs = collection_axes_pairs("StackOptions.collection_axes", self.collection_axes)
        object.__setattr__(self, "collection_axes", pairs)


def collection_axes_pairs(name: str, value: Any) -> tuple[tuple[str, int | None], ...]:
    """``value`` (a mapping, or pairs) checked and kept as a sorted tuple of pairs (hashable)."""
    axes = value
    if isinstance(axes, tuple):
        try:
            axes = dict(axes)
        except (TypeError, ValueError):
            pass
    if not isinstance(axes, Mapping):
        raise ArgumentTypeError(name, "a mapping from collection name to 0 or None", repr(value))
    for key, axis in axes.items():
        if key == "params" or axis not in (0, None) or isinstance(axis, bool):
            raise ArgumentTypeError(
                name,
                "a map of collections other than 'params' to 0 (per example) or None (shared)",
                f"{key!r}: {axis!r}",
                "params follow StackOptions.batch",
            )
    return tuple(sorted(axes.items()))


def require_options(value: Any, name: str = "options") -> StackOptions:
    """``value`` if it is a :class:`StackOptions`; else the error every function taking one raises."""
    if not isinstance(value, StackOptions):
        raise ArgumentTypeError(
            name, "a StackOptions", repr(value), "e.g. StackOptions(num_layers=4)"
        )
    return value
