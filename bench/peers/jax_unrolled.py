"""An unrolled Python loop over layers under ``jax.jit``: N copies of the layer in the program."""

from __future__ import annotations

import jax

NAME = "unrolled JAX loop"
GROUP = "jax"
SAME_PARAMS = True


def forward(kernel, bias, x):
    for i in range(kernel.shape[0]):
        x = jax.nn.relu(x @ kernel[i] + bias[i])
    return x


def build(p):
    fwd = jax.jit(forward)
    args = jax.device_put((p.kernel, p.bias, p.x))
    return lambda: fwd(*args).block_until_ready()
