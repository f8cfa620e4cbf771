"""The forms that bench/run.py compares, one module per form.

Every module computes the same forward: N layers of ``relu(x @ kernel[i] + bias[i])``
on a batch ``x`` of shape (B, F), params shared across the batch, float32. Each
defines ``NAME`` (the row label), ``GROUP`` (``ours``, ``jax``, ``peer`` or
``recipe``), ``SAME_PARAMS`` (whether it runs on the given params, so its output is
checked against the NumPy float64 reference) and ``build(problem)``, which
returns a zero-argument callable that runs one forward and returns the (B, F)
result once it is ready. ``build`` raises :class:`Unavailable` when the form
cannot run here (a missing optional library, an API not landed yet).
"""

from __future__ import annotations

import dataclasses
import importlib

import numpy as np

__all__ = ["FORMS", "Problem", "Unavailable", "load", "make_problem"]

# Row order of the tables: ours first, then JAX by hand, then the other libraries.
FORMS = (
    "ours_linen",
    "ours_linen_eigen",
    "ours_nnx",
    "ours_functional",
    "ours_forward",
    "seed_recipe",
    "jax_scan",
    "jax_unrolled",
    "haiku_layer_stack",
    "equinox_scan",
    "nnx_user",
    "torch_eager",
    "torch_compile",
    "numpy_loop",
)


class Unavailable(Exception):
    """This form cannot run here; the message says why."""


@dataclasses.dataclass(frozen=True)
class Problem:
    """One benchmark size and its data: params ``kernel`` (N, F, F), ``bias`` (N, F); ``x`` (B, F)."""

    B: int
    N: int
    F: int
    kernel: np.ndarray
    bias: np.ndarray
    x: np.ndarray

    @property
    def flops(self) -> int:
        """Multiply-adds of the forward, counted as 2 flops each (bias and relu not counted)."""
        return 2 * self.B * self.F * self.F * self.N

    def reference(self) -> np.ndarray:
        """The forward in NumPy float64: the independent check for every form."""
        x = self.x.astype(np.float64)
        for k, b in zip(self.kernel.astype(np.float64), self.bias.astype(np.float64), strict=True):
            x = np.maximum(x @ k + b, 0.0)
        return x


def make_problem(B: int, N: int, F: int, seed: int = 0) -> Problem:
    """Random params scaled so activations stay of order one through N layers."""
    rng = np.random.default_rng(seed)
    kernel = (rng.standard_normal((N, F, F)) * np.sqrt(2.0 / F)).astype(np.float32)
    bias = (rng.standard_normal((N, F)) * 0.01).astype(np.float32)
    x = rng.standard_normal((B, F)).astype(np.float32)
    return Problem(B, N, F, kernel, bias, x)


def load(name: str):
    """The module of form ``name`` (one of :data:`FORMS`)."""
    return importlib.import_module(f"{__name__}.{name}")
