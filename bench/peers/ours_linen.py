"""Our Linen stack: ``linen_stack(Block, StackOptions(num_layers=N))`` with ``jax.jit(model.apply)``.

This is exactly the seed's ``nn.vmap(nn.scan(Block))`` composition (params shared
across the batch), with the given params loaded into its variables.
"""

from __future__ import annotations

import jax

NAME = "ours: linen_stack (jit apply)"
GROUP = "ours"
SAME_PARAMS = True


def build(p):
    from composed_lifts import Block, StackOptions, linen_stack

    model = linen_stack(Block, StackOptions(num_layers=p.N))(features=p.F)
    variables = jax.device_put({"params": {"Dense_0": {"kernel": p.kernel, "bias": p.bias}}})
    apply = jax.jit(model.apply)
    x = jax.device_put(p.x)
    return lambda: apply(variables, x)[0].block_until_ready()
