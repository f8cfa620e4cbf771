"""Run in a subprocess with 8 virtual CPU devices by ``test_multidevice.py``; prints one JSON line.

For each block and each layout (data parallel, feature sharded, layer sharded) it
initialises the stack on its shards and on one device, applies and differentiates
both, and records what the tests assert: the specs and per-device buffer sizes of
the params, the largest differences from one device, and the collectives in the
compiled gradient's HLO.
"""

from __future__ import annotations

import json
import os
import re
import sys

DEVICES = 8


def main() -> None:
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={DEVICES}"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax
    import jax.numpy as jnp
    import numpy as np

    from composed_lifts import (
        Block,
        MLPBlock,
        ShardingRules,
        StackOptions,
        composed_lifts_forward,
        device_mesh,
        linen_stack,
        shard_batch,
        sharded_init,
    )

    assert jax.device_count() == DEVICES, jax.devices()
    B, N, F = 8, 4, 8
    names = {  # logical names of the per-layer axes of blocks without metadata
        "seed": ((r"kernel", ("embed", "mlp")), (r"bias", ("mlp",))),
        "mlp": (
            (r"Dense_0.*kernel", ("embed", "mlp")),
            (r"Dense_0.*bias", ("mlp",)),
            (r"Dense_1.*kernel", ("mlp", "embed")),
            (r"Dense_1.*bias", ("embed",)),
            (r"LayerNorm", ("embed",)),
        ),
    }
    blocks = {"seed": (Block, {"features": F}), "mlp": (MLPBlock, {"features": F})}
    layouts = {
        "data": ({"data": 8}, ShardingRules(batch="data")),
        "feature": (
            {"data": 2, "model": 4},
            ShardingRules(batch="data", features=(("mlp", "model"), ("embed", None))),
        ),
        "layer": ({"data": 2, "stage": 4}, ShardingRules(batch="data", layers="stage")),
    }
    x = jnp.asarray(np.random.default_rng(0).standard_normal((B, F)), jnp.float32)
    key = jax.random.PRNGKey(0)
    out: dict = {}
    for block_name, (block, fields) in blocks.items():
        options = StackOptions(num_layers=N)
        model = linen_stack(block, options)(**fields)

        def loss(variables, x, model=model):
            final, _ = model.apply(variables, x)
            return jnp.sum(final**2), final

        step = jax.jit(jax.value_and_grad(loss, has_aux=True))
        want_vars = jax.jit(model.init)(key, x)
        (_, want_out), want_grad = step(want_vars, x)
        for layout_name, (axes, base_rules) in layouts.items():
            rules = ShardingRules(
                batch=base_rules.batch,
                layers=base_rules.layers,
                features=base_rules.features,
                param_axes=names[block_name],
            )
            mesh = device_mesh(axes)
            variables = sharded_init(model, mesh, rules, key, x, options=options)
            xs = shard_batch(x, mesh, rules)
            (_, got_out), got_grad = step(variables, xs)
            flat = jax.tree_util.tree_flatten_with_path(variables)[0]
            leaves = {
                jax.tree_util.keystr(p): {
                    "shape": list(a.shape),
                    "spec": [list(e) if isinstance(e, tuple) else e for e in a.sharding.spec],
                    "device_bytes": sorted({s.data.nbytes for s in a.addressable_shards}),
                    "nbytes": a.nbytes,
                    "devices": len(a.sharding.device_set),
                }
                for p, a in flat
            }
            hlo = step.lower(variables, xs).compile().as_text()
            collectives = sorted(
                set(
                    re.findall(
                        r"\b(all-reduce|all-gather|reduce-scatter|all-to-all|"
                        r"collective-permute)(?:-start)?\(",
                        hlo,
                    )
                )
            )

            def maxdiff(a, b):
                diffs = jax.tree_util.tree_map(
                    lambda u, v: float(np.max(np.abs(np.asarray(u) - np.asarray(v)), initial=0)),
                    a,
                    b,
                )
                return max(jax.tree_util.tree_leaves(diffs))

            out[f"{block_name}/{layout_name}"] = {
                "mesh": axes,
                "leaves": leaves,
                "init_equal": bool(
                    jax.tree_util.tree_all(
                        jax.tree_util.tree_map(
                            lambda u, v: bool(np.array_equal(np.asarray(u), np.asarray(v))),
                            variables,
                            want_vars,
                        )
                    )
                ),
                "out_maxdiff": maxdiff(got_out, want_out),
                "out_scale": float(np.max(np.abs(np.asarray(want_out)))),
                "grad_maxdiff": maxdiff(got_grad, want_grad),
                "grad_scale": max(
                    float(np.max(np.abs(np.asarray(g))))
                    for g in jax.tree_util.tree_leaves(want_grad)
                ),
                "out_devices": len(got_out.sharding.device_set),
                "collectives": collectives,
            }
    # composed_lifts_forward on each 8-device layout against one device (bit for bit the recipe).
    x_fwd = np.random.default_rng(1).standard_normal((B, F)).astype(np.float32)
    want_fwd = np.asarray(composed_lifts_forward(7, x_fwd, N, F))
    for layout_name, (axes, rules) in layouts.items():
        got = composed_lifts_forward(7, x_fwd, N, F, mesh=device_mesh(axes), rules=rules)
        out[f"forward/{layout_name}"] = {
            "maxdiff": float(np.max(np.abs(np.asarray(got) - want_fwd))),
            "scale": float(np.max(np.abs(want_fwd))),
            "devices": len(got.sharding.device_set),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
