"""Repeated-call speed of ``composed_lifts_forward`` against the seed's plain recipe.

The seed's recipe, written as the problem states it, builds the lifted module
and calls ``init`` and ``apply`` eagerly: every call re-traces the scan and
vmap and re-compiles their bodies. ``composed_lifts_forward`` compiles once per
shape and takes the seed as data, so a warm call with a new seed only runs the
program. Both are timed round-robin in this one process at B=8, N=4, F=64,
with a new seed on every call; the ratio of per-call medians is the figure.

    .venv/bin/python bench/forward_speedup.py            # writes bench/results/forward_speedup.*
    .venv/bin/python bench/forward_speedup.py --quick    # fewer rounds, prints only
"""

from __future__ import annotations

import argparse
import itertools
import json
import pathlib
import sys

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _timing import machine_info, round_robin, summarize  # noqa: E402
from composed_lifts import composed_lifts_forward  # noqa: E402
from peers.seed_recipe import recipe as seed_recipe  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
B, N, F = 8, 4, 64
TARGET = 300.0


def measure(rounds: int, fast_per_round: int) -> dict:
    x = np.random.default_rng(0).standard_normal((B, F)).astype(np.float32)
    seeds = itertools.count(1)

    # Warm both (the fast path compiles here, once; the recipe gains nothing from warming).
    want = np.asarray(seed_recipe(0, x, N, F))
    got = np.asarray(composed_lifts_forward(0, x, N, F))
    np.testing.assert_array_equal(got, want)  # same numbers, bit for bit

    def plain():
        jax.block_until_ready(seed_recipe(next(seeds), x, N, F))

    def fast():
        jax.block_until_ready(composed_lifts_forward(next(seeds), x, N, F))

    samples = round_robin(
        {"seed_recipe": plain, "composed_lifts_forward": fast},
        rounds=rounds,
        inner={"seed_recipe": 1, "composed_lifts_forward": fast_per_round},
    )
    plain_s = summarize(samples["seed_recipe"])
    fast_s = summarize(samples["composed_lifts_forward"])
    ratio = plain_s["median_s"] / fast_s["median_s"]
    return {
        "shape": {"B": B, "N": N, "F": F},
        "method": (
            f"{rounds} rounds, round-robin in one process; each round times 1 call of the "
            f"seed's plain recipe and {fast_per_round} calls of composed_lifts_forward "
            "(averaged); a new seed every call; warm (first call excluded); ratio of medians"
        ),
        "seed_recipe": plain_s,
        "composed_lifts_forward": fast_s,
        "speedup_median": ratio,
        "speedup_min": plain_s["min_s"] / fast_s["min_s"],
        "target": TARGET,
        "met": ratio >= TARGET,
        "machine": machine_info(),
    }


def to_markdown(res: dict) -> str:
    p, f = res["seed_recipe"], res["composed_lifts_forward"]
    m = res["machine"]
    return "\n".join(
        [
            "# composed_lifts_forward: repeated calls vs the seed's plain recipe",
            "",
            f"{m['date']}, {m['nproc']} cores ({m['cpu']}), jax {m['versions']['jax']}, "
            f"flax {m['versions']['flax']}; {m['note']}.",
            "",
            f"B={B}, N={N}, F={F}, float32, warm, a new seed on every call. {res['method']}.",
            "",
            "| form | median per call | min per call |",
            "|---|---:|---:|",
            f"| seed's plain recipe (re-traces, re-compiles) | {p['median_s'] * 1e3:.1f} ms | "
            f"{p['min_s'] * 1e3:.1f} ms |",
            f"| `composed_lifts_forward` (compiled once) | {f['median_s'] * 1e6:.1f} us | "
            f"{f['min_s'] * 1e6:.1f} us |",
            f"| **speedup** | **{res['speedup_median']:.0f}x** | {res['speedup_min']:.0f}x |",
            "",
            f"Target: at least {TARGET:.0f}x; {'met' if res['met'] else 'NOT met'}.",
            "",
        ]
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds; print, write nothing")
    ap.add_argument("--rounds", type=int, default=None)
    args = ap.parse_args(argv)
    rounds = args.rounds or (5 if args.quick else 30)
    res = measure(rounds, fast_per_round=50)
    md = to_markdown(res)
    print(md)
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "forward_speedup.json").write_text(json.dumps(res, indent=2) + "\n")
        (RESULTS / "forward_speedup.md").write_text(md)
    return 0 if res["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
