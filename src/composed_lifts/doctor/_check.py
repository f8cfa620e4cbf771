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

import jax
import numpy as np

from .._errors import BlockOutputError, CarryChangedError
from .._options import BatchMode
from .._arguments import check_seed
from ._compare import OrderComparison, compare_lift_orders
from ._describe import LayoutReport, confused_split_fix, confused_split_message, describe
from ._inputs import as_block, as_carry, check_one_layer
from ._spec import Composition, LiftOrder, as_composition

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
    BLOCK_OUTPUT = "block-output"
    CONFUSED_SPLIT = "confused-split"
    ENSEMBLE_BY_ACCIDENT = "ensemble-by-accident"
    ENSEMBLE_WITHOUT_SPLIT = "ensemble-without-split"
    SHARED_BY_ACCIDENT = "shared-by-accident"
    LIFT_ORDER_REVERSED = "lift-order-reversed"


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
    def ok(self) -> bool:
        """No finding is an error."""
        return not any(f.severity is Severity.ERROR for f in self.findings)

    def find(self, pitfall: Pitfall) -> Finding | None:
        return next((f for f in self.findings if f.pitfall is pitfall), None)

    def as_dict(self) -> dict:
        return {
            "block": self.block,
            "recipe": self.composition.recipe(self.block.split("(")[0]),
            "carry": self.carry,
            "batch": self.batch,
            "ok": self.ok,
            "findings": [f.as_dict() for f in self.findings],
            "layout": None if self.layout is None else self.layout.as_dict(),
            "comparison": None if self.comparison is None else self.comparison.as_dict(),
        }


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


def check(block, composition: Composition, carry, *, seed: int = 0) -> CheckReport:
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
    message = confused_split_message(composition, batch)
    if message is not None:
        fix = confused_split_fix(composition)
        return report((Finding(Pitfall.CONFUSED_SPLIT, Severity.ERROR, message, fix),), None)
    try:
        check_one_layer(spec, abstract, composition)
    except CarryChangedError as err:
        finding = Finding(
            Pitfall.WIDTH_MISMATCH,
            Severity.ERROR,
            _width_message(spec, abstract, err),
            _width_fix(spec),
        )
        return report((finding,), None)
    except BlockOutputError as err:
        fix = "end the block's __call__ with `return carry, None` (or `return carry, y`)"
        return report((Finding(Pitfall.BLOCK_OUTPUT, Severity.ERROR, str(err), fix),), None)
    layout = describe(block, composition, carry)
    findings = _ensemble_findings(composition, layout)
    comparison = None
    if composition.order is LiftOrder.SCAN_OF_VMAP:
        comparison = compare_lift_orders(spec, composition, abstract, seed=seed)
        findings.append(_order_finding(spec.name, comparison))
    return report(tuple(findings), layout, comparison)


def carry_text(abstract) -> str:
    """``float32[4, 8]`` for one leaf, a dict of those for a pytree carry."""
    text = jax.tree_util.tree_map(
        lambda s: f"{np.dtype(s.dtype).name}[{', '.join(map(str, s.shape))}]", abstract
    )
    return text if isinstance(text, str) else str(text)


def _width_message(spec, abstract, err: CarryChangedError) -> str:
    text = str(err).split(" across one layer")[0]
    fields = dict(spec.fields)
    leaves = jax.tree_util.tree_leaves(abstract)
    detail = ""
    if "features" in fields and len(leaves) == 1 and leaves[0].shape[-1] != fields["features"]:
        detail = (
            f": x.shape[-1] is {leaves[0].shape[-1]} but {spec.text()} maps every layer's "
            f"output to width {fields['features']}"
        )
    return (
        f"{text} across one layer{detail}; a scan's carry must keep its shape from layer to "
        f"layer, so the stack would fail as soon as JAX traces it"
    )


def _width_fix(spec) -> str:
    if "features" in dict(spec.fields):
        return (
            "make x.shape[-1] == features: build the block with features equal to the carry's "
            "width, or project the input to features with a Dense before the stack"
        )
    return "make the block return a carry of the same shape and dtype as the one it receives"
