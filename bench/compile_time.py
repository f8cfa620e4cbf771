"""Compile time against depth N: scanned stacks (one loop body) against unrolled ones (N copies).

Each measurement builds a fresh function (so no JAX cache is hit), then times
``jax.jit(f).trace(...).lower()`` (Python tracing and lowering to StableHLO)
and ``.compile()`` (XLA) separately, on abstract inputs (B=64, F=256), so no
params are allocated. The persistent compilation cache is off. Depths are
visited round-robin, so drift hits every N alike.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from _timing import summarize

__all__ = ["FORMS", "measure"]

B, F = 64, 256


def _jax_scan(n):
    def forward(kernel, bias, x):
        def layer(carry, params):
            k, b = params
            return jax.nn.relu(carry @ k + b), None

        return jax.lax.scan(layer, x, (kernel, bias))[0]

    return forward, _arrays(n)


def _jax_unrolled(n):
    def forward(kernel, bias, x):
        for i in range(n):
            x = jax.nn.relu(x @ kernel[i] + bias[i])
        return x

    return forward, _arrays(n)


def _arrays(n):
    spec = jax.ShapeDtypeStruct
    return (spec((n, F, F), jnp.float32), spec((n, F), jnp.float32), spec((B, F), jnp.float32))


def _linen(n, unroll=1):
    from composed_lifts import Block, StackOptions, linen_stack

    model = linen_stack(Block, StackOptions(num_layers=n, unroll=unroll))(features=F)
    params = {
        "params": {
            "Dense_0": {
                "kernel": jax.ShapeDtypeStruct((n, F, F), jnp.float32),
                "bias": jax.ShapeDtypeStruct((n, F), jnp.float32),
            }
        }
    }

    def forward(variables, x):
        return model.apply(variables, x)[0]

    return forward, (params, jax.ShapeDtypeStruct((B, F), jnp.float32))


def _linen_unrolled(n):
    return _linen(n, unroll=max(n, 1))


def _nnx(n):
    from flax import nnx

    import composed_lifts

    class Block(nnx.Module):
        def __init__(self, rngs):
            self.linear = nnx.Linear(F, F, rngs=rngs)

        def __call__(self, x, _=None):
            return nnx.relu(self.linear(x)), None

    stack = nnx.eval_shape(
        lambda: composed_lifts.nnx_stack(
            Block, composed_lifts.StackOptions(num_layers=n), rngs=nnx.Rngs(0)
        )
    )
    graphdef, state = nnx.split(stack)

    def forward(state, x):
        return nnx.merge(graphdef, state)(x)[0]

    return forward, (state, jax.ShapeDtypeStruct((B, F), jnp.float32))


# name -> (label, scanned?, builder); the NNX row needs composed_lifts.nnx_stack.
FORMS = {
    "jax_scan": ("hand-written lax.scan", True, _jax_scan),
    "ours_linen": ("ours: linen_stack", True, _linen),
    "ours_nnx": ("ours: nnx_stack", True, _nnx),
    "jax_unrolled": ("unrolled JAX loop", False, _jax_unrolled),
    "ours_linen_unrolled": ("ours: linen_stack unroll=N", False, _linen_unrolled),
}


def _available(name) -> str | None:
    if name == "ours_nnx":
        import composed_lifts

        if "nnx_stack" not in composed_lifts.__all__:
            return "composed_lifts.nnx_stack has not landed yet"
    return None


def _one(builder, n) -> tuple[float, float]:
    forward, args = builder(n)
    start = time.perf_counter()
    lowered = jax.jit(forward).trace(*args).lower()
    mid = time.perf_counter()
    lowered.compile()
    return mid - start, time.perf_counter() - mid


def measure(depths, unrolled_depths, *, reps: int, tick=lambda msg: None) -> dict:
    """Trace+lower and compile seconds per form and depth, median over ``reps`` round-robin passes."""
    out = {}
    plan = []
    for name, (label, scanned, builder) in FORMS.items():
        reason = _available(name)
        out[name] = {"name": label, "scanned": scanned, "by_n": {}}
        if reason:
            out[name]["skipped"] = reason
            continue
        for n in depths if scanned else unrolled_depths:
            plan.append((name, n, builder))
    samples = {(name, n): ([], []) for name, n, _ in plan}
    for rep in range(reps):
        for name, n, builder in plan:
            tick(f"compile {name} N={n} ({rep + 1}/{reps})")
            lower_s, compile_s = _one(builder, n)
            samples[name, n][0].append(lower_s)
            samples[name, n][1].append(compile_s)
    for (name, n), (lower, comp) in samples.items():
        total = [a + b for a, b in zip(lower, comp, strict=True)]
        out[name]["by_n"][str(n)] = {
            "trace_lower": summarize(lower),
            "compile": summarize(comp),
            "total": summarize(total),
        }
    return out


def plan_size(depths, unrolled_depths, reps) -> int:
    """How many compilations :func:`measure` will run (for the progress bar)."""
    live = [scanned for name, (_, scanned, _) in FORMS.items() if not _available(name)]
    return reps * sum(len(depths) if scanned else len(unrolled_depths) for scanned in live)
