"""One device against 8 virtual CPU devices: the gradient step of an MLP stack, round-robin.

Runs in one process that asks XLA for 8 host devices; the one-device step keeps
every array on device 0 (no mesh), the others are placed by ``ShardingRules``.
On a 2-core machine 8 virtual devices share 2 cores, so the ratio says what the
partitioning and its collectives cost, not what 8 real devices would gain.
Writes ``bench/results/multidevice.json`` and ``.md``.

    python bench/multidevice.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
from pathlib import Path

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _timing import machine_info, round_robin  # noqa: E402
from composed_lifts import (  # noqa: E402
    MLPBlock,
    ShardingRules,
    StackOptions,
    device_mesh,
    linen_stack,
    shard_batch,
    sharded_init,
)

B, N, F = 64, 8, 256
MLP_AXES = (
    (r"Dense_0.*kernel", ("embed", "mlp")),
    (r"Dense_0.*bias", ("mlp",)),
    (r"Dense_1.*kernel", ("mlp", "embed")),
    (r"Dense_1.*bias", ("embed",)),
    (r"LayerNorm", ("embed",)),
)
LAYOUTS = {
    "data parallel (data=8)": ({"data": 8}, ShardingRules(batch="data", param_axes=MLP_AXES)),
    "feature sharded (data=2, model=4)": (
        {"data": 2, "model": 4},
        ShardingRules(batch="data", features=(("mlp", "model"),), param_axes=MLP_AXES),
    ),
    "layer sharded (data=2, stage=4)": (
        {"data": 2, "stage": 4},
        ShardingRules(batch="data", layers="stage", param_axes=MLP_AXES),
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    options = StackOptions(num_layers=N)
    model = linen_stack(MLPBlock, options)(features=F)
    key = jax.random.PRNGKey(0)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((B, F)), jnp.float32)

    def loss(variables, x):
        final, _ = model.apply(variables, x)
        return jnp.sum(final**2)

    step = jax.jit(jax.grad(loss))
    calls = {"one device": (jax.jit(model.init)(key, x), x)}
    collectives: dict = {"one device": {}}
    for name, (axes, rules) in LAYOUTS.items():
        mesh = device_mesh(axes)
        variables = sharded_init(model, mesh, rules, key, x, options=options)
        xs = shard_batch(x, mesh, rules)
        calls[name] = (variables, xs)
        hlo = step.lower(variables, xs).compile().as_text()
        found = re.findall(
            r"\b(all-reduce|all-gather|reduce-scatter|all-to-all|collective-permute)(?:-start)?\(",
            hlo,
        )
        collectives[name] = {op: found.count(op) for op in sorted(set(found))}
    fns = {
        name: (lambda v=v, xs=xs: jax.block_until_ready(step(v, xs)))
        for name, (v, xs) in calls.items()
    }
    for fn in fns.values():
        fn()  # compile
    samples = round_robin(fns, rounds=args.rounds, inner=3)
    base = statistics.median(samples["one device"])
    rows = {
        name: {
            "median_s": statistics.median(s),
            "ratio_to_one_device": statistics.median(s) / base,
            "collectives": collectives[name],
        }
        for name, s in samples.items()
    }
    result = {
        "machine": machine_info(),
        "devices": jax.device_count(),
        "shape": {"B": B, "N": N, "F": F, "block": "MLPBlock (4x expansion)"},
        "what": "gradient of sum(final**2) in all params, jitted; median of round-robin rounds",
        "load_average": os.getloadavg(),
        "rows": rows,
    }
    out = Path(__file__).parent / "results"
    (out / "multidevice.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# 1 vs 8 virtual CPU devices ({result['machine']['date']}, {result['machine']['cpu']}, "
        f"{result['machine']['nproc']} cores, load {result['load_average'][0]:.1f})",
        "",
        f"Gradient step of `linen_stack(MLPBlock)` at B={B}, N={N}, F={F}; 8 virtual devices share "
        "the machine's cores, so the ratio is the cost of partitioning, not a speed-up.",
        "",
        "| layout | median | x one device | collectives in the compiled step |",
        "|---|---|---|---|",
    ]
    for name, row in rows.items():
        ops = ", ".join(f"{op} x{n}" for op, n in row["collectives"].items()) or "none"
        lines.append(
            f"| {name} | {row['median_s'] * 1e3:.2f} ms | {row['ratio_to_one_device']:.2f}x | {ops} |"
        )
    (out / "multidevice.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
