"""``composed-lifts inspect``: the layout doctor on the seed's composition or on yours.

Exit status: 0 clean (warnings and notes included), 1 when a finding is an
error, 2 for bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

from .. import BatchMode, Block
from ..doctor import Composition, LiftOrder, LiftParams, Severity, check, plot_layout
from ..errors import ArgumentRangeError, ArgumentTypeError, OutputFileError
from ..files import check_writable
from ._blocks import block_fields, load_block
from ._doctor_text import render_text
from ._memory import check_memory, stack_param_bytes

DEFAULT_LAYERS = 4
DEFAULT_FEATURES = 8
DEFAULT_BATCH = 4

_AXES = {"none": None, "0": 0}
_BOOLS = {"false": False, "true": True}


def register(commands) -> None:
    p = commands.add_parser(
        "inspect",
        help="explain a composition of nn.scan and nn.vmap: param layout, axis roles, pitfalls",
        description=(
            "Describe the params a composition of lifts makes (shapes from jax.eval_shape, each "
            "axis's role found by probing with other N and B) and check it for the classic "
            "pitfalls. Defaults: the seed's Block and its nn.vmap(nn.scan(Block)) composition. "
            "Exit status 0 clean, 1 when a finding is an error, 2 for bad input."
        ),
    )
    p.add_argument("--layers", type=int, default=DEFAULT_LAYERS, help="N (default %(default)s)")
    p.add_argument(
        "--features",
        type=int,
        default=DEFAULT_FEATURES,
        help="the block's features field (default %(default)s)",
    )
    p.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="B (default %(default)s)")
    p.add_argument(
        "--width",
        type=int,
        default=None,
        help="the carry's width x.shape[-1] (default: --features)",
    )
    p.add_argument(
        "--order",
        choices=[o.value for o in LiftOrder],
        default=LiftOrder.VMAP_OF_SCAN.value,
        help="vmap-of-scan = nn.vmap(nn.scan(Block)) (default), scan-of-vmap = reversed",
    )
    p.add_argument(
        "--vmap-variable-axes",
        choices=list(_AXES),
        default="none",
        help="the vmap's variable_axes['params'] (default none: shared across the batch)",
    )
    p.add_argument(
        "--vmap-split-rngs",
        choices=list(_BOOLS),
        default="false",
        help="the vmap's split_rngs['params'] (default false)",
    )
    p.add_argument(
        "--scan-variable-axes",
        choices=list(_AXES),
        default="0",
        help="the scan's variable_axes['params'] (default 0: one slice per layer)",
    )
    p.add_argument(
        "--scan-split-rngs",
        choices=list(_BOOLS),
        default="true",
        help="the scan's split_rngs['params'] (default true)",
    )
    p.add_argument(
        "--intent",
        choices=[BatchMode.SHARED.value, BatchMode.ENSEMBLE.value],
        default=BatchMode.SHARED.value,
        help="what you meant params to be across the batch (default shared)",
    )
    p.add_argument(
        "--block",
        metavar="MODULE:CLASS",
        default=None,
        help="your Linen block, e.g. mypkg.blocks:Residual (default: the seed's Block)",
    )
    p.add_argument(
        "--field",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="a field of the block (repeatable); features defaults to --features",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the lift-order comparison input")
    p.add_argument("--format", choices=("text", "json"), default="text", help="stdout format")
    p.add_argument("--plot", metavar="FILE.png", help="draw the param layout to a PNG file")
    p.add_argument(
        "--force",
        action="store_true",
        help="run even when the memory estimate exceeds the memory available",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    for name in ("layers", "features", "batch"):
        if getattr(args, name) < 1:
            raise ArgumentRangeError(f"--{name}", ">= 1", getattr(args, name))
    if args.plot:
        _check_plot_path(args.plot)
    width = args.features if args.width is None else args.width
    if width < 1:
        raise ArgumentRangeError("--width", ">= 1", width)
    cls = Block if args.block is None else load_block(args.block)
    fields = block_fields(cls, args)
    try:
        block = cls(**fields)
    except TypeError as err:
        raise ArgumentTypeError(
            "--field",
            f"the fields {cls.__name__} needs",
            f"{fields} ({err})",
            "give the missing fields with --field NAME=VALUE",
        ) from None
    composition = Composition(
        num_layers=args.layers,
        order=LiftOrder(args.order),
        scan=LiftParams(_AXES[args.scan_variable_axes], _BOOLS[args.scan_split_rngs]),
        vmap=LiftParams(_AXES[args.vmap_variable_axes], _BOOLS[args.vmap_split_rngs]),
        intent=BatchMode(args.intent),
    )
    _check_memory(cls, fields, args, width)
    carry = jax.ShapeDtypeStruct((args.batch, width), jnp.float32)
    report = check(block, composition, carry, seed=args.seed)
    if args.plot:
        if report.layout is None:
            print(
                f"composed-lifts inspect: no plot written to {args.plot}: the layout could not "
                f"be evaluated (see the error finding)",
                file=sys.stderr,
            )
        else:
            plot_layout(report.layout, args.plot)
    if args.format == "json":
        json.dump({**report.as_dict(), "plot": args.plot if report.layout else None}, sys.stdout)
        sys.stdout.write("\n")
    else:
        from ._console import Console

        console = Console(highlight=False)
        render_text(report, console)
        if args.plot and report.layout is not None:
            console.print(f"wrote the layout picture to {args.plot}")
    return 1 if any(f.severity is Severity.ERROR for f in report.findings) else 0


def _check_plot_path(path: str) -> None:
    """Before any work: ``--plot`` names a ``.png`` file we can write."""
    if not path.lower().endswith(".png"):
        raise OutputFileError(
            f"--plot {path!r}", "suffix", suffix=Path(path).suffix, suffixes=".png"
        )
    check_writable(path, "--plot")


def _check_memory(cls, fields, args, width: int) -> None:
    """The doctor initialises both lift orders for real: refuse sizes the machine cannot hold."""
    ensemble = args.vmap_variable_axes == "0"
    try:
        params = stack_param_bytes(cls, fields, args.layers, (args.batch, width), ensemble=ensemble)
    except Exception:  # a block or composition that does not evaluate: the doctor explains it
        return
    need = 4 * params + 8 * args.layers * args.batch * width * 4
    check_memory(
        need, "checking this composition", "--batch, --features or --layers", force=args.force
    )
