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


class Residual(nn.Module):
    """x + Dense(features)(x): the seed's width pitfall in its most common form."""

    features: int

    @nn.compact
    def __call__(self, x, _):
        return x + nn.Dense(self.features)(x), None


class Casting(nn.Module):
    """Dense(features) whose output is cast to bfloat16: the carry changes dtype, not width."""

    features: int

    @nn.compact
    def __call__(self, x, _):
        return nn.Dense(self.features)(x).astype(jnp.bfloat16), None


class Partitioned(nn.Module):
    """A Dense whose kernel carries logical axis names (``nn.with_partitioning``)."""

    features: int

    @nn.compact
    def __call__(self, x, _):
        init = nn.with_partitioning(nn.initializers.lecun_normal(), ("embed", "mlp"))
        return nn.relu(nn.Dense(self.features, kernel_init=init)(x)), None


class Collections(nn.Module):
    """params, batch_stats (BatchNorm), intermediates (sow) and a collection of its own."""

    features: int
    axis_name: str | None = "batch"

    @nn.compact
    def __call__(self, x, _):
        h = nn.BatchNorm(use_running_average=False, axis_name=self.axis_name)(x)
        h = nn.relu(nn.Dense(self.features)(h))
        self.sow("intermediates", "h", h)
        calls = self.variable("counter", "calls", lambda: jnp.zeros((), jnp.int32))
        if self.is_mutable_collection("counter"):
            calls.value += 1
        return h, None


class GrowsCarry(nn.Module):
    """Returns its dict carry with one more key: the carry changes structure."""

    features: int

    @nn.compact
    def __call__(self, carry, _):
        h = nn.Dense(self.features)(carry["h"])
        return {"h": h, "extra": h[:1]}, None
