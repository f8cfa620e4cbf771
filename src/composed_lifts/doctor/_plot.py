"""``plot_layout``: a picture of the param layout, each leaf a row of boxes, one box per axis.

Each box is labelled with its axis's role and size (``layer N=4``) and
coloured by role, so that a batch axis where none was meant stands out.
Written with matplotlib's Agg backend (no display needed), atomically.
"""

from __future__ import annotations

import os

from .._atomic import atomic_writer
from ._describe import LayoutReport
from ._roles import AxisRole

__all__ = ["plot_layout"]

_COLORS = {
    AxisRole.LAYER: "#4c78a8",
    AxisRole.BATCH: "#e45756",
    AxisRole.FEATURE: "#9d9d9d",
    AxisRole.MIXED: "#b279a2",
}


def plot_layout(layout: LayoutReport, path: str | os.PathLike, *, title: str | None = None) -> None:
    """Draw ``layout`` to a PNG file at ``path``.

    >>> import pathlib, tempfile
    >>> from composed_lifts import Block
    >>> from composed_lifts.doctor import Composition, describe
    >>> layout = describe(Block(features=4), Composition(num_layers=2), carry=(3, 4))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     plot_layout(layout, pathlib.Path(d) / "layout.png")
    ...     (pathlib.Path(d) / "layout.png").read_bytes()[:4]
    b'\\x89PNG'
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle

    leaves = layout.leaves
    max_axes = max((len(leaf.shape) for leaf in leaves), default=0)
    box_w = 1.6
    label_w = max(2.4, 0.085 * max((len(leaf.path) for leaf in leaves), default=0) + 0.5)
    fig = Figure(figsize=(label_w + 1.2 + box_w * max(max_axes, 1) + 1.6, 1.6 + 0.6 * len(leaves)))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    width = label_w + box_w * max(max_axes, 1) + 2.8
    height = len(leaves) + 2.4
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")
    c = layout.composition
    block = layout.block_name
    heading = title or f"{layout.block}: {c.order.value}, N={c.num_layers}, B={layout.batch}"
    ax.text(0.2, height - 0.45, heading, fontsize=11, weight="bold", va="center")
    ax.text(
        0.2,
        height - 0.95,
        f"total {layout.count:,} params, {layout.nbytes:,} bytes = "
        f"{layout.unrolled.blocks} x {block} ({layout.unrolled.per_block_count:,} params each)",
        fontsize=9,
        va="center",
    )
    for row, leaf in enumerate(leaves):
        y = height - 1.9 - row
        ax.text(0.2, y + 0.35, leaf.path, fontsize=9, va="center", family="monospace")
        ax.text(
            label_w + 0.1 + box_w * max(max_axes, 1) + 0.2,
            y + 0.35,
            f"{leaf.count:,} params",
            fontsize=9,
            va="center",
        )
        if not leaf.shape:
            ax.text(label_w + 0.2, y + 0.35, "(scalar)", fontsize=9, va="center")
        for i, (role, size) in enumerate(zip(leaf.roles, leaf.shape)):
            x = label_w + 0.1 + i * box_w
            ax.add_patch(
                Rectangle((x, y), box_w - 0.1, 0.7, facecolor=_COLORS[role], edgecolor="black")
            )
            ax.text(
                x + (box_w - 0.1) / 2,
                y + 0.35,
                f"{role.value} {role.letter}={size}",
                fontsize=8.5,
                ha="center",
                va="center",
                color="white",
                weight="bold",
            )
    used = {role for leaf in leaves for role in leaf.roles}
    handles = [Patch(color=_COLORS[r], label=r.value) for r in AxisRole if r in used]
    if handles:
        ax.legend(handles=handles, loc="lower right", fontsize=8, ncols=len(handles), frameon=False)
    with atomic_writer(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
