"""Blocks of several shapes for the layout doctor's tests (also used as ``doctor_blocks:Class``)."""

import flax.linen as nn
import jax.numpy as jnp


class TwoWidths(nn.Module):
    """Dense(hidden) -> relu -> Dense(features): kernels (F, H) and (H, F) per layer."""

    features: int
    hidden: int = 5

    @nn.compact
    def __call__(self, x, _):
        h = nn.relu(nn.Dense(self.hidden, name="up")(x))
        return nn.Dense(self.features, name="down")(h), None


class Gated(nn.Module):
    """A scalar gain and a 3-D param (2, F, F): leaves of rank 0 and 3 per layer."""

    features: int

    @nn.compact
    def __call__(self, x, _):
        scale = self.param("scale", nn.initializers.ones, ())
        mix = self.param("mix", nn.initializers.lecun_normal(), (2, self.features, self.features))
        return scale * (x @ mix[0] + nn.relu(x) @ mix[1]), None


class PairCarry(nn.Module):
    """A dict carry {"h": (F,), "step": ()}: h goes through a Dense, step counts layers."""

    features: int

    @nn.compact
    def __call__(self, carry, _):
        return {"h": nn.tanh(nn.Dense(self.features)(carry["h"])), "step": carry["step"] + 1}, None


class NoPair(nn.Module):
    """Returns the carry alone instead of (carry, y)."""

    features: int

    @nn.compact
    def __call__(self, x, _):
        return nn.Dense(self.features)(x)


class Halves(nn.Module):
    """Dense(features // 2): the carry loses half its width at every layer."""

    features: int

    @nn.compact
    def __call__(self, x, _):
        return jnp.tanh(nn.Dense(self.features // 2)(x)), None


NOT_A_BLOCK = 3
