"""``check``: findings for the classic pitfalls of composing ``nn.scan`` and ``nn.vmap``.

Each :class:`Finding` names its :class:`Pitfall`, a :class:`Severity`, a plain
explanation with the numbers of the case at hand, and the fix. The spec-level
faults (the RNG splits) are found from the :class:`Composition` alone, the
width mismatch from one layer evaluated abstractly, both before any tracing of
the stack; the lift order is judged by measuring both orders
(:func:`compare_lift_orders`).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from typing import Any

import flax.linen as nn
import jax

from .._arguments import check_seed
from .._block_spec import BlockSpec, block_name
from .._options import BatchMode, StackOptions
from ..errors import BlockCallError, BlockOutputError, CarryChangedError, SharedCollectionError
from ._compare import OrderComparison, compare_lift_orders
from ._describe import LayoutReport, confused_splits, describe
from ._inputs import as_block, as_carry, carry_text, check_one_layer, per_example
from ._spec import Composition, LiftOrder, as_composition
from ._written import Unlifted, unlifted_variables

__all__ = ["CheckReport", "Finding", "Pitfall", "Severity", "check"]


class Severity(enum.Enum):
    """How bad a finding is: ``ERROR`` fails or computes something else; ``WARNING`` runs but
    is probably not what you meant; ``INFO`` is worth knowing."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class Pitfall(enum.Enum):
    """The faults the doctor knows."""

    WIDTH_MISMATCH = "width-mismatch"
    CARRY_DTYPE = "carry-dtype"
    CARRY_STRUCTURE = "carry-structure"
    BLOCK_OUTPUT = "block-output"
    BLOCK_FAILS = "block-fails"
    CONFUSED_SPLIT = "confused-split"
    LAYERS_WITHOUT_SPLIT = "layers-without-split"
    WEIGHT_TYING = "weight-tying"
    ENSEMBLE_BY_ACCIDENT = "ensemble-by-accident"
    ENSEMBLE_WITHOUT_SPLIT = "ensemble-without-split"
    SHARED_BY_ACCIDENT = "shared-by-accident"
    LIFT_ORDER_REVERSED = "lift-order-reversed"
    PARTITION_NAME_MISSING = "partition-name-missing"
    COLLECTION_NOT_LIFTED = "collection-not-lifted"
    SHARED_COLLECTION_UPDATED = "shared-collection-updated"


@dataclasses.dataclass(frozen=True)
class Finding:
    """One fault: what it is, how bad, what it means for your params, and how to fix it."""

    pitfall: Pitfall
    severity: Severity
    message: str
    fix: str

    def as_dict(self) -> dict:
        return {
            "pitfall": self.pitfall.value,
            "severity": self.severity.value,
            "message": self.message,
            "fix": self.fix,
        }


@dataclasses.dataclass(frozen=True)
class CheckReport:
    """What :func:`check` found: the findings, the layout (when it could be evaluated), and the
    lift-order measurement (when the order is reversed)."""

    block: str
    composition: Composition
    carry: str
    batch: int
    findings: tuple[Finding, ...]
    layout: LayoutReport | None
    comparison: OrderComparison | None = None

    @property
    def block_name(self) -> str:
        """The block's class name (``Block``), as the lifts line names it."""
        return block_name(self.block)

    @property
    def ok(self) -> bool:
        """No finding is an error."""
        return not any(f.severity is Severity.ERROR for f in self.findings)

    def find(self, pitfall: Pitfall) -> Finding | None:
        return next((f for f in self.findings if f.pitfall is pitfall), None)

    def as_dict(self) -> dict:
        return {
            "block": self.block,
            "recipe": self.composition.recipe(self.block_name),
            "carry": self.carry,
            "batch": self.batch,
            "ok": self.ok,
            "findings": [f.as_dict() for f in self.findings],
            "layout": None if self.layout is None else self.layout.as_dict(),
            "comparison": None if self.comparison is None else self.comparison.as_dict(),
        }


def _layer_findings(c: Composition, layout: LayoutReport) -> list[Finding]:
    n = c.num_layers
    if c.scan.variable_axis is None:  # split_rngs True was refused before (confused split)
        return [
            Finding(
                Pitfall.WEIGHT_TYING,
                Severity.INFO,
                f"the scan's variable_axes={{'params': None}} means weight tying: one set of "
                f"params shared by all {n} layers, the same {layout.block} applied {n} times "
                f"({layout.count:,} params where per-layer params would take {n} times as many); "
                f"Flax's nn.scan refuses None in variable_axes (a bare AssertionError), so the "
                f"lifts line spells it as Flax accepts it",
                'write nn.scan(..., variable_broadcast="params", split_rngs={"params": False}) '
                "(as the lifts line shows); for per-layer params set variable_axes={'params': 0} "
                "with split_rngs={'params': True} on the scan",
            )
        ]
    if not c.scan.split_rngs:
        per_layer = layout.count // n
        return [
            Finding(
                Pitfall.LAYERS_WITHOUT_SPLIT,
                Severity.WARNING,
                f"the scan's variable_axes={{'params': 0}} stores one slice of params per layer, "
                f"but the scan's split_rngs={{'params': False}} initialises every slice from the "
                f"same key: {n} identical layers at init, {layout.count - per_layer:,} params "
                f"spent on copies; they drift apart only through training",
                "set split_rngs={'params': True} on the scan for layers that start different; "
                'for one set shared by all layers write variable_broadcast="params" on the scan '
                "(weight tying)",
            )
        ]
    return []


def _ensemble_findings(c: Composition, layout: LayoutReport) -> list[Finding]:
    if not c.batched:
        return []
    b, n = layout.batch, c.num_layers
    if c.vmap.variable_axis is None:
        if c.intent is BatchMode.ENSEMBLE:
            return [
                Finding(
                    Pitfall.SHARED_BY_ACCIDENT,
                    Severity.WARNING,
                    f"you meant an ensemble, but the vmap's variable_axes={{'params': None}} shares "
                    f"one stack of {n} layers ({layout.count:,} params) across all {b} examples",
                    "give each example its own stack: variable_axes={'params': 0} with "
                    "split_rngs={'params': True} on the vmap (StackOptions(batch=BatchMode.ENSEMBLE))",
                )
            ]
        return []
    layers = b * n
    if not c.vmap.split_rngs:
        return [
            Finding(
                Pitfall.ENSEMBLE_WITHOUT_SPLIT,
                Severity.WARNING,
                f"the vmap's variable_axes={{'params': 0}} stores one copy of the {n}-layer stack per "
                f"example ({b} x {n} = {layers} layers, {layout.count:,} params, {layout.nbytes:,} "
                f"bytes), but split_rngs={{'params': False}} initialises every copy from the same "
                f"key: {b} identical copies at init, {layout.count - layout.count // b:,} params "
                f"({layout.nbytes - layout.nbytes // b:,} bytes) spent on duplicates",
                "for shared params use variable_axes={'params': None} on the vmap (the seed's "
                "layout, 1/B of the memory); for a real ensemble keep variable_axes={'params': 0} "
                "and set split_rngs={'params': True}",
            )
        ]
    if c.intent is BatchMode.SHARED:
        return [
            Finding(
                Pitfall.ENSEMBLE_BY_ACCIDENT,
                Severity.WARNING,
                f"the vmap's variable_axes={{'params': 0}} gives every example its own stack: "
                f"{b} x {n} = {layers} independent layers, {layout.count:,} params "
                f"({layout.nbytes:,} bytes) where a stack shared across the batch has "
                f"{layout.count // b:,}; the output shape is the same, so nothing fails",
                "share params across the batch with variable_axes={'params': None} and "
                "split_rngs={'params': False} on the vmap; if you meant an ensemble, say so "
                "(Composition(intent=BatchMode.ENSEMBLE), or --intent ensemble)",
            )
        ]
    return []


def _order_finding(block_name: str, cmp: OrderComparison) -> Finding:
    recipe = f"nn.scan(nn.vmap({block_name}))"
    fix_order = f"write nn.vmap(nn.scan({block_name})), the order linen_stack builds"
    if cmp.reversed_error is not None:
        return Finding(
            Pitfall.LIFT_ORDER_REVERSED,
            Severity.ERROR,
            f"the reversed order {recipe} fails for this block where the usual order runs: "
            f"{cmp.reversed_error}",
            fix_order,
        )
    if cmp.identical:
        return Finding(
            Pitfall.LIFT_ORDER_REVERSED,
            Severity.INFO,
            f"the lift order is reversed ({recipe}), but for {block_name} with these settings it "
            f"makes no difference you can see: measured, both orders initialise identical params "
            f"(same tree, shapes and values) and give identical outputs on a random input; the "
            f"batch axis sits inside the scan, which is not the same program, but here it is the "
            f"same function and the same layout",
            f"nothing to fix for this block; nn.vmap(nn.scan({block_name})) (the order "
            f"linen_stack builds) stays the safer habit: once params are per example it keeps "
            f"them (B, N, ...), where this order makes them (N, B, ...)",
        )
    parts = []
    if cmp.axes_swapped:
        parts.append(
            "its params are (N, B, ...) (layer axis first) where the usual order gives (B, N, ...)"
        )
    elif not cmp.same_structure:
        parts.append("its param tree has other paths than the usual order's")
    if cmp.params_equal is False:
        parts.append("the init values differ (the RNG is split in the other order)")
    elif cmp.params_equal:
        swapped = " once the axes are swapped" if cmp.axes_swapped else ""
        parts.append(f"the init values are the same{swapped}")
    if cmp.outputs_max_diff:
        parts.append(f"outputs differ by up to {cmp.outputs_max_diff:.3g} (each with its own init)")
    else:
        parts.append("outputs are identical (each with its own init)")
    if cmp.same_params_max_diff is not None:
        parts.append(
            "with the same params both orders compute the same function"
            if cmp.same_params_max_diff == 0.0
            else "with the same params outputs still differ by up to "
            f"{cmp.same_params_max_diff:.3g}"
        )
    return Finding(
        Pitfall.LIFT_ORDER_REVERSED,
        Severity.WARNING,
        f"the lift order is reversed ({recipe}); measured for {block_name}: " + "; ".join(parts),
        f"{fix_order}; or keep this order and index params as [layer, example, ...]",
    )


def check(
    block: nn.Module | type[nn.Module],
    composition: Composition | StackOptions,
    carry: Any,
    *,
    seed: int = 0,
) -> CheckReport:
    """Findings for ``composition`` of ``block`` on ``carry`` (arguments as for :func:`describe`).

    Spec faults and a carry that changes shape are found before the stack is
    traced; a reversed lift order is measured by running both orders on a
    random input drawn from ``seed``. The correct composition has no findings.

    >>> from composed_lifts import Block
    >>> from composed_lifts.doctor import LiftParams
    >>> check(Block(features=8), Composition(num_layers=3), carry=(4, 8)).findings
    ()
    >>> bad = Composition(num_layers=3, vmap=LiftParams(variable_axis=0, split_rngs=True))
    >>> report = check(Block(features=8), bad, carry=(4, 8))
    >>> [(f.pitfall.value, f.severity.value) for f in report.findings]
    [('ensemble-by-accident', 'warning')]
    >>> report.findings[0].message
    "the vmap's variable_axes={'params': 0} gives every example its own stack: 4 x 3 = 12
    independent layers, 864 params ..."
    """
    spec = as_block(block)
    composition = as_composition(composition)
    seed = check_seed(seed)
    abstract, batch = as_carry(carry, composition)
    report = functools.partial(CheckReport, spec.text(), composition, carry_text(abstract), batch)
    faults = confused_splits(composition, batch)
    if faults:
        return report(
            tuple(
                Finding(Pitfall.CONFUSED_SPLIT, Severity.ERROR, f.explanation, f.fix)
                for f in faults
            ),
            None,
        )
    try:
        check_one_layer(spec, abstract, composition)
    except CarryChangedError as err:
        return report((_carry_finding(spec, abstract, composition, err),), None)
    except BlockCallError as err:
        return report((_call_finding(spec, abstract, composition, err),), None)
    except SharedCollectionError as err:
        return report((_shared_finding(spec.name, composition, err),), None)
    except BlockOutputError as err:
        fix = "end the block's __call__ with `return carry, None` (or `return carry, y`)"
        return report((Finding(Pitfall.BLOCK_OUTPUT, Severity.ERROR, str(err), fix),), None)
    unlifted = unlifted_variables(spec, composition, abstract)
    if unlifted:
        return report(tuple(_written_findings(spec.name, composition, unlifted)), None)
    layout = describe(block, composition, carry)
    findings = _layer_findings(composition, layout) + _ensemble_findings(composition, layout)
    comparison = None
    if composition.order is LiftOrder.SCAN_OF_VMAP:
        comparison = compare_lift_orders(spec, composition, abstract, seed=seed)
        findings.append(_order_finding(spec.name, comparison))
    return report(tuple(findings), layout, comparison)


def _width_detail(spec: BlockSpec, abstract, composition: Composition) -> str:
    """``x.shape[-1] is 5 but Block(features=4) ...`` when a ``features`` field explains it."""
    fields = dict(spec.fields)
    leaves = jax.tree_util.tree_leaves(per_example(abstract, composition))
    features = fields.get("features")
    if isinstance(features, int) and len(leaves) == 1 and leaves[0].shape:
        width = leaves[0].shape[-1]
        if width != features:
            return (
                f"x.shape[-1] is {width} but {spec.text()} maps every layer's output to width "
                f"{features}"
            )
    return ""


_WIDTH_FIX = (
    "make x.shape[-1] == features: build the block with features equal to the carry's "
    "width, or project the input to features with a Dense before the stack"
)


def _carry_finding(spec, abstract, composition, err: CarryChangedError) -> Finding:
    if err.kind == "dtype":
        return Finding(
            Pitfall.CARRY_DTYPE,
            Severity.ERROR,
            f"the block changes {err.leaf} from {err.before} to {err.after} across one layer; a "
            f"scan's carry must keep its dtype from layer to layer, so the stack fails as soon "
            f"as JAX traces it",
            f"return the carry in the dtype it came in: cast the block's output back "
            f"(y.astype({err.before.split('[')[0]})), or give the stack a carry of dtype "
            f"{err.after.split('[')[0]}",
        )
    if err.kind == "structure":
        return Finding(
            Pitfall.CARRY_STRUCTURE,
            Severity.ERROR,
            str(err),
            "return the carry with the same keys and nesting, and put other outputs in y",
        )
    detail = _width_detail(spec, abstract, composition)
    has_features = "features" in dict(spec.fields)
    return Finding(
        Pitfall.WIDTH_MISMATCH,
        Severity.ERROR,
        f"the block changes {err.leaf} from {err.before} to {err.after} across one layer"
        f"{': ' + detail if detail else ''}; a scan's carry must keep its shape from layer to "
        f"layer, so the stack would fail as soon as JAX traces it",
        _WIDTH_FIX
        if has_features
        else "make the block return a carry of the same shape as the one it receives",
    )


def _call_finding(spec, abstract, composition, err: BlockCallError) -> Finding:
    detail = _width_detail(spec, abstract, composition)
    if detail:  # the seed's pitfall in a residual block: x + Dense(features)(x)
        return Finding(
            Pitfall.WIDTH_MISMATCH,
            Severity.ERROR,
            f"{detail}, and the block fails on the carry it is given ({err.cause}); in a "
            f"residual block x + Dense(features)(x) the widths must agree, and a scan's carry "
            f"must keep its shape from layer to layer",
            _WIDTH_FIX,
        )
    return Finding(
        Pitfall.BLOCK_FAILS,
        Severity.ERROR,
        str(err),
        "make the block accept the carry (and return one of the same shape and dtype), or "
        "describe it with a carry it takes",
    )


def _name(name: str | None) -> str:
    return "None" if name is None else f'"{name}"'


def _written_findings(block: str, c: Composition, unlifted: Unlifted) -> list[Finding]:
    """The faults of the recipe as written that Flax raises on (``Spelling.PARAMS_ONLY``)."""
    findings = []
    if unlifted.partitioned is not None:
        path, names = unlifted.partitioned
        lifts = " and ".join(unlifted.unnamed_in)
        adds = {
            "nn.scan": f"metadata_params={{nn.PARTITION_NAME: {_name(c.layer_axis_name)}}} "
            f"to the nn.scan",
            "nn.vmap": f"metadata_params={{nn.PARTITION_NAME: {_name(c.batch_axis_name)}}} "
            f"to the nn.vmap",
        }
        findings.append(
            Finding(
                Pitfall.PARTITION_NAME_MISSING,
                Severity.ERROR,
                f"{block} names its params' axes with nn.with_partitioning (params/{path} has "
                f"names {names}), but {lifts} give{'s' if len(unlifted.unnamed_in) == 1 else ''} "
                f"params a new axis without metadata_params: as written, Flax refuses to move "
                f"such a param and init fails (PartitioningUnspecifiedError: partition_name is "
                f"not specified in metadata_params)",
                "add " + " and ".join(adds[lift] for lift in unlifted.unnamed_in) + ", which "
                "names the new axis in each param's partition spec (linen_stack does this)",
            )
        )
    for collection, path in unlifted.collections:
        shared = (
            f"with the block's BatchNorm(axis_name={_name(c.batch_axis_name)}) so that its "
            f"statistics are averaged over the batch"
            if collection == "batch_stats"
            else "when the block does not update it per example"
        )
        vmap = (
            f', and "{collection}": 0 to the nn.vmap\'s (per example; or "{collection}": None '
            f"for one set shared by the batch, {shared})"
            if c.batched
            else ""
        )
        findings.append(
            Finding(
                Pitfall.COLLECTION_NOT_LIFTED,
                Severity.ERROR,
                f"{block} keeps variables in {collection!r} ({path}), but the lifts as written "
                f"name only 'params', so Flax does not know where {collection!r} goes across the "
                f"layers{' and the batch' if c.batched else ''}: the recipe fails in Flax when "
                f"the stack is initialised or applied",
                f'add "{collection}": 0 to the nn.scan\'s variable_axes (one set per layer)'
                f"{vmap}; linen_stack lifts every collection",
            )
        )
    return findings


def _shared_finding(block: str, c: Composition, err: SharedCollectionError) -> Finding:
    names = ", ".join(repr(name) for name in err.collections)
    first = err.collections[0]
    return Finding(
        Pitfall.SHARED_COLLECTION_UPDATED,
        Severity.ERROR,
        f"{block} updates {names} per example when applied, but the vmap shares "
        f"{'it' if len(err.collections) == 1 else 'them'} across the batch (variable_axes "
        f"{{{first!r}: None}}): every example computes its own update of one shared value, so "
        f"the stack fails at apply in Flax",
        f"reduce across the batch inside the block (nn.BatchNorm(axis_name="
        f'{_name(c.batch_axis_name)})), or keep one copy per example: "{first}": 0 in the '
        f"nn.vmap's variable_axes (StackOptions(collection_axes={{{first!r}: 0}}) for "
        f"linen_stack)",
    )
