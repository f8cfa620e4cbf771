"""The layout doctor: what a composition of ``nn.scan`` and ``nn.vmap`` does to your params.

``describe`` reports the param tree a composition will make, without running
it (``jax.eval_shape``), with the role of every axis found by probing;
``describe_pattern`` does the same for a stack of a repeating pattern of block
kinds (which layers are which kind, and their params); ``check`` adds findings for the classic pitfalls (width mismatch, ensemble by
accident, ensemble without split, confused split, lift order reversed), each
with a severity, an explanation and the fix; ``plot_layout`` draws the layout.
"""

from .._block_spec import field_names as field_names
from ._check import CheckReport as CheckReport
from ._check import Finding as Finding
from ._check import Pitfall as Pitfall
from ._check import Severity as Severity
from ._check import check as check
from ._compare import OrderComparison as OrderComparison
from ._describe import LayoutReport as LayoutReport
from ._describe import LeafReport as LeafReport
from ._describe import UnrolledTotals as UnrolledTotals
from ._describe import describe as describe
from ._describe import leaf_reports as leaf_reports
from ._describe_pattern import KindReport as KindReport
from ._describe_pattern import PatternReport as PatternReport
from ._describe_pattern import describe_pattern as describe_pattern
from ._plot import plot_layout as plot_layout
from ._roles import AxisRole as AxisRole
from ._roles import axis_roles as axis_roles
from ._roles import probe_sizes as probe_sizes
from ._spec import Composition as Composition
from ._spec import LiftOrder as LiftOrder
from ._spec import LiftParams as LiftParams
from ._spec import Spelling as Spelling
from ._spec import compose as compose

__all__ = [
    "AxisRole",
    "CheckReport",
    "Composition",
    "Finding",
    "KindReport",
    "LayoutReport",
    "LeafReport",
    "LiftOrder",
    "LiftParams",
    "OrderComparison",
    "PatternReport",
    "Pitfall",
    "Severity",
    "Spelling",
    "UnrolledTotals",
    "axis_roles",
    "check",
    "compose",
    "describe",
    "describe_pattern",
    "field_names",
    "leaf_reports",
    "plot_layout",
    "probe_sizes",
]
