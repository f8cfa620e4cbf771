"""Blocks for the stack tests, each in Linen and in NNX with matching param names.

Every block's ``__call__(carry, x)`` returns ``(carry, y)``. ``layer_fn`` gives
the per-layer function the functional references take.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

F = 6  # width used by every test block


class SeedLinen(nn.Module):
    features: int = F

    @nn.compact
    def __call__(self, x, _):
        return nn.relu(nn.Dense(self.features)(x)), None


class SeedNNX(nnx.Module):
    def __init__(self, rngs):
        self.Dense_0 = nnx.Linear(F, F, rngs=rngs)

    def __call__(self, x, _):
        return nnx.relu(self.Dense_0(x)), None


class ResidualMLPLinen(nn.Module):
    """x + Dense(F)(gelu(Dense(4F)(LayerNorm(x)))): a transformer MLP sub-block."""

    features: int = F

    @nn.compact
    def __call__(self, x, _):
        h = nn.LayerNorm()(x)
        h = nn.gelu(nn.Dense(4 * self.features)(h))
        return x + nn.Dense(self.features)(h), None


class ResidualMLPNNX(nnx.Module):
    def __init__(self, rngs):
        self.LayerNorm_0 = nnx.LayerNorm(F, rngs=rngs)
        self.Dense_0 = nnx.Linear(F, 4 * F, rngs=rngs)
        self.Dense_1 = nnx.Linear(4 * F, F, rngs=rngs)

    def __call__(self, x, _):
        h = nnx.gelu(self.Dense_0(self.LayerNorm_0(x)))
        return x + self.Dense_1(h), None


RATE = 0.5


def _dropout_step(dense, x, keep):
    h = dense(x)
    return x + jnp.where(keep, h / (1 - RATE), 0.0), keep


class DropoutLinen(nn.Module):
    """Residual Dense with dropout in training mode; emits its keep-mask as y."""

    features: int = F

    @nn.compact
    def __call__(self, x, _):
        keep = jax.random.bernoulli(self.make_rng("dropout"), 1 - RATE, x.shape)
        return _dropout_step(nn.Dense(self.features), x, keep)


class DropoutNNX(nnx.Module):
    def __init__(self, rngs):
        self.Dense_0 = nnx.Linear(F, F, rngs=rngs)
        self.dropout = rngs.dropout.fork()  # as nnx.Dropout does: a stream of its own

    def __call__(self, x, _):
        keep = jax.random.bernoulli(self.dropout(), 1 - RATE, x.shape)
        return _dropout_step(self.Dense_0, x, keep)


class MaskedDropoutLinen(nn.Module):
    """The dropout block with its keep-mask given as the per-layer input (for references)."""

    features: int = F

    @nn.compact
    def __call__(self, x, keep):
        return _dropout_step(nn.Dense(self.features), x, keep)


class ScaledLinen(nn.Module):
    """Reads a per-layer input (a scale per feature) and the layer index; emits a per-layer y."""

    features: int = F

    @nn.compact
    def __call__(self, x, scale, index):
        h = jnp.tanh(nn.Dense(self.features)(x)) * scale
        return x + h, {"norm": jnp.sum(h * h) + index.astype(jnp.float32), "first": h[0]}


class ScaledNNX(nnx.Module):
    def __init__(self, rngs):
        self.Dense_0 = nnx.Linear(F, F, rngs=rngs)

    def __call__(self, x, scale, index):
        h = jnp.tanh(self.Dense_0(x)) * scale
        return x + h, {"norm": jnp.sum(h * h) + index.astype(jnp.float32), "first": h[0]}


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    linen: type
    nnx: type
    reference: type  # the Linen block the functional references apply per layer
    layer_index: bool = False
    per_layer_input: bool = False  # xs of shape (N, F) shared across the batch
    dropout: bool = False  # the mask is the block's y, fed back to the references as xs


CASES = [
    Case("seed", SeedLinen, SeedNNX, SeedLinen),
    Case("residual_mlp", ResidualMLPLinen, ResidualMLPNNX, ResidualMLPLinen),
    Case("dropout", DropoutLinen, DropoutNNX, MaskedDropoutLinen, dropout=True),
    Case(
        "scaled_index", ScaledLinen, ScaledNNX, ScaledLinen, layer_index=True, per_layer_input=True
    ),
]


def layer_fn(case: Case):
    """``layer_fn(params_i, carry, x_i[, i])`` applying one layer of ``case.reference``."""
    block = case.reference()

    def fn(p, c, x, *index):
        return block.apply({"params": p}, c, x, *index)

    return fn
