"""Which XLA CPU flags speed up the JAX forms? One child process per flag set, alternated.

XLA reads ``XLA_FLAGS`` once, when the backend starts, so each flag set runs in
its own child process. The children are run in cycles (every flag set once per
cycle, in a shuffled order) and each child times hand-written ``lax.scan`` and
our ``linen_stack`` at the three sizes, plus compile time of a scanned (N=4)
and an unrolled (N=32) stack. The figure for a flag set is the median over
cycles of its time divided by the default's in the same cycle.

    .venv/bin/python bench/xla_flags.py            # writes bench/results/xla_flags.{json,md}
    .venv/bin/python bench/xla_flags.py --cycles 1 # a look, writes nothing
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import statistics
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent

VARIANTS = {
    "default": "",
    "ynn_off (Eigen dots)": "--xla_cpu_experimental_ynn_fusion_type=",
    "onednn": "--xla_cpu_use_onednn=true",
    "xnnpack_off": "--xla_cpu_use_xnnpack=false",
    "eigen_single_thread": "--xla_cpu_multi_thread_eigen=false",
    "fast_math": "--xla_cpu_enable_fast_math=true",
    "backend_opt0": "--xla_backend_optimization_level=0",
}

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import jax
from _timing import calibrate, round_robin, summarize
from latency import SIZES
from peers import load, make_problem
import compile_time as ct

out = {}
for size, (B, N, F) in SIZES.items():
    p = make_problem(B, N, F)
    fns = {name: load(name).build(p) for name in ("jax_scan", "ours_linen")}
    for fn in fns.values():
        fn()
    inner = {k: calibrate(f, 0.03) for k, f in fns.items()}
    s = round_robin(fns, rounds=int(sys.argv[2]), inner=inner)
    out.update({f"{size}/{k}": summarize(v)["median_s"] for k, v in s.items()})
for name, n in (("jax_scan", 4), ("jax_unrolled", 32)):
    t = time.perf_counter()
    lower, comp = ct._one(ct.FORMS[name][2], n)
    out[f"compile/{name} N={n}"] = lower + comp
print("RESULT " + json.dumps(out))
"""


def _child(flags: str, rounds: int) -> dict:
    env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " " + flags).strip())
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(HERE), str(rounds)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}


def measure(cycles: int, rounds: int, tick=print) -> dict:
    runs = {name: [] for name in VARIANTS}
    rng = random.Random(0)
    for c in range(cycles):
        order = list(VARIANTS)
        rng.shuffle(order)
        for name in order:
            tick(f"cycle {c + 1}/{cycles}: {name}")
            runs[name].append(_child(VARIANTS[name], rounds))
    table = {}
    for name, results in runs.items():
        errors = [r["error"] for r in results if "error" in r]
        if errors:
            table[name] = {"flags": VARIANTS[name], "error": errors[0]}
            continue
        ratios = {}
        for key in results[0]:
            per_cycle = [r[key] / d[key] for r, d in zip(results, runs["default"], strict=True)]
            ratios[key] = statistics.median(per_cycle)
        table[name] = {
            "flags": VARIANTS[name],
            "ratio_to_default": ratios,
            "seconds": {k: statistics.median(r[k] for r in results) for k in results[0]},
        }
    return table


def markdown(table: dict, info: dict, cycles: int) -> str:
    keys = list(table["default"]["seconds"])
    lines = [
        "# XLA CPU flags: time relative to the default flags (lower is faster)",
        "",
        f"{info['date']}, {info['nproc']} cores ({info['cpu']}), jax {info['versions']['jax']}; "
        f"{cycles} cycles of one child process per flag set, shuffled; median of per-cycle "
        f"ratios. {info['note']}.",
        "",
        "| flags | " + " | ".join(keys) + " |",
        "|---|" + "---:|" * len(keys),
        "| default (seconds) | "
        + " | ".join(f"{table['default']['seconds'][k]:.3g} s" for k in keys)
        + " |",
    ]
    for name, row in table.items():
        if "error" in row:
            lines.append(f"| `{row['flags']}` | failed: {row['error'][:80]} |")
            continue
        if name == "default":
            continue
        lines.append(
            f"| {name}: `{row['flags']}` | "
            + " | ".join(f"{row['ratio_to_default'][k]:.2f}" for k in keys)
            + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from _timing import machine_info

    table = measure(args.cycles, args.rounds)
    info = machine_info()
    md = markdown(table, info, args.cycles)
    print(md)
    if args.cycles > 1:
        out = HERE / "results"
        (out / "xla_flags.json").write_text(
            json.dumps({"machine": info, "table": table}, indent=2) + "\n"
        )
        (out / "xla_flags.md").write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
