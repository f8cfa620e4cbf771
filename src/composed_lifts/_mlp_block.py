"""``MLPBlock``: a residual MLP block with a 4x expansion, the block where remat matters.

Shipped as a second ready-made block beside the seed's ``Block``, for
``composed-lifts tune --block mlp4x``, the benchmarks, and trying the builder.
"""

from __future__ import annotations

import flax.linen as nn
import jax

__all__ = ["MLPBlock"]


class MLPBlock(nn.Module):
    """``x + Dense(F)(gelu(Dense(4F)(LayerNorm(x))))``, carry-only: returns ``(x, None)``.

    >>> import jax, jax.numpy as jnp
    >>> from composed_lifts import MLPBlock, StackOptions, linen_stack
    >>> model = linen_stack(MLPBlock, StackOptions(num_layers=3))(features=4)
    >>> variables = model.init(jax.random.PRNGKey(0), jnp.ones((2, 4)))
    >>> variables["params"]["Dense_0"]["kernel"].shape, variables["params"]["Dense_1"]["kernel"].shape
    ((3, 4, 16), (3, 16, 4))
    """

    features: int

    @nn.compact
    def __call__(self, x: jax.Array, _: None) -> tuple[jax.Array, None]:
        h = nn.Dense(4 * self.features)(nn.LayerNorm()(x))
        return x + nn.Dense(self.features)(nn.gelu(h)), None
