"""The stack on several (CPU) devices with JAX's own sharding: same numbers as on one device.

conftest.py asks XLA for 4 host devices. The batch is split across a "data" mesh axis;
params made with ``nn.with_partitioning`` are created on their shards by their logical
names, the layer axis included (``StackOptions.layer_axis_name``). The 8-device layouts
are in ``test_multidevice.py``.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from composed_lifts import (
    BatchMode,
    Block,
    ShardingRules,
    StackOptions,
    composed_lifts_forward,
    device_mesh,
    linen_stack,
    logical_specs,
    nnx_stack,
    shard_batch,
    sharded_init,
)
from composed_lifts import errors as E

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
    mesh = device_mesh({"data": 2, "model": 2})
    rules = ShardingRules(batch="data", features=(("embed", None), ("mlp", "model")))
    options = StackOptions(num_layers=N)
    model = linen_stack(ShardedMLP, options)()
    x = jnp.asarray(np.random.default_rng(0).standard_normal((B, F)), jnp.float32)
    boxed = model.init(jax.random.PRNGKey(0), x)
    specs = nn.get_partition_spec(boxed)
    assert tuple(specs["params"]["w1"]) == ("layers", "embed", "mlp")
    variables = nn.meta.unbox(boxed)
    want, _ = jax.jit(model.apply)(variables, x)

    placed = sharded_init(model, mesh, rules, jax.random.PRNGKey(0), x, options=options)
    # The block's own names win; param_axes is only for params without metadata.
    assert placed["params"]["w1"].sharding.spec == P(None, None, "model")
    assert placed["params"]["w2"].sharding.spec == P(None, "model", None)
    assert placed["params"]["w1"].addressable_shards[0].data.shape == (N, F, F)  # 2F / 2
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(a, b), placed, variables)
    x_placed = shard_batch(x, mesh, rules)
    assert x_placed.sharding.spec == P("data")
    got, _ = jax.jit(model.apply)(placed, x_placed)
    assert len(got.sharding.device_set) == 4
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)


class ConstrainedMLP(nn.Module):
    """Names its params and constrains its hidden activation by logical names."""

    @nn.compact
    def __call__(self, x, _):
        init = nn.initializers.lecun_normal()
        w1 = self.param("w1", nn.with_logical_partitioning(init, ("embed", "mlp")), (F, 2 * F))
        h = nn.with_logical_constraint(jnp.tanh(x @ w1), ("mlp",))
        w2 = self.param("w2", nn.with_logical_partitioning(init, ("mlp", "embed")), (2 * F, F))
        return x + h @ w2, None


@pytest.mark.parametrize("spmd_axis_name", [None, "data"])
def test_spmd_axis_name_keeps_the_batch_split_inside_the_block(spmd_axis_name):
    mesh = device_mesh({"data": 2, "model": 2})
    rules = ShardingRules(batch="data", features=(("embed", None), ("mlp", "model")))
    options = StackOptions(num_layers=N, spmd_axis_name=spmd_axis_name)
    model = linen_stack(ConstrainedMLP, options)()
    x = jnp.asarray(np.random.default_rng(0).standard_normal((B, F)), jnp.float32)
    variables = sharded_init(model, mesh, rules, jax.random.PRNGKey(0), x, options=options)
    with nn.logical_axis_rules(rules.flax_rules()), jax.set_mesh(mesh):
        text = jax.jit(model.apply).lower(variables, shard_batch(x, mesh, rules)).as_text()
    # The block's per-example constraint ("mlp",) gets the vmap's batch axis in front:
    # split over "data" with spmd_axis_name, left to the partitioner ("?") without.
    batch_dim = '{"data"}' if spmd_axis_name else "{?}"
    assert f'<@mesh, [{batch_dim}, {{"model"}}]>' in text


class NNXNamed(nnx.Module):
    def __init__(self, rngs):
        init = nnx.with_partitioning(nnx.initializers.lecun_normal(), ("embed", "mlp"))
        self.Dense_0 = nnx.Linear(F, 2 * F, kernel_init=init, rngs=rngs)

    def __call__(self, x, _):
        return x + jnp.tanh(self.Dense_0(x))[..., :F], None


@pytest.mark.parametrize("batch", [BatchMode.SHARED, BatchMode.ENSEMBLE])
def test_nnx_metadata_names_the_stacked_axes_and_agrees_with_the_arrays(batch):
    # Stacking adds axes to the arrays; without naming them in the metadata too, NNX's
    # metadata says ("embed", "mlp") of a (N, F, 2F) array (they disagree).
    mesh = device_mesh({"data": 2, "model": 2})
    rules = ShardingRules(batch="data", features=(("embed", None), ("mlp", "model")))
    size = B if batch is BatchMode.ENSEMBLE else None
    options = StackOptions(num_layers=N, batch=batch)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules.flax_rules()):
        stack = nnx_stack(NNXNamed, options, rngs=nnx.Rngs(0), batch_size=size)
        spec = nnx.get_partition_spec(nnx.state(stack))["layers"]["Dense_0"]["kernel"].get_value()
    kernel = stack.layers.Dense_0.kernel
    names = kernel.get_metadata()["out_sharding"]
    lead = ("batch", "layers") if batch is BatchMode.ENSEMBLE else ("layers",)
    assert names == (*lead, "embed", "mlp") and len(names) == kernel.ndim
    mesh_spec = P(*(("data",) if batch is BatchMode.ENSEMBLE else ()), None, None, "model")
    assert spec == mesh_spec
    assert kernel.get_value().sharding.spec == mesh_spec  # created sharded, as named


@pytest.mark.parametrize(
    "axes, rules",
    [
        ({"data": 4}, None),
        ({"data": 2, "model": 2}, ShardingRules(batch="data", features=(("mlp", "model"),))),
        ({"data": 2, "stage": 2}, ShardingRules(batch="data", layers="stage")),
    ],
    ids=["data", "feature", "layer"],
)
def test_forward_on_a_mesh_equals_one_device(axes, rules):
    x = np.random.default_rng(1).standard_normal((B, 2 * F)).astype(np.float32)
    want = np.asarray(composed_lifts_forward(5, x, N, 2 * F))  # bit for bit the recipe
    got = composed_lifts_forward(5, x, N, 2 * F, mesh=device_mesh(axes), rules=rules)
    assert len(got.sharding.device_set) == 4
    # Stated tolerance: 1e-6 relative to the largest entry (measured here: 0).
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-6 * np.abs(want).max())


def test_forward_on_a_mesh_refuses_an_uneven_batch():
    x = np.ones((3, F), np.float32)
    with pytest.raises(E.UnevenBatchError, match="batch of 3 examples"):
        composed_lifts_forward(0, x, N, F, mesh=device_mesh({"data": 2}))


class TinyModel(nn.Module):
    """An embedding, a stack named "layers", a head: the shape of a transformer's params."""

    @nn.compact
    def __call__(self, ids):
        x = nn.Embed(16, F, name="embed")(ids)
        x, _ = linen_stack(Block, StackOptions(num_layers=N))(features=F, name="layers")(x)
        return nn.Dense(16, name="head")(x)


def test_stacks_name_where_the_layer_axis_is_in_a_larger_tree():
    abstract = jax.eval_shape(TinyModel().init, jax.random.PRNGKey(0), jnp.zeros((B,), jnp.int32))
    rules = ShardingRules(
        param_axes=(
            (r"embed.*embedding", ("vocab", "embed")),
            (r"layers.*kernel", ("embed", "mlp")),
            (r"layers.*bias", ("mlp",)),
            (r"head.*kernel", ("embed", "vocab")),
            (r"head.*bias", ("vocab",)),
        )
    )
    specs = logical_specs(abstract, rules, stacks=("layers",))["params"]
    assert specs["embed"]["embedding"] == P("vocab", "embed")
    assert specs["layers"]["Dense_0"]["kernel"] == P("layers", "embed", "mlp")
    assert specs["layers"]["Dense_0"]["bias"] == P("layers", "mlp")
    assert specs["head"]["kernel"] == P("embed", "vocab")
    with pytest.raises(E.ShardingRuleError, match="embedding"):  # without stacks: a layer axis
        logical_specs(abstract, rules)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_model_param_axes_name_every_axis_of_every_param(arch):
    from composed_lifts import models

    if arch == "gpt2":
        config = models.GPT2Config(
            vocab_size=32, n_positions=16, n_embd=16, n_layer=2, n_head=2, n_inner=32
        )
        model = models.GPT2(config)
    else:
        config = models.LlamaConfig(
            vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=16,
        )  # fmt: skip
        model = models.Llama(config)
    abstract = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((2, 4), jnp.int32))
    rules = ShardingRules(param_axes=models.param_axes(config))
    specs = logical_specs(abstract, rules, stacks=models.STACKS)["params"]
    for path, spec in jax.tree_util.tree_flatten_with_path(
        specs, is_leaf=lambda s: isinstance(s, P)
    )[0]:
        where = jax.tree_util.keystr(path)
        names = tuple(spec)[1:] if where.startswith("['layers']") else tuple(spec)
        assert any(n is not None for n in names), where  # every param got its names


def test_nnx_stack_created_under_jit_on_a_mesh_is_created_on_its_shards():
    mesh = device_mesh({"data": 2, "model": 2})
    rules = ShardingRules(batch="data", features=(("embed", None), ("mlp", "model")))
    options = StackOptions(num_layers=N, batch=BatchMode.ENSEMBLE)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules.flax_rules()):
        create = nnx.jit(lambda r: nnx_stack(NNXNamed, options, rngs=r, batch_size=B))
        stack = create(nnx.Rngs(0))
        eager = nnx_stack(NNXNamed, options, rngs=nnx.Rngs(0), batch_size=B)
    kernel = stack.layers.Dense_0.kernel.get_value()  # (B, N, F, 2F)
    assert kernel.sharding.spec == P("data", None, None, "model")
    assert {s.data.shape for s in kernel.addressable_shards} == {(B // 2, N, F, F)}
    np.testing.assert_array_equal(kernel, eager.layers.Dense_0.kernel.get_value())
