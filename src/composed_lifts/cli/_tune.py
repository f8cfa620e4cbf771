"""``composed-lifts tune``: measure scan vs unroll vs remat for a block, recommend one in budget."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import TYPE_CHECKING

from ..errors import ArgumentRangeError
from ._blocks import block_fields, load_block
from ._memory import check_memory, stack_param_bytes

if TYPE_CHECKING:
    import flax.linen as nn

_BLOCKS = ("seed", "mlp4x")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 1,2,4, got {text!r}") from None


def register(commands) -> None:
    p = commands.add_parser(
        "tune",
        help="measure scan vs unroll factors vs remat policies; recommend the fastest in budget",
        description=(
            "Build the block's stack for every (unroll, remat) candidate, compile its training "
            "step (or forward), time the candidates round-robin, read each program's scratch "
            "memory from XLA, and recommend the fastest that fits --memory-budget-mb."
        ),
    )
    p.add_argument(
        "--block",
        default="seed",
        metavar="{seed,mlp4x,MODULE:CLASS}",
        help="seed: Dense + relu (default); mlp4x: residual MLP with 4x expansion; or your "
        "Linen block, e.g. mypkg.blocks:Residual",
    )
    p.add_argument(
        "--field",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="a field of your block (repeatable); features defaults to --features",
    )
    p.add_argument("--layers", type=int, default=16, help="N (default 16)")
    p.add_argument("--features", type=int, default=256, help="F (default 256)")
    p.add_argument("--batch", type=int, default=64, help="B (default 64)")
    p.add_argument(
        "--unrolls",
        type=_int_list,
        default=None,
        help="unroll factors, e.g. 1,2,4 (default 1,2,4,8 below N, and N)",
    )
    p.add_argument(
        "--remats",
        default="none,full,dots",
        help="remat policies, from none,full,dots,dots_no_batch (default none,full,dots)",
    )
    p.add_argument(
        "--dots",
        default=None,
        help="CPU dot backends to try, from default,eigen (default: both on CPU)",
    )
    p.add_argument(
        "--memory-budget-mb",
        type=float,
        default=None,
        help="scratch memory budget in MB (default: no limit)",
    )
    p.add_argument("--forward-only", action="store_true", help="tune the forward, not a step")
    p.add_argument(
        "--force",
        action="store_true",
        help="run even when the memory estimate exceeds the memory available",
    )
    p.add_argument("--rounds", type=int, default=5, help="timing rounds (default 5)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="stdout format")
    p.set_defaults(handler=tune)


def _check_args(args: argparse.Namespace):
    """Every flag checked, named as typed, before anything is built; returns (remats, budget, dots)."""
    from .. import DOT_BACKENDS, Remat  # DOT_BACKENDS: the names tune_stack's dots take

    for name in ("layers", "features", "batch", "rounds"):
        if getattr(args, name) < 1:
            raise ArgumentRangeError(f"--{name}", ">= 1", getattr(args, name))
    if args.unrolls is not None:
        if not args.unrolls:
            raise ArgumentRangeError(
                "--unrolls", "a list of at least one factor", "none", "e.g. --unrolls 1,2,4"
            )
        bad = [u for u in args.unrolls if u < 1]
        if bad:
            raise ArgumentRangeError("--unrolls", ">= 1", bad[0])
    try:
        remats = tuple(Remat(r.strip()) for r in args.remats.split(",") if r.strip())
    except ValueError:
        remats = ()
    if not remats:
        choices = ",".join(r.value for r in Remat)
        raise ArgumentRangeError("--remats", f"names from {choices}", repr(args.remats))
    dots = None
    if args.dots is not None:
        dots = tuple(d.strip() for d in args.dots.split(",") if d.strip())
        if not dots or any(d not in DOT_BACKENDS for d in dots):
            choices = ",".join(DOT_BACKENDS)
            raise ArgumentRangeError("--dots", f"names from {choices}", repr(args.dots))
    budget = None
    if args.memory_budget_mb is not None:
        mb = args.memory_budget_mb
        if not (math.isfinite(mb) and 0 <= mb <= 1e12):
            raise ArgumentRangeError("--memory-budget-mb", "a number of MB in [0, 1e12]", mb)
        budget = int(mb * 1e6)
    return remats, budget, dots


def _check_memory(block, fields, args) -> None:
    """A lower bound of what tuning needs (params, gradients and a copy, one carry per layer)."""
    params = stack_param_bytes(block, fields, args.layers, (args.batch, args.features))
    need = 3 * params + (args.layers + 4) * args.batch * args.features * 4
    check_memory(need, "tuning this stack", "--batch, --features or --layers", force=args.force)


def tune(args: argparse.Namespace) -> int:
    import jax.numpy as jnp
    import numpy as np

    from .. import Block, MLPBlock, StackOptions, tune_stack

    remats, budget, dots = _check_args(args)
    block: type[nn.Module]
    if args.block in _BLOCKS:
        block = Block if args.block == "seed" else MLPBlock
    else:
        block = load_block(args.block)
    fields = block_fields(block, args)
    _check_memory(block, fields, args)
    x = jnp.asarray(
        np.random.default_rng(0).standard_normal((args.batch, args.features)), jnp.float32
    )
    text = args.format == "text"
    progress = None
    if text:
        from ._console import Console

        console = Console(highlight=False, stderr=True)
        progress = console.status("tuning")
        progress.start()
    try:
        report = tune_stack(
            block,
            fields,
            x,
            StackOptions(num_layers=args.layers),
            unrolls=args.unrolls,
            remats=remats,
            memory_budget_bytes=budget,
            dots=dots,
            train=not args.forward_only,
            rounds=args.rounds,
            on_progress=(lambda msg: progress.update(msg)) if progress else None,
        )
    finally:
        if progress:
            progress.stop()
    if not text:
        json.dump(
            {
                "block": args.block,
                "layers": args.layers,
                "features": args.features,
                "batch": args.batch,
                **report.as_dict(),
            },
            sys.stdout,
        )
        sys.stdout.write("\n")
        return 0 if report.best else 1
    _print(report, args)
    return 0 if report.best else 1


def _print(report, args) -> None:
    from rich.table import Table

    from ._console import Console

    console = Console(highlight=False)
    what = "forward" if args.forward_only else "training step (value_and_grad)"
    table = Table(
        title=f"{args.block} block, N={args.layers} F={args.features} B={args.batch}: {what}, "
        "fastest first",
        title_justify="left",
    )
    cols = ("unroll", "remat", "dots", "step (median)", "vs scan", "compile", "scratch MB", "fits")
    for col in cols:
        table.add_column(col, justify="left" if col in ("remat", "dots") else "right")
    base = report.baseline.step_s if report.baseline else None
    for r in report.results:
        mark = "[bold green]" if r is report.best else ""
        table.add_row(
            f"{mark}{r.options.unroll}",
            f"{mark}{r.options.remat.name}",
            f"{mark}{r.dots}",
            f"{r.step_s * 1e3:.2f} ms",
            f"{r.step_s / base:.2f}x" if base else "-",
            f"{r.compile_s:.2f} s",
            f"{r.temp_bytes / 1e6:.1f}",
            "yes" if r.fits else "no",
        )
    console.print(table)
    if report.best is None:
        console.print(f"no candidate fits the budget of {report.memory_budget_bytes / 1e6:.1f} MB")
        return
    b = report.best.options
    jit = ""
    if report.best.compiler_options:
        jit = f"; jax.jit(..., compiler_options={report.best.compiler_options!r})"
    console.print(
        f"recommended: StackOptions(num_layers={args.layers}, unroll={b.unroll}, "
        f"remat=Remat.{b.remat.name}){jit}  (times drift on a shared machine: they were "
        "measured round-robin, so compare rows, not runs)"
    )
