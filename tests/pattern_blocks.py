"""Blocks of two kinds for the pattern-stack tests (Linen and NNX, matching param names), and the
plain references they are checked against: a Python loop over true layer indices, and the
index arithmetic of the documented params layout, written out independently.

Nothing here imports composed_lifts.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

F = 4  # width of every test block
RATE = 0.5


class Local(nn.Module):
    """A residual tanh(Dense) block: one param tree."""

    @nn.compact
    def __call__(self, x, _):
        return x + jnp.tanh(nn.Dense(F)(x)), None


class Global(nn.Module):
    """LayerNorm then Dense: another param tree, so the kinds cannot be swapped silently."""

    @nn.compact
    def __call__(self, x, _):
        return x + nn.gelu(nn.Dense(F)(nn.LayerNorm()(x))), None


class LocalNNX(nnx.Module):
    def __init__(self, rngs):
        self.Dense_0 = nnx.Linear(F, F, rngs=rngs)

    def __call__(self, x, _):
        return x + jnp.tanh(self.Dense_0(x)), None


class GlobalNNX(nnx.Module):
    def __init__(self, rngs):
        self.LayerNorm_0 = nnx.LayerNorm(F, rngs=rngs)
        self.Dense_0 = nnx.Linear(F, F, rngs=rngs)

    def __call__(self, x, _):
        return x + nnx.gelu(self.Dense_0(self.LayerNorm_0(x))), None


def _indexed(h, x, scale, index):
    h = h * jnp.broadcast_to(scale, h.shape)
    return x + h, {"index": index.astype(jnp.float32) + 0.0 * h.reshape(-1)[0], "first": h[0]}


class LocalIndexed(nn.Module):
    """Reads a per-layer scale and the layer index, and emits both as y."""

    @nn.compact
    def __call__(self, x, scale, index):
        return _indexed(jnp.tanh(nn.Dense(F)(x)), x, scale, index)


class GlobalIndexed(nn.Module):
    @nn.compact
    def __call__(self, x, scale, index):
        return _indexed(nn.Dense(F)(nn.LayerNorm()(x)) * 0.5, x, scale, index)


class LocalIndexedNNX(nnx.Module):
    def __init__(self, rngs):
        self.Dense_0 = nnx.Linear(F, F, rngs=rngs)

    def __call__(self, x, scale, index):
        return _indexed(jnp.tanh(self.Dense_0(x)), x, scale, index)


class GlobalIndexedNNX(nnx.Module):
    def __init__(self, rngs):
        self.LayerNorm_0 = nnx.LayerNorm(F, rngs=rngs)
        self.Dense_0 = nnx.Linear(F, F, rngs=rngs)

    def __call__(self, x, scale, index):
        return _indexed(self.Dense_0(self.LayerNorm_0(x)) * 0.5, x, scale, index)


class LocalDropout(nn.Module):
    """Residual Dense with dropout; emits its keep-mask as y."""

    @nn.compact
    def __call__(self, x, _):
        keep = jax.random.bernoulli(self.make_rng("dropout"), 1 - RATE, x.shape)
        return x + jnp.where(keep, nn.Dense(F)(x) / (1 - RATE), 0.0), keep


class LocalMasked(nn.Module):
    """LocalDropout with its keep-mask given as the per-layer input (the reference's block)."""

    @nn.compact
    def __call__(self, x, keep):
        return x + jnp.where(keep, nn.Dense(F)(x) / (1 - RATE), 0.0), keep


class GlobalKeep(nn.Module):
    """Global, emitting an all-true mask so that its y matches LocalDropout's."""

    @nn.compact
    def __call__(self, x, _):
        return Global(name="inner")(x, None)[0], jnp.ones(x.shape, bool)


def loop(
    fns,
    layer_types,
    layers,
    carry,
    xs=None,
    *,
    batch,
    xs_per_example=False,
    layer_index=False,
    reverse=False,
):
    """The reference: for every example, every layer ``i`` in order, ``fns[layer_types[i]]``.

    ``layers`` maps ``layers_{i}`` to true layer i's params; ``batch`` is
    ``"shared"`` (params shared), ``"ensemble"`` (a leading member axis) or ``"none"``.
    ``fns[kind](params, c, x[, i])`` applies one layer. Returns ``(final, ys)``,
    ``ys`` stacked to ``(B, N, ...)`` (``(N, ...)`` for ``"none"``).
    """
    n = len(layer_types)

    def one(per_layer, c, x_all):
        ys = [None] * n
        for i in reversed(range(n)) if reverse else range(n):
            x_i = None if x_all is None else jax.tree_util.tree_map(lambda a, i=i: a[i], x_all)
            extra = (jnp.asarray(i, jnp.int32),) if layer_index else ()
            c, ys[i] = fns[layer_types[i]](per_layer[f"layers_{i}"], c, x_i, *extra)
        return c, _stack(ys)

    if batch == "none":
        return one(layers, carry, xs)
    finals, ys = [], []
    for b in range(jax.tree_util.tree_leaves(carry)[0].shape[0]):
        pick = lambda t, b=b: jax.tree_util.tree_map(lambda a: a[b], t)  # noqa: E731
        c, y = one(
            pick(layers) if batch == "ensemble" else layers,
            pick(carry),
            pick(xs) if xs_per_example else xs,
        )
        finals.append(c)
        ys.append(y)
    return _stack(finals), _stack(ys)


def _stack(trees):
    if not trees or trees[0] is None:
        return None
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *trees)


def layer_of(tree, period: int, num_layers: int, i: int, axis: int = 0):
    """True layer ``i``'s params read from the documented layout by index arithmetic:
    ``repeats/kind_{i % k}[i // k]`` for the whole periods, ``remainder/kind_{i % k}[0]`` after."""
    repeats = num_layers // period
    part, step = ("repeats", i // period) if i < repeats * period else ("remainder", 0)
    index = (slice(None),) * axis + (step,)
    return jax.tree_util.tree_map(lambda a: a[index], tree[part][f"kind_{i % period}"])


class LocalDropoutNNX(nnx.Module):
    def __init__(self, rngs):
        self.Dense_0 = nnx.Linear(F, F, rngs=rngs)
        self.dropout = rngs.dropout.fork()

    def __call__(self, x, _):
        keep = jax.random.bernoulli(self.dropout(), 1 - RATE, x.shape)
        return x + jnp.where(keep, self.Dense_0(x) / (1 - RATE), 0.0), keep


class GlobalKeepNNX(nnx.Module):
    def __init__(self, rngs):
        self.inner = GlobalNNX(rngs)

    def __call__(self, x, _):
        return self.inner(x, None)[0], jnp.ones(x.shape, bool)
