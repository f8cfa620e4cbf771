"""``composed-lifts show``: a checkpoint's or Hugging Face folder's tensors, layout and size."""

from __future__ import annotations

import argparse


def register(commands) -> None:
    p = commands.add_parser(
        "show",
        help="print a checkpoint's or Hugging Face folder's tensors, layout and total size",
        description="Print the tensors of a .safetensors file, an Orbax folder or a Hugging Face "
        "save_pretrained folder (key, shape, dtype, bytes), the layout composed-lifts recorded "
        "(checked against the tensors' headers) or the folder's family, layers and shards, and "
        "the total size. Reads no tensor data.",
    )
    p.add_argument("file", metavar="FILE", help="checkpoint or folder to describe")
    p.set_defaults(handler=show)


def _family(config) -> str:
    from .. import models
    from ..errors import ComposedLiftsError

    kind = config.get("model_type", "unknown")
    try:
        parsed = models.config_from_hf(config)
    except ComposedLiftsError as err:
        return f"{kind} (not loadable here: {str(err).splitlines()[0]})"
    return f"{kind}, {parsed.num_layers} layers"


def show(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ..checkpoint import describe
    from ..errors import CheckpointFormatError
    from ._console import Console

    info = describe(args.file)
    console = Console(highlight=False)
    kind = {
        "orbax": "Orbax checkpoint",
        "safetensors": "safetensors file",
        "hf": "Hugging Face folder",
    }[info.format]
    console.print(f"{args.file}: {kind}, {len(info.tensors)} tensors")
    if info.format == "hf":
        assert info.config is not None  # the handler reads config.json first
        console.print(f"model: {_family(info.config)}")
        console.print(f"dtypes: {', '.join(info.dtypes) or 'none'}")
        shards = info.shards
        named = shards[0] if len(shards) == 1 else f"{shards[0]} ... {shards[-1]}"
        console.print(f"shards: {len(shards)}, {named}")
    elif info.layout is None:
        console.print("layout: none recorded (load it with saved_as= or an explicit keymap=)")
    else:
        layout = info.layout
        console.print(f"layout: written by {layout.library}, {layout.keymap.value} keys")
        for r in layout.stacks:
            batch = f"ensemble of {r.ensemble_size}" if r.ensemble_size else "shared"
            axis = f", layer axis {r.layer_axis}" if r.form.value == "stacked" else ""
            console.print(
                f"  stack {r.path or '(whole tree)'!s}: {r.num_layers} layers, {r.form.value}"
                f"{axis}, {batch}, {', '.join(r.dtypes)}"
            )
    if info.format != "hf" and info.config is not None:
        console.print(f"converted from a Hugging Face folder: {_family(info.config)}")
    table = Table(show_edge=False)
    for col in ("key", "shape", "dtype", "bytes"):
        table.add_column(col, justify="right" if col == "bytes" else "left")
    for t in info.tensors:
        table.add_row(t.key, str(t.shape), t.dtype, f"{t.nbytes:,}")
    console.print(table)
    console.print(f"total: {info.total_bytes:,} bytes")
    if info.problems:
        raise CheckpointFormatError(
            f"checkpoint {args.file!r}",
            f"has a layout record that disagrees with its tensors: {info.problems[0]}"
            + (f" (and {len(info.problems) - 1} more)" if len(info.problems) > 1 else ""),
            "the record was damaged; load it with saved_as= or keymap=",
        )
    return 0
