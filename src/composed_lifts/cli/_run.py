"""``composed-lifts run``: the seed's forward pass on a default example or on your input."""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax
import numpy as np

from .. import seed_model
from .._arguments import check_seed
from .._files import read_array, write_array
from .._forward import _apply_params, _init_params, check_forward_args
from ..doctor import leaf_reports, probe_sizes
from ..errors import ArgumentRangeError

DEFAULT_LAYERS = 4
DEFAULT_FEATURES = 8
DEFAULT_BATCH = 4
_SHOW = 8  # rows and columns of the result shown in text output


def register(commands) -> None:
    p = commands.add_parser(
        "run",
        help="run composed_lifts_forward on a default example or an input file",
        description=(
            "Initialise the seed's nn.vmap(nn.scan(Block)) stack from --seed and apply it. "
            "Without --input, x_batch is drawn from the seed: "
            "numpy.random.default_rng(seed).standard_normal((batch, features)) as float32."
        ),
    )
    p.add_argument("--seed", type=int, default=0, help="PRNG seed in [0, 2**32-1] (default 0)")
    p.add_argument(
        "--layers", type=int, default=DEFAULT_LAYERS, help=f"N (default {DEFAULT_LAYERS})"
    )
    p.add_argument(
        "--features",
        type=int,
        default=None,
        help=f"F (default: the input's width, else {DEFAULT_FEATURES})",
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--batch",
        type=int,
        default=None,
        help=f"B for the default example (default {DEFAULT_BATCH})",
    )
    source.add_argument(
        "--input",
        metavar="FILE",
        help="x_batch from .npy, .json (list of lists) or - (JSON on stdin)",
    )
    p.add_argument(
        "--output", metavar="FILE", help="write the flattened (B*F,) result to .npy or .json"
    )
    p.add_argument("--format", choices=("text", "json"), default="text", help="stdout format")
    p.set_defaults(handler=run)


def default_example(seed: int, batch: int, features: int) -> np.ndarray:
    """The built-in example: ``default_rng(seed).standard_normal((batch, features))`` as float32."""
    return np.random.default_rng(seed).standard_normal((batch, features)).astype(np.float32)


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args, **kwargs))
    return out, time.perf_counter() - start


def run(args: argparse.Namespace) -> int:
    if args.input is not None:
        x = read_array(args.input)
        if x.ndim == 2 and args.features is None:
            args.features = int(x.shape[1])
        source = "standard input" if args.input == "-" else args.input
    else:
        batch = DEFAULT_BATCH if args.batch is None else args.batch
        if batch < 0:
            raise ArgumentRangeError("--batch", ">= 0", batch)
        if args.features is None:
            args.features = DEFAULT_FEATURES
        if args.features < 1:
            raise ArgumentRangeError("--features", ">= 1", args.features)
        check_seed(args.seed, "--seed")
        x = default_example(args.seed, batch, args.features)
        source = f"default example: default_rng({args.seed}).standard_normal({x.shape})"
    if args.features is None:
        args.features = DEFAULT_FEATURES
    seed_u32, x32, layers, features = check_forward_args(args.seed, x, args.layers, args.features)
    static = {"num_layers": layers, "features": features}
    variables, t_init = _timed(_init_params, seed_u32, x32, **static)
    result, t_apply = _timed(_apply_params, variables, x32, **static)
    layout = _param_layout(variables, layers, features, x32)
    if args.output:
        write_array(args.output, np.asarray(result))
    report = {
        "seed": args.seed,
        "num_layers": layers,
        "features": features,
        "batch": int(x32.shape[0]),
        "input": source,
        "shape": list(result.shape),
        "result": np.asarray(result).tolist(),
        "params": [leaf.as_dict() for leaf in layout],  # the same fields as inspect's leaves
        "timings_s": {"init": t_init, "apply": t_apply},
        "output": args.output,
    }
    if args.format == "json":
        json.dump(report, sys.stdout)
        sys.stdout.write("\n")
    else:
        _print_text(report, np.asarray(result).reshape(x32.shape), layout)
    return 0


def _param_layout(variables, num_layers: int, features: int, x):
    """The doctor's leaf reports: each axis's role found by probing with N + 1 layers and B + 2
    examples (shapes only), as ``composed-lifts inspect`` shows them."""
    more_n, more_b = probe_sizes(num_layers, x.shape[0])

    def shapes(n, b):
        x_b = jax.ShapeDtypeStruct((b, x.shape[1]), x.dtype)
        return jax.eval_shape(seed_model(n, features).init, jax.random.PRNGKey(0), x_b, None)

    return leaf_reports(variables, shapes(more_n, x.shape[0]), shapes(num_layers, more_b))


def _print_text(report: dict, matrix: np.ndarray, layout) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    b, f = matrix.shape
    console.print(
        f"[bold]composed_lifts_forward[/bold](seed={report['seed']}, x_batch: ({b}, {f}), "
        f"num_layers={report['num_layers']}, features={report['features']})"
    )
    console.print(f"input: {report['input']}")
    params = Table(title="param layout (shared across the batch)", title_justify="left")
    for col in ("path", "shape", "axes", "dtype", "count"):
        params.add_column(col, justify="right" if col == "count" else "left")
    for leaf in layout:
        params.add_row(
            leaf.path,
            str(leaf.shape),
            "(" + ", ".join(role.value for role in leaf.roles) + ")",
            leaf.dtype,
            f"{leaf.count:,}",
        )
    params.add_row("total", "", "", "", f"{sum(leaf.count for leaf in layout):,}")
    console.print(params)
    shown = Table(
        title=f"result: final carry ({b}, {f}), returned flattened to ({b * f},)",
        title_justify="left",
    )
    shown.add_column("b", justify="right")
    cols = list(range(min(f, _SHOW)))
    for j in cols:
        shown.add_column(str(j), justify="right")
    if f > _SHOW:
        shown.add_column("…")
    for i in range(min(b, _SHOW)):
        row = [f"{v:.5g}" for v in matrix[i, cols]] + (["…"] if f > _SHOW else [])
        shown.add_row(str(i), *row)
    if b > _SHOW:
        shown.add_row("…", *(["…"] * (len(cols) + (f > _SHOW))))
    console.print(shown)
    t = report["timings_s"]
    console.print(
        f"init {t['init'] * 1e3:.1f} ms, apply {t['apply'] * 1e3:.1f} ms "
        f"(first call in this process: both include compiling)"
    )
    if report["output"]:
        console.print(f"wrote the flattened result to {report['output']}")
