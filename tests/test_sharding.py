"""The stack on several (CPU) devices with JAX's own sharding: same numbers as on one device.

conftest.py asks XLA for 4 host devices. The batch is split across a "data" mesh axis;
params made with ``nn.with_partitioning`` are placed by their logical names, the layer
axis included (``StackOptions.layer_axis_name``).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from composed_lifts import StackOptions, linen_stack

F, N, B = 8, 4, 8


class ShardedMLP(nn.Module):
    @nn.compact
    def __call__(self, x, _):
        init = nn.initializers.lecun_normal()
        w1 = self.param("w1", nn.with_partitioning(init, ("embed", "mlp")), (F, 2 * F))
        w2 = self.param("w2", nn.with_partitioning(init, ("mlp", "embed")), (2 * F, F))
        return x + jnp.tanh(x @ w1) @ w2, None


pytestmark = pytest.mark.skipif(len(jax.devices()) < 4, reason="needs 4 devices (conftest)")


def test_data_and_model_parallel_match_one_device():
    auto = (jax.sharding.AxisType.Auto,) * 2  # let XLA propagate shardings (GSPMD)
    mesh = jax.make_mesh((2, 2), ("data", "model"), axis_types=auto)
    rules = (("layers", None), ("embed", None), ("mlp", "model"), ("batch", "data"))
    model = linen_stack(ShardedMLP, StackOptions(num_layers=N))()
    x = jnp.asarray(np.random.default_rng(0).standard_normal((B, F)), jnp.float32)
    boxed = model.init(jax.random.PRNGKey(0), x)
    specs = nn.get_partition_spec(boxed)
    assert tuple(specs["params"]["w1"]) == ("layers", "embed", "mlp")
    variables = nn.meta.unbox(boxed)
    want, _ = jax.jit(model.apply)(variables, x)

    shardings = nn.logical_to_mesh_sharding(specs, mesh, rules)
    placed = jax.device_put(variables, shardings)
    x_placed = jax.device_put(x, NamedSharding(mesh, P("data", None)))
    assert placed["params"]["w1"].sharding.spec == P(None, None, "model")
    got, _ = jax.jit(model.apply)(placed, x_placed)
    assert len(got.sharding.device_set) == 4
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
