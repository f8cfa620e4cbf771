"""The seed model's params, bit for bit Flax's ``model.init``, generated in one flat program.

Flax's ``model.init`` of ``nn.vmap(nn.scan(Block))`` draws each layer's kernel
inside the scan body: one loop iteration per layer, each running JAX's threefry
(on CPU a rolled five-step loop over whole arrays, see ``_threefry``). Layer
``i``'s params depend only on layer ``i``'s key, so this module

1. lets Flax derive the per-layer keys: a twin of :class:`Block` whose ``Dense``
   initialisers return the key they are given goes through the seed's very lifts
   (``_seed_stack``), so the scan's split, the fold-in of the scope path and of the
   ``make_rng`` count are Flax's own (a few hashes, a 2-word carry);
2. calls ``Dense``'s own initialisers (``lecun_normal`` kernel, ``zeros`` bias, read
   from ``nn.Dense``'s fields) on those keys, ``vmap``-ped over the layers, with the
   key data wrapped as :data:`~composed_lifts._threefry.FAST_THREEFRY`: JAX's
   truncated-normal code on JAX's threefry words, computed by one fused loop.

It applies only where that is proven identical (the tests compare it with Flax's
``init`` bit for bit): on CPU, with JAX's default PRNG implementation threefry.
Elsewhere (GPU, TPU: JAX has its own fast kernels there) :func:`fast_init_applies`
is false and the caller keeps Flax's ``init``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ._seed import _seed_stack
from ._threefry import FAST_THREEFRY

__all__ = ["fast_init_applies", "fast_seed_params", "seed_layer_keys"]

# Width of the key-capturing twin: a bias of this width holds one raw threefry key.
_KEY_WIDTH = 2


def _key_as_kernel(key, shape, dtype=None):
    del dtype
    return jnp.broadcast_to(key, shape)


def _key_as_bias(key, shape, dtype=None):
    del shape, dtype
    return key


class _KeyBlock(nn.Module):
    """:class:`Block`'s twin: the same ``Dense`` (same name, same ``param`` calls in the same
    order), whose initialisers return their key instead of drawing from it."""

    features: int

    @nn.compact
    def __call__(self, x, _):
        dense = nn.Dense(self.features, kernel_init=_key_as_kernel, bias_init=_key_as_bias)
        return nn.relu(dense(x)), None


def fast_init_applies() -> bool:
    """Whether :func:`fast_seed_params` is proven equal to Flax's ``init`` here (read at trace time)."""
    return jax.default_backend() == "cpu" and jax.config.jax_default_prng_impl == "threefry2x32"  # type: ignore[attr-defined]


def seed_layer_keys(key: jax.Array, num_layers: int) -> tuple[jax.Array, jax.Array]:
    """The raw keys Flax hands to layer ``i``'s kernel and bias initialisers: two ``uint32[N, 2]``."""
    model = _seed_stack(num_layers, _KeyBlock)(features=_KEY_WIDTH)
    x = jnp.zeros((1, _KEY_WIDTH), jnp.float32)
    dense = model.init(key, x, None)["params"]["Dense_0"]
    return dense["kernel"][:, 0, :], dense["bias"]


def fast_seed_params(seed: jax.Array, num_layers: int, features: int) -> dict:
    """``seed_model(num_layers, features).init(PRNGKey(seed), x, None)``, bit for bit, on CPU.

    ``seed`` is a uint32 scalar (traced or not). Only where :func:`fast_init_applies`.

    >>> import numpy as np
    >>> from composed_lifts import seed_model
    >>> want = seed_model(3, 5).init(jax.random.PRNGKey(7), np.ones((2, 5), np.float32), None)
    >>> got = fast_seed_params(np.uint32(7), 3, 5)
    >>> jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    True
    >>> all(jax.tree_util.tree_leaves(jax.tree_util.tree_map(np.array_equal, got, want)))
    True
    """
    kernel_keys, bias_keys = seed_layer_keys(jax.random.PRNGKey(seed), num_layers)
    dense = nn.Dense(features)  # the seed Block's Dense: its initialisers and param dtype

    def layer(kernel_key, bias_key):
        wrap = lambda k: jax.random.wrap_key_data(k, impl=FAST_THREEFRY)  # noqa: E731
        kernel = dense.kernel_init(wrap(kernel_key), (features, features), dense.param_dtype)
        bias = dense.bias_init(wrap(bias_key), (features,), dense.param_dtype)
        return kernel, bias

    kernel, bias = jax.vmap(layer)(kernel_keys, bias_keys)
    return {"params": {"Dense_0": {"bias": bias, "kernel": kernel}}}
