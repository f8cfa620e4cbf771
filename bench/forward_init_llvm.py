"""Is the flat-program init latency-bound? Its time with LLVM interleaving more vectors per loop step.

The init's fused loop computes, per vector of numbers, one long dependent chain
(threefry's 20 rounds, ``log1p``, a 9-term Horner polynomial), too long for the
CPU to overlap many loop iterations. LLVM's ``-force-vector-interleave=K`` makes
each loop step work on K independent vectors. XLA takes LLVM options only
process-wide (``XLA_FLAGS=--xla_backend_extra_options=...``, read once at start;
``jax.jit(compiler_options=...)`` refuses this map-valued option), so each
setting runs in its own child process; children alternate in shuffled cycles,
and each child times our init and JAX's jitted init at medium and large and
checks that its params equal Flax's bit for bit. The figure is the median over
cycles of (our init / JAX's init) per setting: a ratio within one process.

    .venv/bin/python bench/forward_init_llvm.py              # writes bench/results/forward_init_llvm.*
    .venv/bin/python bench/forward_init_llvm.py --cycles 1   # a look, writes nothing
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
RESULTS = HERE / "results"
VARIANTS = {
    "default": "",
    "interleave 2": "--xla_backend_extra_options=-force-vector-interleave=2",
    "interleave 4": "--xla_backend_extra_options=-force-vector-interleave=4",
}
SIZES = {"medium": (64, 16, 256), "large": (256, 32, 1024)}

CHILD = r"""
import json, sys
import numpy as np, jax, jax.numpy as jnp
sys.path.insert(0, sys.argv[1])
from _timing import calibrate, round_robin, summarize
from composed_lifts._forward import _init_params, _init_params_flax
out = {}
for size, (B, N, F) in json.loads(sys.argv[3]).items():
    x = jnp.zeros((B, F), jnp.float32)
    kw = dict(num_layers=N, features=F)
    for a, b in zip(jax.tree_util.tree_leaves(_init_params(np.uint32(9), x, **kw)),
                    jax.tree_util.tree_leaves(_init_params_flax(np.uint32(9), x, **kw))):
        np.testing.assert_array_equal(a, b)
    fns = {"ours": lambda: jax.block_until_ready(_init_params(np.uint32(3), x, **kw)),
           "jax": lambda: jax.block_until_ready(_init_params_flax(np.uint32(3), x, **kw))}
    inner = {k: calibrate(f, 0.02) for k, f in fns.items()}
    s = round_robin(fns, rounds=int(sys.argv[2]), inner=inner)
    med = {k: summarize(v)["median_s"] for k, v in s.items()}
    out[size] = {"ours_s": med["ours"], "jax_s": med["jax"], "ratio": med["ours"] / med["jax"]}
print("RESULT " + json.dumps(out))
"""


def _child(flags: str, rounds: int) -> dict:
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    args = [sys.executable, "-c", CHILD, str(HERE), str(rounds), json.dumps(SIZES)]
    run = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    line = [ln for ln in run.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args(argv)
    load_before = os.getloadavg()
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    rng = random.Random(0)
    for cycle in range(args.cycles):
        order = list(VARIANTS)
        rng.shuffle(order)
        for name in order:
            runs[name].append(_child(VARIANTS[name], args.rounds))
        print(f"cycle {cycle + 1}/{args.cycles} done", file=sys.stderr)
    # Per setting and size: our init / JAX's (same child), and our init / the default
    # child's our init in the same cycle (adjacent processes).
    table = {
        name: {
            size: {
                "ours_over_jax": statistics.median(r[size]["ratio"] for r in results),
                "ours_over_default": statistics.median(
                    r[size]["ours_s"] / d[size]["ours_s"] for r, d in zip(results, runs["default"])
                ),
            }
            for size in SIZES
        }
        for name, results in runs.items()
    }
    lines = [
        "# The flat-program init with LLVM interleaving (process-wide XLA_FLAGS)",
        "",
        f"{args.cycles} cycles of one child process per setting, shuffled; each child "
        f"{args.rounds} rounds round-robin; load average before / after: "
        f"{' '.join(f'{v:.2f}' for v in load_before)} / "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}. Params checked bit for bit "
        "against Flax's init in every child. Medians over cycles.",
        "",
        "| setting | "
        + " | ".join(
            f"{s}: our init / JAX's jitted init (same process) | {s}: our init / default's"
            for s in SIZES
        )
        + " |",
        "|---|" + "---:|" * (2 * len(SIZES)),
    ]
    for name, row in table.items():
        flags = VARIANTS[name] or "(none)"
        cells = [
            f"{row[s]['ours_over_jax']:.2f} | {row[s]['ours_over_default']:.2f}" for s in SIZES
        ]
        lines.append(f"| {name}: `{flags}` | " + " | ".join(cells) + " |")
    md = "\n".join(lines) + "\n"
    print(md)
    if args.cycles > 1:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "forward_init_llvm.json").write_text(
            json.dumps(
                {"variants": VARIANTS, "sizes": SIZES, "table": table, "runs": runs}, indent=2
            )
            + "\n"
        )
        (RESULTS / "forward_init_llvm.md").write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
