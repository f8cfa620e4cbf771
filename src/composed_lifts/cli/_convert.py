"""``composed-lifts convert``: a checkpoint into another layout, streamed, with a progress bar."""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from ..errors import ArgumentRangeError, CheckpointFormatError, KeyMapError, OutputFileError
from ..files import check_writable

_BAR_BYTES = 64 * 2**20  # show a progress bar for files at least this large


def register(commands) -> None:
    p = commands.add_parser(
        "convert",
        help="convert a checkpoint to another layout (scanned/unrolled, layer axis, key names)",
        description=(
            "Read checkpoint IN (a .safetensors file or an Orbax folder written by composed-lifts) "
            "and write OUT in the layout asked for; OUT's suffix picks the format "
            "(.safetensors, else an Orbax folder). Unspecified options keep IN's layout."
        ),
    )
    p.add_argument("input", metavar="IN", help="checkpoint to read")
    p.add_argument("output", metavar="OUT", help="checkpoint to write (atomically)")
    p.add_argument(
        "--to",
        choices=("scanned", "unrolled"),
        help="scanned: one tensor per param with a layer axis; unrolled: one tensor per layer",
    )
    p.add_argument("--layer-axis", type=int, metavar="K", help="layer axis of scanned tensors")
    p.add_argument(
        "--key-map",
        choices=("native", "torch"),
        default="native",
        help="key names: ours, or PyTorch nn.Linear's (weight (out, in), bias; unrolled only)",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="read OUT back into IN's layout and report the largest difference from IN (0 for "
        "pure layout changes)",
    )
    p.set_defaults(handler=convert)


def _progress(total: int):
    """A rich progress bar on standard error for large files, else nothing."""
    if total < _BAR_BYTES or not sys.stderr.isatty():
        return None, None
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from ._console import Console

    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task("writing", total=total)
    return bar, lambda n: bar.advance(task, n)


def _check_output(source: str, path: str) -> None:
    """Refuse, before any work, an OUT that is IN or that cannot be written."""
    if os.path.realpath(source) == os.path.realpath(path):
        raise OutputFileError(f"OUT {path!r}", "is_input", source="IN")
    if path.endswith(".safetensors"):
        check_writable(path, "OUT")
        return
    folder = os.path.dirname(os.path.abspath(path))  # an Orbax folder, replaced whole
    if not os.path.isdir(folder):
        raise OutputFileError(f"OUT {path!r}", "no_folder", folder=folder)


def convert(args: argparse.Namespace) -> int:
    from ..checkpoint import Form, KeyMapName, Stack, load, read_layout, save

    if args.layer_axis is not None and args.layer_axis < 0:
        raise ArgumentRangeError("--layer-axis", ">= 0", args.layer_axis)
    _check_output(args.input, args.output)
    layout = read_layout(args.input)
    if layout is None:
        raise CheckpointFormatError(
            f"IN {args.input!r}",
            "records no layout (it was not written by composed-lifts)",
            "load it in Python with load(path, like=params, keymap=...)",
        )
    if layout.keymap is not KeyMapName.NATIVE:
        raise CheckpointFormatError(
            f"IN {args.input!r}",
            "has PyTorch key names, whose tree paths are ambiguous (weight is a kernel, a "
            "scale or an embedding)",
            "load it in Python with load(path, like=params)",
        )
    form = {None: None, "scanned": Form.STACKED, "unrolled": Form.UNROLLED}[args.to]
    chosen = form or (layout.stacks[0].form if layout.stacks else Form.STACKED)
    if args.key_map == "torch" and chosen is Form.STACKED:
        raise KeyMapError("per_layer", keymap="--key-map torch", unrolled="--to unrolled")
    tree = load(args.input)  # as saved: stacked tensors, or layers_{i} subtrees
    stacks = [Stack(r.path, r.layer_axis, r.ensemble_size is not None) for r in layout.stacks]
    total = sum(int(np.asarray(a).nbytes) for a in _leaves(tree))
    bar, progress = _progress(total)
    if bar is not None:
        bar.start()
    try:
        save(
            args.output,
            tree,
            stacks=stacks,
            form=form,
            layer_axis=args.layer_axis,
            keymap=KeyMapName(args.key_map),
            progress=progress,
        )
    finally:
        if bar is not None:
            bar.stop()
    out = read_layout(args.output)
    assert out is not None  # save records the layout it writes
    r = out.stacks[0] if out.stacks else None
    axis = f", layer axis {r.layer_axis}" if r and r.form is Form.STACKED else ""
    described = (
        f"{len(out.stacks)} stack(s), {r.form.value}{axis}, {out.keymap.value} keys"
        if r
        else "no stacks"
    )
    print(f"wrote {args.output}: {described}, {total:,} bytes of params")
    if args.verify:
        back = load(args.output, like=tree, layer_axis=_layer_axis(layout))
        diff = max(
            (
                float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
                if np.size(a)
                else 0.0
            )
            for a, b in zip(_leaves(tree), _leaves(back))
        )
        print(f"verify: read back into {args.input}'s layout, largest difference {diff:g}")
        if diff != 0.0:
            return 1
    return 0


def _layer_axis(layout) -> int | None:
    stacked = [r.layer_axis for r in layout.stacks if r.form.value == "stacked"]
    return stacked[0] if stacked else None


def _leaves(tree):
    import jax

    return jax.tree_util.tree_leaves(tree)
