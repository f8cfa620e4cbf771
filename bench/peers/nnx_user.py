"""Flax NNX as users write it (the NNX docs' scan-over-layers pattern) under ``nnx.jit``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

NAME = "Flax NNX as users write it (nnx.jit)"
GROUP = "peer"
SAME_PARAMS = True


class _Block(nnx.Module):
    def __init__(self, features: int, rngs: nnx.Rngs):
        self.linear = nnx.Linear(features, features, rngs=rngs)

    def __call__(self, x):
        return nnx.relu(self.linear(x))


class _Stack(nnx.Module):
    def __init__(self, num_layers: int, features: int, rngs: nnx.Rngs):
        @nnx.split_rngs(splits=num_layers)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def create(rngs):
            return _Block(features, rngs)

        self.blocks = create(rngs)

    def __call__(self, x):
        @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)
        def run(x, block):
            return block(x)

        return run(x, self.blocks)


def build(p):
    model = _Stack(p.N, p.F, nnx.Rngs(0))
    model.blocks.linear.kernel.value = jnp.asarray(p.kernel)
    model.blocks.linear.bias.value = jnp.asarray(p.bias)

    @nnx.jit
    def forward(model, x):
        return model(x)

    x = jax.device_put(p.x)
    return lambda: forward(model, x).block_until_ready()
