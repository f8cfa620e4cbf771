"""The composition of lifts the doctor examines: the lift order and each lift's params settings.

A :class:`Composition` spells out what the seed's recipe spells out in code::

    ScanLayer = nn.scan(Block, variable_axes={"params": 0},
                        split_rngs={"params": True}, length=N)
    BatchedScanLayer = nn.vmap(ScanLayer, in_axes=0, out_axes=0,
                               variable_axes={"params": None},
                               split_rngs={"params": False})

is ``Composition(num_layers=N)``: the order ``LiftOrder.VMAP_OF_SCAN``, the
scan's ``LiftParams(variable_axis=0, split_rngs=True)``, the vmap's
``LiftParams(variable_axis=None, split_rngs=False)``, and ``Spelling.PARAMS_ONLY``
(the lifts name the params collection only: no ``metadata_params``, no
``batch_stats``). :func:`compose` builds the Linen module class it describes,
faults included, so that the doctor evaluates exactly what a user would have
written; ``Composition.from_options`` describes what ``linen_stack`` builds
(``Spelling.COMPLETE``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import flax.linen as nn

from .._arguments import check_integer
from .._lifts import (
    PER_LAYER,
    SHARED,
    LiftOrder,
    LiftParams,
    Lifts,
    Spelling,
    batch_params,
    derive_lifts,
)
from .._options import BatchMode, LayerInputs, StackOptions, collection_axes_pairs, require_options
from ..errors import ArgumentTypeError

__all__ = ["Composition", "LiftOrder", "LiftParams", "Spelling", "as_composition", "compose"]


@dataclasses.dataclass(frozen=True)
class Composition:
    """A stack of ``num_layers`` layers built by composing ``nn.scan`` and ``nn.vmap``.

    Attributes:
      num_layers: N, the scan's length (>= 1).
      order: which lift wraps which (:class:`LiftOrder`).
      scan: the scan's params settings (default: one slice per layer, split RNG).
      vmap: the vmap's params settings (default: shared across the batch, no split).
      intent: what you meant the params to be across the batch: ``BatchMode.SHARED``
        (one stack for every example) or ``BatchMode.ENSEMBLE`` (one per example);
        the doctor reports a layout that differs from it.

      collection_axes: the vmap's axis for collections other than params, as
        ``StackOptions.collection_axes`` (``batch_stats`` shared, others per example).
      layer_axis_name, batch_axis_name: as in ``StackOptions``: the partitioning
        names of the two axes, and the vmap's axis name (for ``BatchNorm(axis_name=...)``).
      spelling: how much the recipe writes out (:class:`Spelling`): ``PARAMS_ONLY``, the
        seed's recipe (the default), or ``COMPLETE``, what ``linen_stack`` builds
        (other collections lifted, partition names in ``metadata_params``).

    The lifts it makes are :meth:`lifts` (the derivation ``linen_stack`` uses too),
    and :meth:`recipe` prints them as Flax code that runs as printed:

    >>> print(Composition(num_layers=4).recipe("Block"))
    nn.vmap(nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True}, length=4,
    in_axes=0, out_axes=0), variable_axes={"params": None}, split_rngs={"params": False},
    in_axes=(0, None), out_axes=0, axis_name="batch")
    >>> print(Composition(num_layers=4, spelling=Spelling.COMPLETE).recipe("Block"))
    nn.vmap(nn.scan(Block, variable_axes={"params": 0, True: 0}, split_rngs={"params": True, True:
    True}, length=4, in_axes=0, out_axes=0, metadata_params={nn.PARTITION_NAME: "layers"}),
    variable_axes={"params": None, "batch_stats": None, True: 0}, split_rngs={"params": False, True:
    True}, in_axes=(0, None), out_axes=0, axis_name="batch", metadata_params={nn.PARTITION_NAME:
    "batch"})
    """

    num_layers: int
    order: LiftOrder = LiftOrder.VMAP_OF_SCAN
    scan: LiftParams = PER_LAYER
    vmap: LiftParams = SHARED
    intent: BatchMode = BatchMode.SHARED
    collection_axes: Mapping[str, int | None] | tuple = ()
    layer_axis_name: str | None = "layers"
    batch_axis_name: str = "batch"
    spelling: Spelling = Spelling.PARAMS_ONLY

    def __post_init__(self) -> None:
        check_integer("Composition.num_layers", self.num_layers, minimum=1)
        pairs = collection_axes_pairs("Composition.collection_axes", self.collection_axes)
        object.__setattr__(self, "collection_axes", pairs)
        for name, cls in (("order", LiftOrder), ("intent", BatchMode), ("spelling", Spelling)):
            value = getattr(self, name)
            if not isinstance(value, cls):
                choices = ", ".join(f"{cls.__name__}.{m.name}" for m in cls)
                raise ArgumentTypeError(
                    f"Composition.{name}", f"a {cls.__name__} ({choices})", repr(value)
                )
        for name in ("scan", "vmap"):
            if not isinstance(getattr(self, name), LiftParams):
                raise ArgumentTypeError(
                    f"Composition.{name}",
                    "a LiftParams",
                    repr(getattr(self, name)),
                    "e.g. LiftParams(variable_axis=0, split_rngs=True)",
                )

    @classmethod
    def from_options(cls, options: StackOptions) -> Composition:
        """The composition that :func:`composed_lifts.linen_stack` builds for ``options``.

        Everything that shapes the variables is kept (``batch``, ``collection_axes``,
        the axis names); ``remat``, ``reverse`` and ``unroll`` do not change the
        layout. The doctor calls a block as ``block(carry, None)``, so options that
        change that call (``layer_index``, per-example ``layer_inputs``) are refused.
        """
        require_options(options)
        if options.layer_index or options.layer_inputs is not LayerInputs.SHARED:
            raise ArgumentTypeError(
                "options",
                "options whose block is called as block(carry, None), as the doctor calls it",
                f"layer_index={options.layer_index}, layer_inputs={options.layer_inputs}",
                f"describe it with StackOptions(num_layers={options.num_layers}, "
                f"batch={options.batch}) and a block that takes (carry, x)",
            )
        return cls(
            num_layers=options.num_layers,
            order=(
                LiftOrder.SCAN_ONLY if options.batch is BatchMode.NONE else LiftOrder.VMAP_OF_SCAN
            ),
            vmap=batch_params(options.batch),
            intent=options.batch,
            collection_axes=options.collection_axes,
            layer_axis_name=options.layer_axis_name,
            batch_axis_name=options.batch_axis_name,
            spelling=Spelling.COMPLETE,
        )

    @property
    def batched(self) -> bool:
        """Whether a vmap maps over a leading batch axis of the carry."""
        return self.order is not LiftOrder.SCAN_ONLY

    def with_layers(self, num_layers: int) -> Composition:
        return dataclasses.replace(self, num_layers=num_layers)

    def with_order(self, order: LiftOrder) -> Composition:
        return dataclasses.replace(self, order=order)

    def lifts(self) -> Lifts:
        """The keyword arguments of ``nn.scan`` and ``nn.vmap`` this composition is built from."""
        return derive_lifts(
            self.num_layers,
            order=self.order,
            scan=self.scan,
            vmap=self.vmap,
            collection_axes=self.collection_axes,
            layer_axis_name=self.layer_axis_name,
            batch_axis_name=self.batch_axis_name,
            spelling=self.spelling,
        )

    def recipe(self, block_name: str = "Block") -> str:
        """The composition as one line of Flax code, exactly as it is built (runs as printed)."""
        return self.lifts().recipe(block_name)


def as_composition(value) -> Composition:
    """``value`` if it is a :class:`Composition`; the builder's one for a ``StackOptions``."""
    if isinstance(value, StackOptions):
        return Composition.from_options(value)
    if not isinstance(value, Composition):
        raise ArgumentTypeError(
            "composition",
            "a Composition or a StackOptions",
            repr(value),
            "e.g. Composition(num_layers=4) or StackOptions(num_layers=4)",
        )
    return value


def compose(block: type[nn.Module], composition: Composition) -> type[nn.Module]:
    """The Linen module class ``composition`` describes, built exactly as written (faults included).

    The result takes the block's fields and is called as ``stack(carry, None)``,
    returning ``(carry, ys)``.

    >>> import jax, jax.numpy as jnp
    >>> from composed_lifts import Block
    >>> Stack = compose(Block, Composition(num_layers=3))
    >>> init = Stack(features=2).init
    >>> shapes = jax.eval_shape(init, jax.random.PRNGKey(0), jnp.ones((5, 2)), None)
    >>> jax.tree_util.tree_map(lambda s: s.shape, shapes["params"])
    {'Dense_0': {'bias': (3, 2), 'kernel': (3, 2, 2)}}
    """
    if not (isinstance(block, type) and issubclass(block, nn.Module)):
        raise ArgumentTypeError(
            "block", "a Linen module class (a subclass of flax.linen.Module)", repr(block)
        )
    return composition.lifts().build(block)
