"""``composed-lifts show``: a checkpoint's tensors, its recorded layout and its size."""

from __future__ import annotations

import argparse
import os


def register(commands) -> None:
    p = commands.add_parser(
        "show",
        help="print a checkpoint's tensors, recorded layout and total size",
        description="Print the tensors of a .safetensors file or Orbax folder (key, shape, dtype, "
        "bytes), the layout composed-lifts recorded in it, and the total size. Reads no data.",
    )
    p.add_argument("file", metavar="FILE", help="checkpoint to describe")
    p.set_defaults(handler=show)


def _tensors(path: str) -> list[tuple[str, tuple, str]]:
    if os.path.isdir(path):
        import jax

        from .._keymap import path_str
        from ..checkpoint._orbax import _metadata

        tree = _metadata(path).item_metadata.tree
        leaves = jax.tree_util.tree_flatten_with_path(
            tree, is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype")
        )[0]
        return [(path_str(p), tuple(m.shape), str(m.dtype)) for p, m in leaves]
    from ..checkpoint._safetensors import SafetensorsFile

    with SafetensorsFile(path) as f:
        return [(key, shape, dtype.name) for key, (dtype, shape, _) in f.tensors.items()]


def show(args: argparse.Namespace) -> int:
    import numpy as np
    from rich.table import Table

    from ..checkpoint import read_layout
    from ..checkpoint._safetensors import np_dtype
    from ._console import Console

    layout = read_layout(args.file)
    tensors = _tensors(args.file)
    console = Console(highlight=False)
    kind = "Orbax checkpoint" if os.path.isdir(args.file) else "safetensors file"
    console.print(f"{args.file}: {kind}, {len(tensors)} tensors")
    if layout is None:
        console.print("layout: none recorded (load it with an explicit keymap=)")
    else:
        console.print(f"layout: written by {layout.library}, {layout.keymap.value} keys")
        for r in layout.stacks:
            batch = f"ensemble of {r.ensemble_size}" if r.ensemble_size else "shared"
            axis = f", layer axis {r.layer_axis}" if r.form.value == "stacked" else ""
            console.print(
                f"  stack {r.path or '(whole tree)'!s}: {r.num_layers} layers, {r.form.value}"
                f"{axis}, {batch}, {', '.join(r.dtypes)}"
            )
    table = Table(show_edge=False)
    for col in ("key", "shape", "dtype", "bytes"):
        table.add_column(col, justify="right" if col == "bytes" else "left")
    total = 0
    for key, shape, dtype in tensors:
        size = int(np.prod(shape, dtype=np.int64)) * np_dtype(dtype).itemsize
        total += size
        table.add_row(key, str(shape), dtype, f"{size:,}")
    console.print(table)
    console.print(f"total: {total:,} bytes")
    return 0
