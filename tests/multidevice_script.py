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
    out.update(_checkpoints(blocks["mlp"], names["mlp"], x, key))
    out.update(_llama(layouts, key))
    print(json.dumps(out))


def _llama(layouts, key) -> dict:
    """A Llama (GQA, 4 layers) on each layout: logits, gradients and greedy tokens."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from composed_lifts import ShardingRules, device_mesh, models, shard_batch, sharded_init

    config = models.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=32,
    )  # fmt: skip
    model = models.Llama(config)
    ids = jnp.asarray(np.random.default_rng(2).integers(0, 64, (8, 6)), jnp.int32)

    def loss(variables, ids):
        logits = model.apply(variables, ids)
        return jnp.sum(logits**2), logits

    step = jax.jit(jax.value_and_grad(loss, has_aux=True))
    want_vars = jax.jit(model.init)(key, ids)
    (_, want_logits), want_grad = step(want_vars, ids)
    want_tokens = models.generate(model, want_vars["params"], np.asarray(ids), 8)
    feature = (("heads", "model"), ("mlp", "model"), ("embed", None), ("vocab", None))
    out = {}
    for name, (axes, base) in layouts.items():
        rules = ShardingRules(
            batch=base.batch, layers=base.layers, features=feature if "model" in axes else (),
            param_axes=models.LLAMA_PARAM_AXES,
        )  # fmt: skip
        mesh = device_mesh(axes)
        variables = sharded_init(model, mesh, rules, key, ids, stacks=models.STACKS)
        (_, logits), grad = step(variables, shard_batch(ids, mesh, rules))
        tokens = models.generate(
            model, variables["params"], np.asarray(ids), 8, mesh=mesh, rules=rules
        )
        q = variables["params"]["layers"]["self_attn"]["q_proj"]["kernel"]
        diff = lambda a, b: max(  # noqa: E731
            float(np.max(np.abs(np.asarray(u) - np.asarray(v))))
            for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))
        )
        out[f"llama/{name}"] = {
            "q_spec": [e for e in q.sharding.spec],
            "init_equal": diff(variables, want_vars) == 0.0,
            "logits_rel": diff(logits, want_logits) / float(np.max(np.abs(want_logits))),
            "grad_rel": diff(grad, want_grad)
            / max(
                float(np.max(np.abs(np.asarray(g)))) for g in jax.tree_util.tree_leaves(want_grad)
            ),
            "tokens_equal": bool(np.array_equal(tokens, want_tokens)),
        }
    return out


def _checkpoints(block_fields, param_axes, x, key) -> dict:
    """Save params sharded on one mesh; restore them onto another with explicit targets."""
    import tempfile

    import jax
    import numpy as np

    from composed_lifts import (
        ShardingRules,
        StackOptions,
        device_mesh,
        linen_stack,
        param_shardings,
        sharded_init,
    )
    from composed_lifts.checkpoint import Stack, load, save

    block, fields = block_fields
    options = StackOptions(num_layers=4)
    model = linen_stack(block, options)(**fields)
    feature = (("mlp", "model"), ("embed", None))
    layouts = {  # name: (mesh axes, rules, devices used)
        "data8": ({"data": 8}, ShardingRules(batch="data", param_axes=param_axes)),
        "model4": (
            {"model": 4},
            ShardingRules(batch=None, features=feature, param_axes=param_axes),
        ),
        "model8": (
            {"model": 8},
            ShardingRules(batch=None, features=feature, param_axes=param_axes),
        ),
        "feature2x4": (
            {"data": 2, "model": 4},
            ShardingRules(batch="data", features=feature, param_axes=param_axes),
        ),
        "one": ({"data": 1}, ShardingRules(batch="data", param_axes=param_axes)),
    }
    moves = [("feature2x4", "model4"), ("model4", "one"), ("data8", "model8")]
    abstract = jax.eval_shape(model.init, key, x)
    results = {}
    folder = tempfile.mkdtemp()
    for src, dst in moves:
        mesh, rules = device_mesh(layouts[src][0]), layouts[src][1]
        params = sharded_init(model, mesh, rules, key, x, options=options)["params"]
        want = jax.tree_util.tree_map(np.asarray, params)
        mesh_b, rules_b = device_mesh(layouts[dst][0]), layouts[dst][1]
        shardings = param_shardings(abstract, mesh_b, rules_b, options)["params"]
        target = jax.tree_util.tree_map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
            abstract["params"],
            shardings,
        )
        for kind, name in (("orbax", "ckpt"), ("safetensors", "ckpt.safetensors")):
            path = f"{folder}/{src}-{dst}-{name}"
            save(path, params, stacks=[Stack("")])
            got = load(path, like=target)
            same_structure = jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
            equal = same_structure and all(
                np.array_equal(np.asarray(g), w)
                for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want))
            )
            placed = all(
                isinstance(g, jax.Array) and g.sharding.is_equivalent_to(s, g.ndim)
                for g, s in zip(
                    jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(shardings)
                )
            )
            results[f"checkpoint/{kind}/{src}->{dst}"] = {"equal": bool(equal), "placed": placed}
    return results


if __name__ == "__main__":
    sys.exit(main())
