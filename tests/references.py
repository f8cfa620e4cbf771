"""Independent references for the tests: the seed's recipe written out plainly, and NumPy float64.

Nothing here imports composed_lifts: these are what the package is checked against.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np


class SeedBlock(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x, _):
        x = nn.relu(nn.Dense(self.features)(x))
        return x, None


def seed_recipe(seed, x_batch, num_layers, features):
    """The problem statement's steps 1-6, verbatim. Returns (flat output, variables)."""
    ScanLayer = nn.scan(
        SeedBlock,
        variable_axes={"params": 0},
        split_rngs={"params": True},
        length=num_layers,
    )
    BatchedScanLayer = nn.vmap(
        ScanLayer,
        in_axes=0,
        out_axes=0,
        variable_axes={"params": None},
        split_rngs={"params": False},
    )
    model = BatchedScanLayer(features=features)
    variables = model.init(jax.random.PRNGKey(seed), x_batch, None)
    final, ys = model.apply(variables, x_batch, None)
    assert ys is None
    return final.reshape(-1), variables


def numpy_forward(kernels, biases, x):
    """float64 forward: for each layer, x = relu(x @ W + b). kernels (N, F, F), biases (N, F)."""
    x = np.asarray(x, np.float64)
    for w, b in zip(np.asarray(kernels, np.float64), np.asarray(biases, np.float64)):
        x = np.maximum(x @ w + b, 0.0)
    return x


def numpy_grad_input(kernels, biases, x):
    """float64 gradient of sum(numpy_forward(...)) with respect to x, by hand-written backprop."""
    x = np.asarray(x, np.float64)
    kernels = np.asarray(kernels, np.float64)
    biases = np.asarray(biases, np.float64)
    masks = []
    for w, b in zip(kernels, biases):
        pre = x @ w + b
        masks.append(pre > 0)
        x = np.maximum(pre, 0.0)
    g = np.ones_like(x)
    for w, m in zip(kernels[::-1], masks[::-1]):
        g = (g * m) @ w.T
    return g
