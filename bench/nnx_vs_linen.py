"""NNX stack vs Linen stack, steady-state forward latency at B=64, N=16, F=256 (issue 3's target: <= 1.05x).

Both stacks hold the same params (copied with ``linen_to_nnx``) and give identical outputs
(checked). Measured round-robin in one process: Linen ``jax.jit(model.apply)``, our NNX fast path
``nnx_split_apply``, split/merge returning nothing but the output, and the default ``nnx.jit``.
Writes ``bench/results/nnx_vs_linen.json``. Run: ``.venv/bin/python bench/nnx_vs_linen.py``.
"""

from __future__ import annotations

import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from composed_lifts import (
    Block,
    StackOptions,
    linen_stack,
    linen_to_nnx,
    nnx_split_apply,
    nnx_stack,
)

B, N, F = 64, 16, 256
REPEATS = 200


class Layer(nnx.Module):
    def __init__(self, rngs):
        self.Dense_0 = nnx.Linear(F, F, rngs=rngs)

    def __call__(self, x, _):
        return nnx.relu(self.Dense_0(x)), None


def main() -> dict:
    opts = StackOptions(num_layers=N)
    model = linen_stack(Block, opts)(features=F)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((B, F)), jnp.float32)
    variables = model.init(jax.random.PRNGKey(0), x)
    linen = jax.jit(model.apply)
    stack = linen_to_nnx(variables, nnx_stack(Layer, opts, rngs=nnx.Rngs(0)))
    apply, state = nnx_split_apply(stack)
    graphdef, pure_state = nnx.split(stack)
    pure = jax.jit(lambda s, v: nnx.merge(graphdef, s)(v))
    default_jit = nnx.jit(lambda m, v: m(v))
    fns = {
        "linen jit(apply)": lambda: linen(variables, x)[0],
        "nnx nnx_split_apply": lambda: apply(state, x)[0][0],
        "nnx split/merge, output only": lambda: pure(pure_state, x)[0],
        "nnx default nnx.jit": lambda: default_jit(stack, x)[0],
    }
    want = np.asarray(fns["linen jit(apply)"]())
    for name, fn in fns.items():
        np.testing.assert_array_equal(np.asarray(fn()), want, err_msg=name)
    times = {name: [] for name in fns}
    for _ in range(REPEATS):
        for name, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - start)
    base_med = float(np.median(times["linen jit(apply)"]))
    base_min = float(np.min(times["linen jit(apply)"]))
    rows = {
        name: {
            "median_ms": float(np.median(t)) * 1e3,
            "min_ms": float(np.min(t)) * 1e3,
            "ratio_median_vs_linen": float(np.median(t)) / base_med,
            "ratio_min_vs_linen": float(np.min(t)) / base_min,
        }
        for name, t in times.items()
    }
    result = {
        "what": f"forward latency, B={B} N={N} F={F}, float32, {REPEATS} round-robin repeats",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "jax": jax.__version__,
        "rows": rows,
    }
    for name, row in rows.items():
        print(
            f"{name:32s} median {row['median_ms']:7.3f} ms  min {row['min_ms']:7.3f} ms  "
            f"x{row['ratio_median_vs_linen']:.3f} (median)  x{row['ratio_min_vs_linen']:.3f} (min)"
        )
    out = os.path.join(os.path.dirname(__file__), "results", "nnx_vs_linen.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out + ".tmp", "w") as f:
        json.dump(result, f, indent=2)
    os.replace(out + ".tmp", out)
    return result


if __name__ == "__main__":
    main()
