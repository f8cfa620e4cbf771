"""Compile time of a stack of a repeating pattern against depth N: two scans against N layers.

A period of 6 kinds, Gemma 3's (five ``sliding`` layers, then one ``full``), at
N = 6, 8, 24, 26, 96 and 98 (whole periods, and whole periods plus a remainder of
2). Forms: ``linen_pattern_stack`` and ``nnx_pattern_stack`` (one scan over the
repeats of the period, one of length 1 over the remainder) and the unrolled
Python loop over the same N layers (each with its own params, ``layers_i``).
Each measurement builds a fresh function (no JAX cache is hit) and times
``jax.jit(f).trace(...).lower()`` plus ``.compile()`` of the forward pass on
abstract inputs (B=16, F=256), so no params are allocated. Forms and depths are
visited round-robin, so drift hits all alike. Run it under the shared lock::

    flock /tmp/cl-heavy.lock python bench/pattern_compile.py [--reps 3]

It writes ``bench/results/pattern_compile.json`` and ``pattern_compile.md``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import flax.linen as nn
import jax
import jax.numpy as jnp

from _timing import machine_info, summarize

B, F = 16, 256
PERIOD = ("sliding",) * 5 + ("full",)
DEPTHS = (6, 8, 24, 26, 96, 98)
RESULTS = pathlib.Path(__file__).resolve().parent / "results"


class Sliding(nn.Module):
    @nn.compact
    def __call__(self, x, _):
        return x + jnp.tanh(nn.Dense(F)(nn.LayerNorm()(x))), None


class Full(nn.Module):
    @nn.compact
    def __call__(self, x, _):
        h = nn.gelu(nn.Dense(4 * F)(nn.LayerNorm()(x)))
        return x + nn.Dense(F)(h), None


BLOCKS = {"sliding": Sliding(), "full": Full()}
X = jax.ShapeDtypeStruct((B, F), jnp.float32)


def _linen(n):
    from composed_lifts import LayerPattern, StackOptions, linen_pattern_stack

    model = linen_pattern_stack(BLOCKS, LayerPattern(PERIOD, n), StackOptions(num_layers=n))()
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), X)

    def forward(variables, x):
        return model.apply(variables, x)[0]

    return forward, (variables, X)


def _nnx(n):
    from flax import nnx

    from composed_lifts import LayerPattern, StackOptions, nnx_pattern_stack

    class SlidingNNX(nnx.Module):
        def __init__(self, rngs):
            self.LayerNorm_0 = nnx.LayerNorm(F, rngs=rngs)
            self.Dense_0 = nnx.Linear(F, F, rngs=rngs)

        def __call__(self, x, _):
            return x + jnp.tanh(self.Dense_0(self.LayerNorm_0(x))), None

    class FullNNX(nnx.Module):
        def __init__(self, rngs):
            self.LayerNorm_0 = nnx.LayerNorm(F, rngs=rngs)
            self.Dense_0 = nnx.Linear(F, 4 * F, rngs=rngs)
            self.Dense_1 = nnx.Linear(4 * F, F, rngs=rngs)

        def __call__(self, x, _):
            return x + self.Dense_1(nnx.gelu(self.Dense_0(self.LayerNorm_0(x)))), None

    make = {"sliding": SlidingNNX, "full": FullNNX}
    options = StackOptions(num_layers=n)
    stack = nnx.eval_shape(
        lambda: nnx_pattern_stack(make, LayerPattern(PERIOD, n), options, rngs=nnx.Rngs(0))
    )
    graphdef, state = nnx.split(stack)

    def forward(state, x):
        return nnx.merge(graphdef, state)(x)[0]

    return forward, (state, X)


def _unrolled(n):
    kinds = [PERIOD[i % len(PERIOD)] for i in range(n)]
    one = {
        kind: jax.eval_shape(block.init, jax.random.PRNGKey(0), X, None)
        for kind, block in BLOCKS.items()
    }
    layers = {f"layers_{i}": one[kind] for i, kind in enumerate(kinds)}

    def forward(layers, x):
        for i, kind in enumerate(kinds):
            x, _ = BLOCKS[kind].apply(layers[f"layers_{i}"], x, None)
        return x

    return forward, (layers, X)


FORMS = {
    "linen": ("ours: linen_pattern_stack", _linen),
    "nnx": ("ours: nnx_pattern_stack", _nnx),
    "unrolled": ("unrolled Python loop", _unrolled),
}


def _one(builder, n) -> tuple[float, float]:
    """Seconds to trace and lower, and to compile, a fresh forward of depth ``n``."""
    forward, args = builder(n)
    start = time.perf_counter()
    lowered = jax.jit(forward).trace(*args).lower()
    mid = time.perf_counter()
    lowered.compile()
    return mid - start, time.perf_counter() - mid


def measure(depths, reps: int) -> dict:
    samples: dict[tuple[str, int], list[tuple[float, float]]] = {
        (f, n): [] for f in FORMS for n in depths
    }
    for rep in range(reps):
        for n in depths:
            for name, (_, builder) in FORMS.items():
                samples[name, n].append(_one(builder, n))
                lower, comp = samples[name, n][-1]
                print(f"round {rep + 1}/{reps} N={n} {name}: {lower:.2f} + {comp:.2f} s")
    return {
        name: {
            "label": label,
            "by_n": {
                str(n): {
                    "trace_lower": summarize([a for a, _ in samples[name, n]]),
                    "compile": summarize([b for _, b in samples[name, n]]),
                    "total": summarize([a + b for a, b in samples[name, n]]),
                }
                for n in depths
            },
        }
        for name, (label, _) in FORMS.items()
    }


def markdown(result: dict) -> str:
    info, forms, depths = result["machine"], result["forms"], result["depths"]

    def table(stat: str) -> list[str]:
        tot = {(f, n): forms[f]["by_n"][str(n)]["total"][stat] for f in forms for n in depths}
        xla = {(f, n): forms[f]["by_n"][str(n)]["compile"][stat] for f in forms for n in depths}
        rows = [
            "| N | scans | linen_pattern_stack | x N=6 | nnx_pattern_stack | x N=6 "
            "| unrolled loop | unrolled / linen |",
            "|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        for n in depths:
            scans = f"{n // 6} x 6" + (f" + {n % 6}" if n % 6 else "")
            lin, nx, un = tot["linen", n], tot["nnx", n], tot["unrolled", n]
            rows.append(
                f"| {n} | {scans} | {lin:.2f} s ({xla['linen', n]:.2f}) | "
                f"{lin / tot['linen', depths[0]]:.2f} | {nx:.2f} s ({xla['nnx', n]:.2f}) | "
                f"{nx / tot['nnx', depths[0]]:.2f} | {un:.2f} s ({xla['unrolled', n]:.2f}) | "
                f"{un / lin:.1f} |"
            )
        return rows

    return (
        "\n".join(
            [
                "# Pattern stack: compile time against depth",
                "",
                f"{info['date']}, {info['nproc']} cores ({info['cpu']}), jax "
                f"{info['versions']['jax']}, flax {info['versions']['flax']}; period of 6 kinds "
                f"(5 sliding, 1 full), B={B} F={F}; trace + lower + compile of the forward (XLA's "
                f"compile alone in parentheses), {result['reps']} round-robin rounds "
                f"(`flock /tmp/cl-heavy.lock python bench/pattern_compile.py`). {info['note']}; "
                f"contention only adds time, so the minimum is the steadier figure.",
                "",
                "Minimum over the rounds:",
                "",
                *table("min_s"),
                "",
                "Median over the rounds:",
                "",
                *table("median_s"),
            ]
        )
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--depths", type=int, nargs="*", default=list(DEPTHS))
    args = parser.parse_args()
    jax.config.update("jax_enable_compilation_cache", False)
    result = {
        "machine": machine_info(),
        "reps": args.reps,
        "depths": args.depths,
        "forms": measure(args.depths, args.reps),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pattern_compile.json").write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result)
    (RESULTS / "pattern_compile.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
