"""Haiku's ``hk.layer_stack`` over ``hk.Linear`` + relu, ``jax.jit(transformed.apply)``."""

from __future__ import annotations

import jax

from . import Unavailable

NAME = "Haiku layer_stack"
GROUP = "peer"
SAME_PARAMS = True


def build(p):
    try:
        import haiku as hk
    except ImportError as err:  # the optional `bench` extra
        raise Unavailable(f"dm-haiku not installed ({err})") from err

    def forward(x):
        def layer(x):
            return jax.nn.relu(hk.Linear(p.F)(x))

        return hk.layer_stack(p.N)(layer)(x)

    model = hk.without_apply_rng(hk.transform(forward))
    params = model.init(jax.random.PRNGKey(0), p.x)
    params = jax.tree_util.tree_map_with_path(
        lambda path, leaf: {"w": p.kernel, "b": p.bias}[path[-1].key], params
    )
    params = jax.device_put(params)
    apply = jax.jit(model.apply)
    x = jax.device_put(p.x)
    return lambda: apply(params, x).block_until_ready()
