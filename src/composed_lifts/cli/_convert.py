"""``composed-lifts convert``: a checkpoint into another layout or format, streamed.

IN is a checkpoint of ours (a ``.safetensors`` file or an Orbax folder) or a Hugging Face
``save_pretrained`` folder; OUT is written in the layout asked for, or, with ``--to hf``,
as a folder ``transformers`` loads. Only public names are used: the format is the
library's to pick (``checkpoint.describe``), the rules of each format the library's to
enforce.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

_BAR_BYTES = 64 * 2**20  # show a progress bar for files at least this large


def register(commands) -> None:
    p = commands.add_parser(
        "convert",
        help="convert a checkpoint to another layout (scanned/unrolled, layer axis, key names) "
        "or between Hugging Face folders and checkpoints",
        description=(
            "Read IN (a .safetensors file or an Orbax folder written by composed-lifts, or a "
            "Hugging Face save_pretrained folder) and write OUT in the layout asked for; OUT's "
            "suffix picks the format (.safetensors, else an Orbax folder), or --to hf writes a "
            "save_pretrained folder. Unspecified options keep IN's layout; a Hugging Face "
            "folder becomes a scanned checkpoint that remembers its config.json."
        ),
    )
    p.add_argument("input", metavar="IN", help="checkpoint or Hugging Face folder to read")
    p.add_argument("output", metavar="OUT", help="checkpoint or folder to write (atomically)")
    p.add_argument(
        "--to",
        choices=("scanned", "unrolled", "hf"),
        help="scanned: one tensor per param with a layer axis; unrolled: one tensor per layer; "
        "hf: a Hugging Face save_pretrained folder",
    )
    p.add_argument("--layer-axis", type=int, metavar="K", help="layer axis of scanned tensors")
    p.add_argument(
        "--key-map",
        choices=("native", "torch"),
        default="native",
        help="key names: ours, or PyTorch nn.Linear's (weight (out, in), bias; unrolled only)",
    )
    p.add_argument(
        "--config",
        metavar="JSON",
        help="with --to hf: the Hugging Face config.json of the model (default: the one IN "
        "recorded when it was converted from a folder)",
    )
    p.add_argument(
        "--max-shard-size",
        default="50GB",
        metavar="SIZE",
        help="with --to hf: largest shard, e.g. 5GB or 500MiB (default 50GB, as save_pretrained)",
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


def _check_output(args) -> None:
    """Refuse, before any work, an OUT that is IN or that cannot be written."""
    from ..checkpoint import check_output
    from ..errors import OutputFileError

    if os.path.realpath(args.input) == os.path.realpath(args.output):
        raise OutputFileError(f"OUT {args.output!r}", "is_input", source="IN")
    if args.to == "hf":
        out = args.output
        if os.path.lexists(out) and not os.path.isdir(out):
            raise OutputFileError(f"OUT {out!r}", "exists_not_folder")
        if (
            os.path.isdir(out)
            and os.listdir(out)
            and not os.path.lexists(os.path.join(out, "config.json"))
        ):
            raise OutputFileError(f"OUT {out!r}", "foreign_folder", what="a Hugging Face folder")
    check_output(args.output, "OUT")
    if (
        args.to != "hf"
        and args.output.endswith(".safetensors")
        and os.path.lexists(args.output)
        and not _ours(args.output)
    ):
        raise OutputFileError(
            f"OUT {args.output!r}",
            "not_ours",
            what="not a safetensors checkpoint written by composed-lifts",
        )


def _ours(path: str) -> bool:
    from ..checkpoint import read_layout
    from ..errors import CheckpointFormatError

    try:
        return read_layout(path) is not None
    except CheckpointFormatError:
        return False


def convert(args: argparse.Namespace) -> int:
    from ..checkpoint import describe
    from ..errors import ArgumentRangeError

    if args.layer_axis is not None and args.layer_axis < 0:
        raise ArgumentRangeError("--layer-axis", ">= 0", args.layer_axis)
    info = describe(args.input)
    _check_output(args)
    if args.to == "hf":
        if info.format == "hf":
            raise ArgumentRangeError(
                "--to", "scanned or unrolled for a Hugging Face folder IN", "hf"
            )
        return _to_hf(args, info)
    if info.format == "hf":
        return _from_hf(args, info)
    return _relayout(args, info)


def _write(args, tree, stacks, form, hf_config=None) -> int:
    from ..checkpoint import KeyMapName, save

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
            hf_config=hf_config,
        )
    finally:
        if bar is not None:
            bar.stop()
    return total


def _described(path: str) -> str:
    from ..checkpoint import Form, describe

    out = describe(path).layout
    r = out.stacks[0] if out is not None and out.stacks else None
    if out is None or r is None:
        return "no stacks"
    axis = f", layer axis {r.layer_axis}" if r.form is Form.STACKED else ""
    return f"{len(out.stacks)} stack(s), {r.form.value}{axis}, {out.keymap.value} keys"


def _form(args):
    from ..checkpoint import Form

    return {None: None, "scanned": Form.STACKED, "unrolled": Form.UNROLLED}[args.to]


def _from_hf(args, info) -> int:
    """A Hugging Face folder into our checkpoint (scanned unless --to unrolled)."""
    from .. import models
    from ..checkpoint import load

    model, params = models.from_hf(args.input)
    stacks = list(models.STACKS)
    total = _write(args, params, stacks, _form(args), hf_config=dict(info.config))
    print(
        f"wrote {args.output}: {info.config.get('model_type', 'a model')} of "
        f"{model.config.num_layers} layers from {args.input}, {_described(args.output)}, "
        f"{total:,} bytes of params"
    )
    if args.verify:
        return _verify(args, params, load(args.output, like=params))
    return 0


def _to_hf(args, info) -> int:
    """Our checkpoint into a Hugging Face folder (its config recorded, or --config)."""
    from .. import models
    from ..checkpoint import describe, load
    from ..errors import CheckpointFormatError, InputFileError

    hf_config = info.config
    if args.config is not None:
        try:
            with open(args.config, encoding="utf-8") as f:
                hf_config = json.load(f)
        except (OSError, ValueError) as err:
            raise InputFileError(f"--config {args.config!r}", f"cannot be read: {err}") from None
    if not isinstance(hf_config, dict):
        raise CheckpointFormatError(
            f"IN {args.input!r}",
            "records no Hugging Face config (it was not converted from a folder)",
            "pass --config config.json",
        )
    config = models.config_from_hf(hf_config)
    model = models.model_for_config(config)
    dtypes = info.dtypes
    like = models.abstract_params(model, dtypes[0] if len(dtypes) == 1 else "float32")
    params = load(args.input, like=like)
    models.to_hf(params, config, args.output, max_shard_size=args.max_shard_size)
    out = describe(args.output)
    print(
        f"wrote {args.output}: Hugging Face folder, {len(out.shards)} shard(s), "
        f"{out.total_bytes:,} bytes of params"
    )
    if args.verify:
        _, back = models.from_hf(args.output)
        return _verify(args, params, back)
    return 0


def _relayout(args, info) -> int:
    from ..checkpoint import Stack, load
    from ..errors import CheckpointFormatError

    layout = info.layout
    if layout is None:
        raise CheckpointFormatError(
            f"IN {args.input!r}",
            "records no layout (it was not written by composed-lifts)",
            "load it in Python with load(path, like=params, saved_as=...)",
        )
    if layout.keymap.value != "native":
        raise CheckpointFormatError(
            f"IN {args.input!r}",
            "has PyTorch key names, whose tree paths are ambiguous (weight is a kernel, a "
            "scale or an embedding)",
            "load it in Python with load(path, like=params)",
        )
    tree = load(args.input)  # as saved: stacked tensors, or layers_{i} subtrees
    stacks = [Stack(r.path, r.layer_axis, r.ensemble_size) for r in layout.stacks]
    total = _write(args, tree, stacks, _form(args), hf_config=info.config)
    print(f"wrote {args.output}: {_described(args.output)}, {total:,} bytes of params")
    if args.verify:
        stacked = [r.layer_axis for r in layout.stacks if r.form.value == "stacked"]
        back = load(args.output, like=tree, layer_axis=stacked[0] if stacked else None)
        return _verify(args, tree, back)
    return 0


def _verify(args, want, got) -> int:
    diff = 0.0
    for a, b in zip(_leaves(want), _leaves(got)):
        if np.size(a):
            d = float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
            diff = max(diff, d)
    print(f"verify: read back into {args.input}'s layout, largest difference {diff:g}")
    return 0 if diff == 0.0 else 1


def _leaves(tree):
    import jax

    return jax.tree_util.tree_leaves(tree)
