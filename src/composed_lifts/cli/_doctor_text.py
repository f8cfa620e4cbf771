"""A doctor's :class:`CheckReport` as readable terminal text (rich): the param tree with axis roles, the
totals, the unrolled equivalent, and the findings with their fixes."""

from __future__ import annotations

from ..doctor import CheckReport, LayoutReport, Severity, probe_sizes

__all__ = ["render_text"]

_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "bold yellow", Severity.INFO: "bold cyan"}


def _tree(layout: LayoutReport):
    from rich.markup import escape
    from rich.tree import Tree

    root = Tree("variables", guide_style="dim")
    nodes: dict[tuple[str, ...], Tree] = {}
    width = max(len(leaf.path.split("/")[-1]) for leaf in layout.leaves)
    shape_w = max(len(str(leaf.shape)) for leaf in layout.leaves)
    axes_w = max(len(leaf.axes_text()) for leaf in layout.leaves)
    for leaf in layout.leaves:
        *folders, name = leaf.path.split("/")
        parent = root
        for i in range(len(folders)):
            key = tuple(folders[: i + 1])
            if key not in nodes:
                nodes[key] = parent.add(escape(folders[i]))
            parent = nodes[key]
        parent.add(
            f"{escape(name):<{width}}  {str(leaf.shape):<{shape_w}}  {leaf.axes_text():<{axes_w}}  "
            f"{leaf.dtype}  {leaf.count:>8,} params  {leaf.nbytes:>9,} bytes"
        )
    return root


def render_text(report: CheckReport, console) -> None:
    """Print ``report`` on a ``rich.console.Console`` (its text escaped: brackets stay brackets)."""
    from rich.markup import escape

    c = report.composition
    console.print(
        f"[bold]{escape(report.block)}[/bold], N={c.num_layers} layers, B={report.batch} "
        f"examples, carry {escape(report.carry)}"
    )
    console.print(f"lifts: {escape(c.recipe(report.block_name))}", soft_wrap=True)
    console.print(f"meant: params {c.intent.value} across the batch")
    layout = report.layout
    if layout is not None:
        console.print(_tree(layout))
        n2, b2 = probe_sizes(c.num_layers, layout.batch)
        console.print(
            f"axis roles found by probing (evaluated again with N={n2} and with B={b2}): "
            "N = layer, B = batch (one slice per example), F = feature"
        )
        u = layout.unrolled
        console.print(f"total: {layout.count:,} params, {layout.nbytes:,} bytes")
        console.print(
            f"unrolled equivalent: {u.blocks} separate {report.block_name} instances x "
            f"{u.per_block_count:,} params = {u.count:,} params, {u.nbytes:,} bytes"
        )
    else:
        console.print("layout: not evaluated (an error below stops it)")
    if not report.findings:
        console.print("[bold green]findings: none[/bold green]")
        return
    console.print(f"findings: {len(report.findings)}")
    for f in report.findings:
        console.print(
            f"[{_STYLE[f.severity]}]{f.severity.value.upper()}[/] {f.pitfall.value}: "
            f"{escape(f.message)}"
        )
        console.print(f"  [bold]fix:[/bold] {escape(f.fix)}")
