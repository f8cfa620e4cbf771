"""Training-step time and scratch memory against depth N, with and without remat.

Two blocks, each stacked with ``linen_stack`` (params shared across the batch,
B=64, F=256): the seed's ``Block`` (Dense + relu) and a residual MLP block with
a 4x expansion (LayerNorm, Dense 4F, gelu, Dense F, plus the input), where
remat matters. A training step is ``jax.value_and_grad`` of the mean squared
final activation and an SGD update, under ``jax.jit``.

Memory is XLA's own account of the compiled program
(``compiled.memory_analysis().temp_size_in_bytes``), exact and free of drift.
``grad_temp_bytes`` is the scratch of ``jax.value_and_grad`` alone (params and
input in, loss and grads out): the saved activations and workspace, which is
what remat trades for recompute. ``step_temp_bytes`` is the scratch of the
whole SGD step, which also holds the N-stacked gradients between the backward
pass and the update (XLA does not alias them to the outputs). Step time is timed round-robin across the remat
policies at each N.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from _timing import calibrate, round_robin, summarize

__all__ = ["BLOCKS", "POLICIES", "measure"]

B, F = 64, 256


def _blocks():
    from composed_lifts import Block, MLPBlock

    return {
        "seed_block": ("seed Block (Dense + relu)", Block),
        "mlp4x": ("residual MLP block, 4x", MLPBlock),
    }


BLOCKS = ("seed_block", "mlp4x")
POLICIES = ("NONE", "FULL", "DOTS")


def _step(block, n, policy):
    from composed_lifts import Remat, StackOptions, linen_stack

    options = StackOptions(num_layers=n, remat=Remat[policy])
    model = linen_stack(block, options)(features=F)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((B, F)), jnp.float32)
    params = model.init(jax.random.PRNGKey(0), x)

    def loss(params, x):
        final, _ = model.apply(params, x)
        return jnp.mean(final**2)

    def step(params, x):
        value, grads = jax.value_and_grad(loss)(params, x)
        return value, jax.tree_util.tree_map(lambda p, g: p - 1e-3 * g, params, grads)

    grad_mem = (
        jax.jit(jax.value_and_grad(loss)).trace(params, x).lower().compile().memory_analysis()
    )
    compiled = jax.jit(step).trace(params, x).lower().compile()
    mem = compiled.memory_analysis()
    stats = {
        "grad_temp_bytes": int(grad_mem.temp_size_in_bytes),
        "step_temp_bytes": int(mem.temp_size_in_bytes),
        "argument_bytes": int(mem.argument_size_in_bytes),
        "output_bytes": int(mem.output_size_in_bytes),
    }
    return (lambda: jax.block_until_ready(compiled(params, x))), stats


def measure(depths, *, rounds: int, sample_s: float, tick=lambda msg: None) -> dict:
    """Per block, policy and N: scratch bytes and step time (median over ``rounds``)."""
    blocks = _blocks()
    out = {}
    for key in BLOCKS:
        label, block = blocks[key]
        out[key] = {"name": label, "by_policy": {p: {} for p in POLICIES}}
        for n in depths:
            fns, inner = {}, {}
            for policy in POLICIES:
                tick(f"train {key} N={n} remat={policy}: compile")
                fn, stats = _step(block, n, policy)
                fn()
                fns[policy] = fn
                inner[policy] = calibrate(fn, sample_s, cap=50)
                out[key]["by_policy"][policy][str(n)] = stats
            samples = round_robin(
                fns,
                rounds=rounds,
                inner=inner,
                on_round=lambda r, k=key, n=n: tick(f"train {k} N={n}: round {r + 1}/{rounds}"),
            )
            for policy, s in samples.items():
                out[key]["by_policy"][policy][str(n)]["step"] = summarize(s)
    return out
