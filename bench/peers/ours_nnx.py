"""Our NNX stack: ``nnx_stack(make_block, StackOptions(num_layers=N), rngs=...)``.

Called on its fast path, ``apply, state = nnx_split_apply(stack)``: split once,
merge under ``jax.jit``, the state passed as flat lists of arrays.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import Unavailable

NAME = "ours: nnx_stack (nnx_split_apply)"
GROUP = "ours"
SAME_PARAMS = True


def build(p):
    import composed_lifts

    if "nnx_stack" not in getattr(composed_lifts, "__all__", ()):
        raise Unavailable("composed_lifts.nnx_stack has not landed yet")
    from flax import nnx

    class Block(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            self.linear = nnx.Linear(p.F, p.F, rngs=rngs)

        def __call__(self, x, _=None):
            return nnx.relu(self.linear(x)), None

    options = composed_lifts.StackOptions(num_layers=p.N)
    stack = composed_lifts.nnx_stack(Block, options, rngs=nnx.Rngs(0))
    stack.layers.linear.kernel.value = jnp.asarray(p.kernel)
    stack.layers.linear.bias.value = jnp.asarray(p.bias)
    apply, state = composed_lifts.nnx_split_apply(stack)
    x = jax.device_put(p.x)
    return lambda: apply(state, x)[0][0].block_until_ready()
