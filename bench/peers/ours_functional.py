"""Our functional form: ``scan_layers(layer_fn, stacked_params, carry, options=...)`` under jit.

``jax.lax.scan`` over layers inside ``jax.vmap`` over the batch, params shared.
"""

from __future__ import annotations

import jax

from . import Unavailable

NAME = "ours: scan_layers (functional)"
GROUP = "ours"
SAME_PARAMS = True


def _layer(params, carry, _x):
    k, b = params
    return jax.nn.relu(carry @ k + b), None


def build(p):
    import composed_lifts

    if "scan_layers" not in getattr(composed_lifts, "__all__", ()):
        raise Unavailable("composed_lifts.scan_layers has not landed yet")
    options = composed_lifts.StackOptions(num_layers=p.N)

    @jax.jit
    def forward(params, x):
        final, _ = composed_lifts.scan_layers(_layer, params, x, options=options)
        return final

    params = jax.device_put((p.kernel, p.bias))
    x = jax.device_put(p.x)
    return lambda: forward(params, x).block_until_ready()
