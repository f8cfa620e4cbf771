"""The seed's plain recipe, verbatim: no ``jax.jit``, so every call re-traces and re-compiles."""

from __future__ import annotations

import itertools

import flax.linen as nn
import jax

NAME = "seed's plain recipe (init+apply, no jit)"
GROUP = "recipe"
SAME_PARAMS = False


def recipe(seed: int, x_batch, num_layers: int, features: int):
    """The problem's steps 1-6, as written there."""

    class Block(nn.Module):
        features: int

        @nn.compact
        def __call__(self, x, _):
            x = nn.relu(nn.Dense(self.features)(x))
            return x, None

    ScanLayer = nn.scan(
        Block, variable_axes={"params": 0}, split_rngs={"params": True}, length=num_layers
    )
    BatchedScanLayer = nn.vmap(
        ScanLayer,
        in_axes=0,
        out_axes=0,
        variable_axes={"params": None},
        split_rngs={"params": False},
    )
    model = BatchedScanLayer(features=features)
    params = model.init(jax.random.PRNGKey(seed), x_batch, None)
    final, _ = model.apply(params, x_batch, None)
    return final.reshape(-1)


def build(p):
    seeds = itertools.count(1)

    def call():
        out = recipe(next(seeds), p.x, p.N, p.F)
        return jax.block_until_ready(out).reshape(p.B, p.F)

    return call
