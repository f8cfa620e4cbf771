"""Hand-written ``jax.lax.scan`` over stacked params, under ``jax.jit``: the baseline."""

from __future__ import annotations

import jax

NAME = "hand-written lax.scan"
GROUP = "jax"
SAME_PARAMS = True


def forward(kernel, bias, x):
    def layer(carry, params):
        k, b = params
        return jax.nn.relu(carry @ k + b), None

    final, _ = jax.lax.scan(layer, x, (kernel, bias))
    return final


def build(p):
    fwd = jax.jit(forward)
    args = jax.device_put((p.kernel, p.bias, p.x))
    return lambda: fwd(*args).block_until_ready()
