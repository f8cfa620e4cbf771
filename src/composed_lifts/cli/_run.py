"""``composed-lifts run``: the seed's forward pass on a default example or on your input."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from .. import Block, forward_program, seed_model
from ..arguments import as_float32_matrix, check_integer, check_seed
from ..doctor import leaf_reports, probe_sizes
from ..errors import InputShapeError, UnevenBatchError, WidthMismatchError
from ._devices import add_devices_flag, devices_mesh
from ._errors import NonFiniteResultError
from ._files import check_output_path, read_array, write_array, write_json_values
from ._memory import available_bytes, check_memory

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
    p.add_argument(
        "--allow-nonfinite",
        action="store_true",
        help='print and write a result holding NaN or infinity (JSON: "NaN", "Infinity" strings)',
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="run even when the memory estimate exceeds the memory available",
    )
    add_devices_flag(p)
    p.set_defaults(handler=run)


def default_example(seed: int, batch: int, features: int) -> np.ndarray:
    """The built-in example: ``default_rng(seed).standard_normal((batch, features))`` as float32."""
    return np.random.default_rng(seed).standard_normal((batch, features)).astype(np.float32)


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args, **kwargs))
    return out, time.perf_counter() - start


def memory_needed(batch: int, features: int, layers: int, input_bytes: int = 0) -> int:
    """Bytes a run needs, about: params and their random bits, carries, result, the input."""
    params = layers * (features * features + features) * 4
    return 2 * params + 6 * batch * features * 4 + input_bytes


def _check_memory(args, batch: int, features: int, input_bytes: int) -> None:
    check_memory(
        memory_needed(batch, features, args.layers, input_bytes),
        f"a run with B={batch}, F={features}, N={args.layers}",
        "--batch, --features or --layers" if args.input is None else "the input or --layers",
        force=args.force,
    )


def _check_input_shape(args, shape: tuple[int, ...]) -> None:
    where = f"--input {args.input!r}"
    if len(shape) != 2:
        raise InputShapeError(where, f"{len(shape)}-D with shape {shape}", "one row per example")
    if shape[1] < 1:
        raise InputShapeError(where, f"shape {shape}: no columns", "give it one column per feature")
    if args.features is None:
        args.features = int(shape[1])
    elif shape[1] != args.features:
        raise WidthMismatchError(
            "--input",
            shape[1],
            "--features",
            args.features,
            fix=f"drop --features (it defaults to the input's width) or pass --features {shape[1]}",
        )


def _read_input(args) -> np.ndarray:
    def on_header(shape, dtype):  # an .npy header, before its data is read
        _check_input_shape(args, shape)
        nbytes = math.prod(shape) * dtype.itemsize
        _check_memory(args, shape[0], args.features, nbytes + shape[0] * shape[1] * 4)

    budget = None if args.force else available_bytes()
    x = read_array(args.input, on_header=on_header, max_memory=budget, flag="--input")
    _check_input_shape(args, x.shape)
    _check_memory(args, x.shape[0], args.features, x.nbytes + x.size * 4)
    return x


def _check_output(args) -> None:
    if args.output:
        check_output_path(args.output, "--output")


def run(args: argparse.Namespace) -> int:
    check_seed(args.seed, "--seed")
    check_integer("--layers", args.layers, minimum=0)
    if args.features is not None:
        check_integer("--features", args.features, minimum=1)
    if args.batch is not None:
        check_integer("--batch", args.batch, minimum=0)
    mesh = None
    if args.devices is not None:  # first: on CPU, JAX makes its devices when it starts
        mesh = devices_mesh(check_integer("--devices", args.devices, minimum=1))
    _check_output(args)
    if args.input is not None:
        x = _read_input(args)
        source = "standard input" if args.input == "-" else args.input
        name = "--input"
    else:
        batch = DEFAULT_BATCH if args.batch is None else args.batch
        if args.features is None:
            args.features = DEFAULT_FEATURES
        _check_memory(args, batch, args.features, batch * args.features * 12)
        x = default_example(args.seed, batch, args.features)
        source = f"default example: default_rng({args.seed}).standard_normal({x.shape})"
        name = "the default example"
    x32 = as_float32_matrix(
        x, name, width=args.features, width_name="--features", finite_fix="clean the input"
    )
    layers, features = args.layers, args.features
    if mesh is not None and x32.shape[0] % args.devices:  # the examples split over the devices
        raise UnevenBatchError(x32.shape[0], "--devices", args.devices)
    init, apply = forward_program(layers, features, mesh=mesh)  # with a mesh, data parallel
    variables, t_init = _timed(init, args.seed, x32)
    result, t_apply = _timed(apply, variables, x32)
    host = np.asarray(result)
    if not np.isfinite(host).all() and not args.allow_nonfinite:
        raise _nonfinite_result(host, variables, x32, features)
    layout = _param_layout(variables, layers, features, x32)
    if args.output:
        write_array(args.output, host)
    report = {
        "seed": args.seed,
        "num_layers": layers,
        "features": features,
        "batch": int(x32.shape[0]),
        "devices": 1 if args.devices is None else args.devices,
        "input": source,
        "shape": list(result.shape),
        "params": [leaf.as_dict() for leaf in layout],  # the same fields as inspect's leaves
        "timings_s": {"init": t_init, "apply": t_apply},
        "output": args.output,
    }
    if args.format == "json":
        head = json.dumps(report)
        sys.stdout.write(head[:-1] + ', "result": ')
        write_json_values(sys.stdout, host)  # a chunk at a time: no Python list of it all
        sys.stdout.write("}\n")
    else:
        _print_text(report, host.reshape(x32.shape), layout)
    return 0


def _nonfinite_result(host: np.ndarray, variables, x32, features: int) -> NonFiniteResultError:
    """Name the first layer whose output is not finite (one more compile, on failure only)."""
    step = jax.jit(lambda p, h: Block(features=features).apply({"params": p}, h, None)[0])
    layers = jax.tree_util.tree_leaves(variables)[0].shape[0]
    h, first = x32, None
    for i in range(layers):
        h = step(jax.tree_util.tree_map(lambda a, i=i: a[i], variables["params"]), h)
        if not bool(jnp.isfinite(h).all()):
            first = i
            break
    return NonFiniteResultError(int((~np.isfinite(host)).sum()), host.size, first, layers)


def _param_layout(variables, num_layers: int, features: int, x):
    """The doctor's leaf reports: each axis's role found by probing with N + 1 layers and B + 2
    examples (shapes only), as ``composed-lifts inspect`` shows them."""
    more_n, more_b = probe_sizes(num_layers, x.shape[0])

    def shapes(n, b):
        x_b = jax.ShapeDtypeStruct((b, x.shape[1]), x.dtype)
        return jax.eval_shape(seed_model(n, features).init, jax.random.PRNGKey(0), x_b, None)

    return leaf_reports(variables, shapes(more_n, x.shape[0]), shapes(num_layers, more_b))


def _print_text(report: dict, matrix: np.ndarray, layout) -> None:
    from rich.table import Table

    from ._console import Console

    console = Console(highlight=False)
    b, f = matrix.shape
    console.print(
        f"[bold]composed_lifts_forward[/bold](seed={report['seed']}, x_batch: ({b}, {f}), "
        f"num_layers={report['num_layers']}, features={report['features']})"
        + (f" on {report['devices']} devices" if report["devices"] > 1 else "")
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
