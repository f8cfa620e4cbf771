"""A NumPy loop over layers, float32: ``np.maximum(x @ kernel[i] + bias[i], 0)``."""

from __future__ import annotations

import numpy as np

NAME = "NumPy loop"
GROUP = "peer"
SAME_PARAMS = True


def build(p):
    kernel, bias, x0 = p.kernel, p.bias, p.x

    def call():
        x = x0
        for k, b in zip(kernel, bias, strict=True):
            x = x @ k
            x += b
            np.maximum(x, 0.0, out=x)
        return x

    return call
