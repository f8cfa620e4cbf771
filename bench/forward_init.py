"""Where ``composed_lifts_forward``'s time goes: its param init against its apply, and the init's rate.

At small (B=8 N=4 F=64), medium (B=64 N=16 F=256) and large (B=256 N=32 F=1024),
round-robin in one process (``_timing.round_robin``), a new seed on every call:

- ``forward``: ``composed_lifts_forward`` (the flat-program init on CPU, then the apply);
- ``forward_flax_init``: the implementation before it (same validation, Flax's
  ``model.init`` inside the jit, then the same apply);
- ``apply``: the apply alone, on fixed params;
- ``jax_init``: JAX's own jitted init of the same model
  (``jax.jit(lambda s, x: model.init(PRNGKey(s), x, None))``);
- ``fast_init``: our init alone; ``threefry_words``: our threefry-2x32 words alone (same count);
- ``jax_threefry_words``: JAX's threefry words for the same keys, one layer per ``lax.map`` step;
- ``numpy_fill``: NumPy's ``Generator.standard_normal`` filling a preallocated float32
  buffer of the same count (PCG64 + ziggurat: another generator, for scale);
- ``write_floor``: a jitted program writing the same count of fresh float32 (allocation,
  first touch of the pages, the stores): no init can go below it.

The function's init is ``forward - apply`` (medians). Its random numbers per second are
compared with an estimate of this CPU's limit for threefry-2x32 (``threefry_limit``).
The repeated-call speedup of ``bench/forward_speedup.py`` is re-measured in the same run.

    .venv/bin/python bench/forward_init.py            # writes bench/results/forward_init.*
    .venv/bin/python bench/forward_init.py --quick    # fewer rounds, prints only
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pathlib
import statistics
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import forward_speedup  # noqa: E402
from _timing import calibrate, machine_info, round_robin, summarize  # noqa: E402
from composed_lifts import composed_lifts_forward  # noqa: E402
from composed_lifts._fast_init import fast_init_applies, seed_layer_keys  # noqa: E402
from composed_lifts._forward import (  # noqa: E402
    _apply_params,
    _init_and_apply_flax,
    _init_params,
    _init_params_flax,
    check_forward_args,
)
from composed_lifts._threefry import threefry_random_bits  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
SIZES = {"small": (8, 4, 64), "medium": (64, 16, 256), "large": (256, 32, 1024)}
# Vector integer operations per 32-bit word of threefry-2x32 as JAX draws it (partitionable
# layout: one block per word, bits = y0 ^ y1): counter + key add 1, 20 rounds of
# (add, rotate, xor) with a one-instruction rotate (AVX-512 vprold) 60, 5 key injections
# of 2 adds 10, the final xor 1.
OPS_PER_WORD = 72
VECTOR_OPS_PER_CYCLE = 2  # integer vector ALU ports usable at 512 bits (Intel: p0+p1 fused, p5)


def _cpu_flags_and_mhz() -> tuple[set[str], float]:
    flags, mhz = set(), 0.0
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
                elif line.startswith("cpu MHz") and not mhz:
                    mhz = float(line.split(":", 1)[1])
    except OSError:
        pass
    return flags, mhz


def threefry_limit() -> dict:
    """This CPU's threefry-2x32 words per second if every core did nothing else, at full SIMD."""
    flags, mhz = _cpu_flags_and_mhz()
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    cores = os.cpu_count() or 1
    words_per_s = cores * mhz * 1e6 * VECTOR_OPS_PER_CYCLE * lanes / OPS_PER_WORD
    return {
        "cores": cores,
        "mhz": mhz,
        "uint32_lanes": lanes,
        "vector_ops_per_cycle": VECTOR_OPS_PER_CYCLE,
        "ops_per_word": OPS_PER_WORD,
        "words_per_s": words_per_s,
        "arithmetic": (
            f"{cores} cores x {mhz:.0f} MHz x {VECTOR_OPS_PER_CYCLE} vector ops/cycle x "
            f"{lanes} uint32 lanes / {OPS_PER_WORD} ops per word = {words_per_s / 1e9:.2f}e9 words/s"
        ),
    }


def measure_size(name: str, rounds: int) -> dict:
    batch, num_layers, features = SIZES[name]
    count = num_layers * features * features
    x = jnp.asarray(np.random.default_rng(0).standard_normal((batch, features)), jnp.float32)
    kw = {"num_layers": num_layers, "features": features}
    seeds = itertools.count(1)
    variables = _init_params_flax(np.uint32(0), x, **kw)

    # Same numbers, bit for bit, before anything is timed.
    want = _init_and_apply_flax(np.uint32(5), x, **kw)
    np.testing.assert_array_equal(composed_lifts_forward(5, x, num_layers, features), want)
    for a, b in zip(
        jax.tree_util.tree_leaves(_init_params(np.uint32(5), x, **kw)),
        jax.tree_util.tree_leaves(_init_params_flax(np.uint32(5), x, **kw)),
    ):
        np.testing.assert_array_equal(a, b)

    @jax.jit
    def words(seed):
        keys, _ = seed_layer_keys(jax.random.PRNGKey(seed), num_layers)
        return jax.vmap(lambda k: threefry_random_bits(k, 32, (features, features)))(keys)

    @jax.jit
    def jax_words(seed):  # JAX's threefry, one layer per loop step as Flax's scan draws them
        keys, _ = seed_layer_keys(jax.random.PRNGKey(seed), num_layers)
        return jax.lax.map(lambda k: jax.random.bits(k, (features, features)), keys)

    np.testing.assert_array_equal(words(np.uint32(5)), jax_words(np.uint32(5)))
    floor = jax.jit(lambda seed: jnp.full((num_layers, features, features), seed, jnp.float32))
    buf = np.empty(count, np.float32)
    gen = np.random.default_rng(0)

    def old_forward(seed):
        s, xx, n, f = check_forward_args(seed, x, num_layers, features)
        return _init_and_apply_flax(s, xx, num_layers=n, features=f)

    fns = {
        "forward": lambda: composed_lifts_forward(next(seeds), x, num_layers, features),
        "forward_flax_init": lambda: old_forward(next(seeds)),
        "apply": lambda: _apply_params(variables, x, **kw),
        "jax_init": lambda: _init_params_flax(np.uint32(next(seeds)), x, **kw),
        "fast_init": lambda: _init_params(np.uint32(next(seeds)), x, **kw),
        "threefry_words": lambda: words(np.uint32(next(seeds))),
        "jax_threefry_words": lambda: jax_words(np.uint32(next(seeds))),
        "numpy_fill": lambda: gen.standard_normal(out=buf, dtype=np.float32),
        "write_floor": lambda: floor(np.float32(next(seeds))),
    }
    fns = {k: (lambda f=f: jax.block_until_ready(f())) for k, f in fns.items()}
    for f in fns.values():
        f()  # compile, warm
    inner = {k: calibrate(f, target_s=0.02) for k, f in fns.items()}
    samples = round_robin(fns, rounds=rounds, inner=inner)
    stats = {k: summarize(v) for k, v in samples.items()}
    med = {k: v["median_s"] for k, v in stats.items()}
    init = med["forward"] - med["apply"]
    init_old = med["forward_flax_init"] - med["apply"]
    # Per-round differences too (same round, adjacent in time), for a spread.
    per_round = [f - a for f, a in zip(samples["forward"], samples["apply"])]
    return {
        "shape": {"B": batch, "N": num_layers, "F": features},
        "numbers": count,
        "inner": inner,
        "stats": stats,
        "function_init_s": init,
        "function_init_s_per_round_median": statistics.median(per_round),
        "flax_init_in_forward_s": init_old,
        "ratios": {
            "forward_over_apply": med["forward"] / med["apply"],
            "forward_over_forward_flax_init": med["forward"] / med["forward_flax_init"],
            "function_init_over_jax_init": init / med["jax_init"],
            "fast_init_over_jax_init": med["fast_init"] / med["jax_init"],
            "init_share_of_forward": init / med["forward"],
        },
        "numbers_per_s": {
            "function_init": count / init,
            "fast_init": count / med["fast_init"],
            "jax_init": count / med["jax_init"],
            "threefry_words": count / med["threefry_words"],
            "jax_threefry_words": count / med["jax_threefry_words"],
            "numpy_fill": count / med["numpy_fill"],
            "write_floor": count / med["write_floor"],
        },
    }


def to_markdown(res: dict) -> str:
    m, lim = res["machine"], res["threefry_limit"]
    rows = [
        "# composed_lifts_forward: init vs apply, and the init's rate",
        "",
        f"{m['date']}, {m['nproc']} cores ({m['cpu']}), jax {m['versions']['jax']}, "
        f"flax {m['versions']['flax']}; load average before / after: "
        f"{res['load_before']} / {res['load_after']}; {m['note']}.",
        "",
        f"{res['method']} Fast init active: {res['fast_init_applies']}.",
        "",
        "| | "
        + " | ".join(
            f"{k} B={v['shape']['B']} N={v['shape']['N']} F={v['shape']['F']}"
            for k, v in res["sizes"].items()
        )
        + " |",
        "|---|" + "---:|" * len(res["sizes"]),
    ]

    def ms(v):
        return f"{v * 1e3:.3f} ms" if v < 0.01 else f"{v * 1e3:.1f} ms"

    def row(label, fn):
        rows.append(f"| {label} | " + " | ".join(fn(v) for v in res["sizes"].values()) + " |")

    labels = {
        "forward": "`composed_lifts_forward` (fast init + apply)",
        "forward_flax_init": "before: Flax's init + apply, one jit",
        "apply": "apply alone",
        "jax_init": "JAX's own jitted init of the model",
        "fast_init": "our init alone",
        "threefry_words": "our threefry words alone (same count)",
        "jax_threefry_words": "JAX's threefry words, `lax.map` over the layers",
        "numpy_fill": "NumPy `standard_normal` fill, float32",
        "write_floor": "writing the same count of float32 (floor)",
    }
    for key, label in labels.items():
        row(label + ", median", lambda v, key=key: ms(v["stats"][key]["median_s"]))
    row("**function's init** (forward - apply)", lambda v: f"**{ms(v['function_init_s'])}**")
    row("init share of the function", lambda v: f"{v['ratios']['init_share_of_forward']:.0%}")
    row("forward / apply", lambda v: f"{v['ratios']['forward_over_apply']:.2f}")
    row(
        "**forward / before**", lambda v: f"**{v['ratios']['forward_over_forward_flax_init']:.2f}**"
    )
    row(
        "**function's init / JAX's jitted init** (target <= 0.5 at medium, large)",
        lambda v: f"**{v['ratios']['function_init_over_jax_init']:.2f}**",
    )
    row(
        "our init alone / JAX's jitted init",
        lambda v: f"{v['ratios']['fast_init_over_jax_init']:.2f}",
    )
    for key, label in [
        ("function_init", "function's init"),
        ("jax_init", "JAX's jitted init"),
        ("threefry_words", "our threefry words"),
        ("jax_threefry_words", "JAX's threefry words"),
        ("numpy_fill", "NumPy fill"),
        ("write_floor", "write floor"),
    ]:
        row(f"{label}: numbers/s", lambda v, key=key: f"{v['numbers_per_s'][key] / 1e9:.3f}e9")
    row(
        "**threefry limit / function's init rate** (target <= 2)",
        lambda v: f"**{lim['words_per_s'] / v['numbers_per_s']['function_init']:.1f}**",
    )
    sp = res["forward_speedup"]
    rows += [
        "",
        f"Estimated threefry-2x32 limit of this CPU: {lim['arithmetic']}.",
        "",
        f"Re-measured in this run (`bench/forward_speedup.py`, {sp['method']}): "
        f"`composed_lifts_forward` repeated with a new seed is **{sp['speedup_median']:.0f}x** "
        f"faster than the seed's recipe (target >= {sp['target']:.0f}x; "
        f"{'met' if sp['met'] else 'NOT met'}).",
        "",
    ]
    return "\n".join(rows)


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds; print, write nothing")
    ap.add_argument("--sizes", nargs="*", default=list(SIZES), choices=list(SIZES))
    args = ap.parse_args(argv)
    load_before = _load()
    rounds = (
        {"small": 5, "medium": 5, "large": 3}
        if args.quick
        else {"small": 30, "medium": 20, "large": 10}
    )
    sizes = {name: measure_size(name, rounds[name]) for name in args.sizes}
    speedup = forward_speedup.measure(5 if args.quick else 30, fast_per_round=50)
    res = {
        "method": (
            "Per size, round-robin in one process (each round times every row once, shuffled; "
            "calls shorter than 20 ms averaged over enough calls to fill 20 ms); a new seed "
            f"every call; medians over {rounds} rounds; outputs checked bit for bit first."
        ),
        "fast_init_applies": fast_init_applies(),
        "threefry_limit": threefry_limit(),
        "sizes": sizes,
        "forward_speedup": speedup,
        "load_before": load_before,
        "load_after": _load(),
        "machine": machine_info(),
    }
    md = to_markdown(res)
    print(md)
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "forward_init.json").write_text(json.dumps(res, indent=2) + "\n")
        (RESULTS / "forward_init.md").write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
