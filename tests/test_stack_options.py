"""StackOptions: reverse, unroll, remat, the layer axis name, collections; structure and validation."""

import flax.linen as nn
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from blocks import CASES, F, ScaledLinen, SeedLinen, layer_fn
from composed_lifts import (
    BatchMode,
    LayerInputs,
    Remat,
    StackOptions,
    errors,
    linen_stack,
    linen_to_nnx,
    nnx_stack,
    seed_model,
    unroll_layers,
    unstack_params,
)

N, B = 4, 3
X = jnp.asarray(np.random.default_rng(1).standard_normal((B, F)), jnp.float32)
SCALES = jnp.asarray(np.random.default_rng(2).uniform(0.5, 1.5, (N, F)), jnp.float32)
SCALED = next(c for c in CASES if c.name == "scaled_index")


def scan_count(jaxpr) -> int:
    count = 0
    for eqn in jaxpr.eqns:
        count += eqn.primitive.name == "scan"
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            count += scan_count(sub)
    return count


@pytest.mark.parametrize("reverse", [False, True])
def test_reverse_and_layer_index_match_the_loop(reverse):
    opts = StackOptions(num_layers=N, layer_index=True, reverse=reverse)
    model = linen_stack(ScaledLinen, opts)()
    variables = model.init(jax.random.PRNGKey(0), X, SCALES)
    final, ys = jax.jit(model.apply)(variables, X, SCALES)
    layers = unstack_params(variables["params"])
    want_final, want_ys = unroll_layers(layer_fn(SCALED), layers, X, SCALES, options=opts)
    np.testing.assert_allclose(final, want_final, rtol=1e-5, atol=1e-6)
    # ys stay indexed by layer, and layer i sees index i in either direction: the loop passes i
    np.testing.assert_allclose(ys["norm"], want_ys["norm"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("remat", list(Remat), ids=lambda r: r.name.lower())
def test_remat_and_unroll_give_the_same_numbers_and_one_scan(remat):
    base = linen_stack(SeedLinen, StackOptions(num_layers=N))()
    variables = base.init(jax.random.PRNGKey(0), X)

    def grads(model):
        return jax.jit(jax.grad(lambda p, x: model.apply(p, x)[0].sum(), argnums=(0, 1)))(
            variables, X
        )

    model = linen_stack(SeedLinen, StackOptions(num_layers=N, remat=remat, unroll=2))()
    for a, b in zip(
        jax.tree_util.tree_leaves(grads(model)), jax.tree_util.tree_leaves(grads(base))
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    jaxpr = jax.make_jaxpr(lambda p, x: model.apply(p, x)[0])(variables, X).jaxpr
    assert scan_count(jaxpr) == 1


def test_seed_model_is_one_scan_not_n_copies():
    model = seed_model(16, F)
    variables = model.init(jax.random.PRNGKey(0), X, None)
    jaxpr = jax.make_jaxpr(lambda p, x: model.apply(p, x, None)[0])(variables, X).jaxpr
    assert scan_count(jaxpr) == 1
    dots = sum(eqn.primitive.name == "dot_general" for eqn in jaxpr.eqns)
    assert dots == 0  # the matmul lives inside the scan body, once


class Partitioned(nn.Module):
    @nn.compact
    def __call__(self, x, _):
        kernel = self.param(
            "kernel", nn.with_partitioning(nn.initializers.lecun_normal(), ("embed", "mlp")), (F, F)
        )
        return x @ kernel, None


@pytest.mark.parametrize(
    "name,batch,want",
    [
        ("layers", BatchMode.SHARED, ("layers", "embed", "mlp")),
        ("depth", BatchMode.SHARED, ("depth", "embed", "mlp")),
        ("layers", BatchMode.ENSEMBLE, ("batch", "layers", "embed", "mlp")),
    ],
)
def test_layer_axis_has_a_logical_name(name, batch, want):
    model = linen_stack(
        Partitioned, StackOptions(num_layers=N, batch=batch, layer_axis_name=name)
    )()
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), X)
    boxed = variables["params"]["kernel"]
    assert boxed.names == want
    spec = nn.get_partition_spec(variables)["params"]["kernel"]
    assert tuple(spec) == want


class Sowing(nn.Module):
    @nn.compact
    def __call__(self, x, _):
        y = nn.relu(nn.Dense(F)(x))
        self.sow("intermediates", "act", y)
        count = self.variable("counters", "calls", lambda: jnp.zeros((), jnp.int32))
        count.value += 1
        return y, None


def test_other_collections_get_per_layer_and_per_example_axes():
    model = linen_stack(Sowing, StackOptions(num_layers=N))()
    variables = model.init(jax.random.PRNGKey(0), X)
    assert variables["params"]["Dense_0"]["kernel"].shape == (N, F, F)
    assert variables["counters"]["calls"].shape == (B, N)  # per example by default
    _, state = model.apply(variables, X, mutable=["intermediates", "counters"])
    (act,) = state["intermediates"]["act"]
    assert act.shape == (B, N, F)
    np.testing.assert_array_equal(state["counters"]["calls"], np.full((B, N), 2))

    shared = linen_stack(Sowing, StackOptions(num_layers=N, collection_axes={"counters": None}))()
    assert shared.init(jax.random.PRNGKey(0), X[:1])["counters"]["calls"].shape == (N,)


def test_batch_mode_none_maps_one_example():
    model = linen_stack(SeedLinen, StackOptions(num_layers=N, batch=BatchMode.NONE))()
    variables = model.init(jax.random.PRNGKey(0), X[0])
    batched = linen_stack(SeedLinen, StackOptions(num_layers=N))()
    np.testing.assert_allclose(
        model.apply(variables, X[1])[0], batched.apply(variables, X)[0][1], rtol=1e-6
    )


@pytest.mark.parametrize(
    "kwargs,cls,words",
    [
        (dict(num_layers=-1), errors.ArgumentRangeError, ["num_layers must be >= 0"]),
        (dict(num_layers=2.5), errors.ArgumentTypeError, ["num_layers must be an integer"]),
        (
            dict(num_layers=2, batch="shared"),
            errors.ArgumentTypeError,
            ["BatchMode", "BatchMode('shared')"],
        ),
        (dict(num_layers=2, remat=True), errors.ArgumentTypeError, ["Remat.FULL"]),
        (dict(num_layers=2, unroll=0), errors.ArgumentRangeError, ["unroll must be >= 1"]),
        (
            dict(num_layers=2, reverse="yes"),
            errors.ArgumentTypeError,
            ["reverse must be True or False"],
        ),
        (
            dict(num_layers=2, collection_axes={"params": 0}),
            errors.ArgumentTypeError,
            ["params follow"],
        ),
        (
            dict(num_layers=2, collection_axes={"cache": 1}),
            errors.ArgumentTypeError,
            ["0 (per example) or None"],
        ),
    ],
)
def test_options_are_validated(kwargs, cls, words):
    with pytest.raises(cls) as info:
        StackOptions(**kwargs)
    for word in words:
        assert word in str(info.value)


def test_options_are_hashable_and_typed():
    a = StackOptions(num_layers=3, collection_axes={"cache": None})
    assert hash(a) == hash(StackOptions(num_layers=3, collection_axes={"cache": None}))
    assert a.collection_axes == (("cache", None),)


class Normed(nn.Module):
    @nn.compact
    def __call__(self, x, _):
        h = nn.BatchNorm(use_running_average=False, axis_name="batch", momentum=0.5)(x)
        return nn.relu(nn.Dense(F)(h)) + x, None


def test_batch_stats_are_shared_and_reduced_across_the_batch():
    model = linen_stack(Normed, StackOptions(num_layers=N))()
    variables = model.init(jax.random.PRNGKey(0), X)
    assert variables["batch_stats"]["BatchNorm_0"]["mean"].shape == (N, F)
    _, state = model.apply(variables, X, mutable=["batch_stats"])
    # layer 0 normalises the input itself: its running mean moved halfway to the batch mean
    mean0 = np.asarray(state["batch_stats"]["BatchNorm_0"]["mean"][0])
    np.testing.assert_allclose(mean0, 0.5 * np.asarray(X).mean(axis=0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "batch,layer_inputs,extra",
    [
        (BatchMode.SHARED, LayerInputs.SHARED, dict(reverse=True, remat=Remat.DOTS)),
        (BatchMode.NONE, LayerInputs.SHARED, {}),
        (BatchMode.SHARED, LayerInputs.PER_EXAMPLE, {}),
    ],
    ids=["reverse-remat", "no-batch", "per-example-inputs"],
)
def test_nnx_stack_options_follow_linen(batch, layer_inputs, extra):
    opts = StackOptions(
        num_layers=N, batch=batch, layer_inputs=layer_inputs, layer_index=True, **extra
    )
    x = X[0] if batch is BatchMode.NONE else X
    xs = SCALES if layer_inputs is LayerInputs.SHARED else jnp.stack([SCALES, 2 * SCALES, -SCALES])
    linen = linen_stack(ScaledLinen, opts)()
    variables = linen.init(jax.random.PRNGKey(0), x, xs)
    stack = linen_to_nnx(variables, nnx_stack(SCALED.nnx, opts, rngs=nnx.Rngs(0)))
    got_final, got_ys = stack(x, xs)
    want_final, want_ys = linen.apply(variables, x, xs)
    np.testing.assert_allclose(got_final, want_final, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got_ys["first"], want_ys["first"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got_ys["norm"], want_ys["norm"], rtol=1e-6)
    if layer_inputs is LayerInputs.PER_EXAMPLE:  # example 2's scales are negated: it differs
        assert not np.allclose(got_final[2], got_final[0])
