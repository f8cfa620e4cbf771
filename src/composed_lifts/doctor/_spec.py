"""The composition of lifts the doctor examines: the lift order and each lift's params settings.

A :class:`Composition` spells out what the seed's recipe spells out in code::

    ScanLayer = nn.scan(Block, variable_axes={"params": 0},
                        split_rngs={"params": True}, length=N)
    BatchedScanLayer = nn.vmap(ScanLayer, in_axes=0, out_axes=0,
                               variable_axes={"params": None},
                               split_rngs={"params": False})

is ``Composition(num_layers=N)``: the order ``LiftOrder.VMAP_OF_SCAN``, the
scan's ``LiftParams(variable_axis=0, split_rngs=True)`` and the vmap's
``LiftParams(variable_axis=None, split_rngs=False)``. :func:`compose` builds the
Linen module class it describes, faults included, so that the doctor can
evaluate exactly what a user would have written.
"""

from __future__ import annotations

import dataclasses
import enum

import flax.linen as nn

from .._errors import ArgumentRangeError, ArgumentTypeError
from .._options import BatchMode, LayerInputs, StackOptions
from .._arguments import check_integer

__all__ = ["Composition", "LiftOrder", "LiftParams", "as_composition", "compose"]


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


@dataclasses.dataclass(frozen=True)
class LiftParams:
    """One lift's entries for the ``params`` collection.

    Attributes:
      variable_axis: ``variable_axes["params"]``: ``0`` gives params a new leading axis
        (one slice per layer for the scan, per example for the vmap); ``None`` shares
        them across the lift (for the scan, ``variable_broadcast="params"``).
      split_rngs: ``split_rngs["params"]``: split the init RNG so that every slice
        initialises differently.
    """

    variable_axis: int | None
    split_rngs: bool

    def __post_init__(self):
        axis = self.variable_axis
        if axis is not None and (isinstance(axis, bool) or not isinstance(axis, int)):
            raise ArgumentTypeError(
                f"LiftParams.variable_axis must be 0 or None, got {axis!r}; use 0 for one "
                f"slice per step of the lift, None to share params across it"
            )
        if axis not in (0, None):
            raise ArgumentRangeError(
                f"LiftParams.variable_axis must be 0 or None, got {axis!r}; the doctor "
                f"examines lifts that add a leading axis (0) or none (None)"
            )
        if not isinstance(self.split_rngs, bool):
            raise ArgumentTypeError(
                f"LiftParams.split_rngs must be True or False, got {self.split_rngs!r}"
            )

    def flax_text(self) -> str:
        """The two keyword arguments as they read in Flax code."""
        return (
            f'variable_axes={{"params": {self.variable_axis}}}, '
            f'split_rngs={{"params": {self.split_rngs}}}'
        )


_SCAN_DEFAULT = LiftParams(variable_axis=0, split_rngs=True)
_VMAP_DEFAULT = LiftParams(variable_axis=None, split_rngs=False)


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

    >>> print(Composition(num_layers=4).recipe("Block"))
    nn.vmap(nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True}, length=4),
            variable_axes={"params": None}, split_rngs={"params": False})
    """

    num_layers: int
    order: LiftOrder = LiftOrder.VMAP_OF_SCAN
    scan: LiftParams = _SCAN_DEFAULT
    vmap: LiftParams = _VMAP_DEFAULT
    intent: BatchMode = BatchMode.SHARED

    def __post_init__(self):
        check_integer("Composition.num_layers", self.num_layers, minimum=1)
        for name, cls in (("order", LiftOrder), ("intent", BatchMode)):
            value = getattr(self, name)
            if not isinstance(value, cls):
                choices = ", ".join(f"{cls.__name__}.{m.name}" for m in cls)
                raise ArgumentTypeError(
                    f"Composition.{name} must be a {cls.__name__} ({choices}), got {value!r}"
                )
        for name in ("scan", "vmap"):
            if not isinstance(getattr(self, name), LiftParams):
                raise ArgumentTypeError(
                    f"Composition.{name} must be a LiftParams, got {getattr(self, name)!r}; "
                    f"e.g. LiftParams(variable_axis=0, split_rngs=True)"
                )

    @classmethod
    def from_options(cls, options: StackOptions) -> Composition:
        """The composition that :func:`composed_lifts.linen_stack` builds for ``options``.

        It reads ``num_layers`` and ``batch``; ``remat``, ``reverse`` and ``unroll`` do
        not change the param layout. The doctor calls a block as ``block(carry, None)``,
        so options that change that call (``layer_index``, per-example ``layer_inputs``)
        are refused.
        """
        if not isinstance(options, StackOptions):
            raise ArgumentTypeError(
                f"options must be a StackOptions, got {options!r}; e.g. StackOptions(num_layers=4)"
            )
        if options.layer_index or options.layer_inputs is not LayerInputs.SHARED:
            raise ArgumentTypeError(
                f"the doctor calls the block as block(carry, None), but these options give it "
                f"other arguments (layer_index={options.layer_index}, layer_inputs="
                f"{options.layer_inputs}); describe it with StackOptions(num_layers="
                f"{options.num_layers}, batch={options.batch}) and a block that takes (carry, x)"
            )
        ensemble = options.batch is BatchMode.ENSEMBLE
        return cls(
            num_layers=options.num_layers,
            order=(
                LiftOrder.SCAN_ONLY if options.batch is BatchMode.NONE else LiftOrder.VMAP_OF_SCAN
            ),
            vmap=LiftParams(variable_axis=0 if ensemble else None, split_rngs=ensemble),
            intent=options.batch,
        )

    @property
    def batched(self) -> bool:
        """Whether a vmap maps over a leading batch axis of the carry."""
        return self.order is not LiftOrder.SCAN_ONLY

    def with_layers(self, num_layers: int) -> Composition:
        return dataclasses.replace(self, num_layers=num_layers)

    def with_order(self, order: LiftOrder) -> Composition:
        return dataclasses.replace(self, order=order)

    def scan_kwargs(self) -> dict:
        """The ``nn.scan`` keyword arguments (params as specified, other collections per layer)."""
        kwargs: dict = {"length": self.num_layers, "in_axes": 0, "out_axes": 0}
        if self.scan.variable_axis is None:
            kwargs["variable_broadcast"] = "params"
            kwargs["variable_axes"] = {True: 0}
        else:
            kwargs["variable_axes"] = {"params": self.scan.variable_axis, True: 0}
        kwargs["split_rngs"] = {"params": self.scan.split_rngs, True: True}
        return kwargs

    def vmap_kwargs(self) -> dict:
        """The ``nn.vmap`` keyword arguments (``batch_stats`` shared, others per example)."""
        return {
            "in_axes": 0,
            "out_axes": 0,
            "variable_axes": {"params": self.vmap.variable_axis, "batch_stats": None, True: 0},
            "split_rngs": {"params": self.vmap.split_rngs, True: True},
        }

    def recipe(self, block_name: str = "Block") -> str:
        """The composition as one line of Flax code (params entries only)."""
        scan = f"{self.scan.flax_text()}, length={self.num_layers}"
        vmap = self.vmap.flax_text()
        if self.order is LiftOrder.SCAN_ONLY:
            return f"nn.scan({block_name}, {scan})"
        if self.order is LiftOrder.VMAP_OF_SCAN:
            return f"nn.vmap(nn.scan({block_name}, {scan}), {vmap})"
        return f"nn.scan(nn.vmap({block_name}, {vmap}), {scan})"


def as_composition(value) -> Composition:
    """``value`` if it is a :class:`Composition`; the builder's one for a ``StackOptions``."""
    if isinstance(value, StackOptions):
        return Composition.from_options(value)
    if not isinstance(value, Composition):
        raise ArgumentTypeError(
            f"composition must be a Composition or a StackOptions, got {value!r}; e.g. "
            f"Composition(num_layers=4) or StackOptions(num_layers=4)"
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
            f"block must be a Linen module class (a subclass of flax.linen.Module), got {block!r}"
        )
    if composition.order is LiftOrder.SCAN_ONLY:
        return nn.scan(block, **composition.scan_kwargs())
    if composition.order is LiftOrder.VMAP_OF_SCAN:
        return nn.vmap(nn.scan(block, **composition.scan_kwargs()), **composition.vmap_kwargs())
    return nn.scan(nn.vmap(block, **composition.vmap_kwargs()), **composition.scan_kwargs())
