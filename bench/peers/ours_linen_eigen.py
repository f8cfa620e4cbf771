"""Our Linen stack compiled with Eigen's dots: ``jax.jit(model.apply, compiler_options=...)``.

The same program as ``ours_linen``, with the one per-program option that
``composed-lifts tune`` can recommend on CPU (``DOT_BACKENDS["eigen"]``): XLA
then emits Eigen dots instead of its default YNNPACK ones. Unlike XLA_FLAGS, the
choice belongs to this one program.
"""

from __future__ import annotations

import jax

NAME = "ours: linen_stack, Eigen dots (jit compiler_options)"
GROUP = "ours"
SAME_PARAMS = True

EIGEN_DOTS = {"xla_cpu_experimental_ynn_fusion_type": ""}


def build(p):
    from composed_lifts import Block, StackOptions, linen_stack

    model = linen_stack(Block, StackOptions(num_layers=p.N))(features=p.F)
    variables = jax.device_put({"params": {"Dense_0": {"kernel": p.kernel, "bias": p.bias}}})
    apply = jax.jit(model.apply, compiler_options=EIGEN_DOTS)
    x = jax.device_put(p.x)
    return lambda: apply(variables, x)[0].block_until_ready()
