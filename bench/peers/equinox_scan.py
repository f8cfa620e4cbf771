"""Equinox as its docs write a layer stack: ``filter_vmap`` to stack Linears, ``lax.scan`` to run.

Called through ``eqx.filter_jit``, as Equinox users do.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import Unavailable

NAME = "Equinox (filter_jit + scan)"
GROUP = "peer"
SAME_PARAMS = True


def build(p):
    try:
        import equinox as eqx
    except ImportError as err:
        raise Unavailable(f"equinox not installed ({err})") from err

    keys = jax.random.split(jax.random.PRNGKey(0), p.N)
    layers = eqx.filter_vmap(lambda k: eqx.nn.Linear(p.F, p.F, key=k))(keys)
    layers = eqx.tree_at(
        lambda m: (m.weight, m.bias),
        layers,
        (jnp.swapaxes(jnp.asarray(p.kernel), 1, 2), jnp.asarray(p.bias)),
    )

    @eqx.filter_jit
    def forward(layers, x):
        dynamic, static = eqx.partition(layers, eqx.is_array)

        def body(carry, layer_params):
            layer = eqx.combine(layer_params, static)
            return jax.vmap(lambda v: jax.nn.relu(layer(v)))(carry), None

        final, _ = jax.lax.scan(body, x, dynamic)
        return final

    x = jax.device_put(p.x)
    return lambda: forward(layers, x).block_until_ready()
