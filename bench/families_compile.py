"""Compile time of a Gemma 3 text model (5 sliding : 1 global layers) against its depth.

The layers differ in their attention kind (window, rope base), given to the one ``nn.scan``
as a per-layer input, so the scanned model's compile time should stay flat in the depth;
the unrolled one grows with it. Each round compiles every contender once (a fresh
``jax.jit``; JAX's persistent cache off), in a shuffled order; the table gives medians
and the ratio to the scanned 6-layer model of the same run.

    flock /tmp/cl-heavy.lock .venv/bin/python bench/families_compile.py   # ~2 minutes
"""

from __future__ import annotations

import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from composed_lifts import models

ROUNDS = 3
CONTENDERS = [("scanned", 6), ("scanned", 24), ("scanned", 96), ("unrolled", 6), ("unrolled", 24)]


def config(num_layers: int) -> models.Gemma3TextConfig:
    return models.Gemma3TextConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=128,
        sliding_window=16,
    )


def compile_seconds(form: str, num_layers: int) -> float:
    model = models.Gemma3(config(num_layers), scan_layers=form == "scanned")
    ids = jax.ShapeDtypeStruct((2, 32), jnp.int32)
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0), ids)["params"]
    start = time.perf_counter()
    jax.jit(lambda p, i: model.apply({"params": p}, i)).lower(params, ids).compile()
    return time.perf_counter() - start


def main() -> None:
    jax.config.update("jax_enable_compilation_cache", False)
    times: dict[str, list[float]] = {f"{f} N={n}": [] for f, n in CONTENDERS}
    order = list(CONTENDERS)
    for _ in range(ROUNDS):
        random.shuffle(order)
        for form, n in order:
            times[f"{form} N={n}"].append(compile_seconds(form, n))
    base = statistics.median(times["scanned N=6"])
    rows = {name: statistics.median(t) for name, t in times.items()}
    out = Path(__file__).parent / "results"
    record = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "jax": jax.__version__,
        "rounds": ROUNDS,
        "seconds": times,
        "median_seconds": rows,
    }
    (out / "families_compile.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "# Gemma 3 text: compile time against depth (5 sliding : 1 global layers)",
        "",
        f"{record['date']}, jax {jax.__version__}, {ROUNDS} rounds round-robin; "
        "`bench/families_compile.py`.",
        "",
        "| model | median compile (s) | vs scanned N=6 |",
        "|---|---|---|",
        *(f"| {name} | {t:.2f} | {t / base:.2f}x |" for name, t in rows.items()),
        "",
    ]
    (out / "families_compile.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
