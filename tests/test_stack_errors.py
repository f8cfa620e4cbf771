"""Bad stacks are refused by our checks, with the leaf, the shapes and the fix, before JAX's scan."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from blocks import DropoutLinen, DropoutNNX, F, ScaledLinen, SeedLinen, SeedNNX
from composed_lifts import BatchMode, LayerInputs, StackOptions, errors, linen_stack, nnx_stack

N, B = 3, 2
KEY = jax.random.PRNGKey(0)
X = jnp.ones((B, F))


class Narrowing(nn.Module):
    @nn.compact
    def __call__(self, x, _):
        return nn.Dense(F - 2)(x), None


class Casting(nn.Module):
    @nn.compact
    def __call__(self, x, _):
        return nn.Dense(F)(x).astype(jnp.bfloat16), None


class DictCarry(nn.Module):
    @nn.compact
    def __call__(self, carry, _):
        return {"h": nn.Dense(F)(carry["h"]), "extra": carry["h"][:2]}, None


class NoPair(nn.Module):
    @nn.compact
    def __call__(self, x, _):
        return nn.Dense(F)(x)


class Triple(nn.Module):
    @nn.compact
    def __call__(self, x, _):
        return x, None, None


def init(block, carry=X, xs=None, rngs=KEY, **kw):
    return linen_stack(block, StackOptions(num_layers=N, **kw))().init(rngs, carry, xs)


def test_carry_shape_change_names_leaf_shapes_and_fix():
    with pytest.raises(errors.CarryChangedError) as info:
        init(Narrowing)
    msg = str(info.value)
    assert "carry from float32[6] to float32[4]" in msg
    assert "features == x.shape[-1]" in msg


def test_seed_block_width_mismatch_is_caught_before_the_scan():
    with pytest.raises(errors.CarryChangedError, match=r"float32\[5\] to float32\[6\]"):
        init(SeedLinen, carry=jnp.ones((B, 5)))


def test_carry_dtype_change():
    with pytest.raises(errors.CarryChangedError, match="from float32.6. to bfloat16.6..*dtype"):
        init(Casting)


def test_carry_structure_change():
    with pytest.raises(errors.CarryChangedError, match="structure"):
        init(DictCarry, carry={"h": X})


@pytest.mark.parametrize(
    "block,words", [(NoPair, "returned a single array"), (Triple, "returned a tuple of length 3")]
)
def test_block_must_return_a_pair(block, words):
    with pytest.raises(errors.BlockOutputError) as info:
        init(block)
    assert "pair (carry, y)" in str(info.value) and words in str(info.value)


def test_layer_inputs_with_the_wrong_layer_axis():
    with pytest.raises(errors.LayerInputsError) as info:
        init(ScaledLinen, xs=jnp.ones((N + 1, F)), layer_index=True)
    msg = str(info.value)
    assert "xs has shape (4, 6)" in msg and "num_layers=3" in msg
    with pytest.raises(errors.LayerInputsError, match=r"axis 1, layout \(B, N, ...\)"):
        init(
            ScaledLinen,
            xs={"s": jnp.ones((B, N + 2, F))},
            layer_index=True,
            layer_inputs=LayerInputs.PER_EXAMPLE,
        )


def test_inconsistent_batch_sizes():
    with pytest.raises(errors.BatchSizeError, match="carry\\['a'\\] has 2, carry\\['b'\\] has 3"):
        linen_stack(SeedLinen, StackOptions(num_layers=N))().init(
            KEY, {"a": jnp.ones((2, F)), "b": jnp.ones((3, F))}
        )


def test_missing_rng_stream_at_apply():
    model = linen_stack(DropoutLinen, StackOptions(num_layers=N))()
    # At init Flax falls back to the 'params' stream for a missing stream, so init works.
    variables = model.init(KEY, X)
    with pytest.raises(errors.MissingRngError) as info:
        model.apply(variables, X)
    msg = str(info.value)
    assert "apply call does not provide" in msg and "rngs={'dropout'" in msg
    model.apply(variables, X, rngs={"dropout": KEY})  # the fix works


def test_builders_refuse_wrong_arguments():
    with pytest.raises(errors.ArgumentTypeError, match="Linen module class"):
        linen_stack(SeedLinen(), StackOptions(num_layers=N))
    with pytest.raises(errors.ArgumentTypeError, match="StackOptions"):
        linen_stack(SeedLinen, {"num_layers": N})
    with pytest.raises(errors.ArgumentTypeError, match="batch_size"):
        nnx_stack(
            DropoutNNX, StackOptions(num_layers=N, batch=BatchMode.ENSEMBLE), rngs=nnx.Rngs(0)
        )


class SharesItsRngs(nnx.Module):
    def __init__(self, rngs):
        self.Dense_0 = nnx.Linear(F, F, rngs=rngs)
        self.rngs = rngs  # the pitfall: not forked, so not split per layer

    def __call__(self, x, _):
        return x + self.Dense_0(x) * jax.random.uniform(self.rngs.dropout()), None


def test_nnx_block_that_keeps_its_rngs_unsplit_is_refused():
    with pytest.raises(errors.UnsplitRngError) as info:
        nnx_stack(SharesItsRngs, StackOptions(num_layers=N), rngs=nnx.Rngs(0, dropout=1))
    assert "rngs.dropout.fork()" in str(info.value)


class NNXNarrowing(nnx.Module):
    def __init__(self, rngs):
        self.Dense_0 = nnx.Linear(F, F - 1, rngs=rngs)

    def __call__(self, x, _):
        return self.Dense_0(x), None


def test_nnx_carry_change_is_caught_too():
    stack = nnx_stack(NNXNarrowing, StackOptions(num_layers=N), rngs=nnx.Rngs(0))
    with pytest.raises(errors.CarryChangedError, match=r"float32\[6\] to float32\[5\]"):
        stack(X)


def test_nnx_stack_of_zero_layers_is_the_identity_like_linen():
    x = jnp.arange(B * F, dtype=jnp.float32).reshape(B, F)
    stack = nnx_stack(SeedNNX, StackOptions(num_layers=0), rngs=nnx.Rngs(0))
    final, _ = stack(x)
    linen = linen_stack(SeedLinen, StackOptions(num_layers=0))()
    want, _ = linen.apply(linen.init(KEY, x), x)
    assert (final == x).all() and (want == x).all()


class NormedNoAxis(nn.Module):
    @nn.compact
    def __call__(self, x, _):
        return nn.BatchNorm(use_running_average=False)(nn.Dense(F)(x)), None


def test_shared_batch_stats_updated_per_example_is_refused_with_the_fix():
    model = linen_stack(NormedNoAxis, StackOptions(num_layers=N))()
    variables = model.init(KEY, X)  # init works: nothing is updated yet
    with pytest.raises(errors.SharedCollectionError) as info:
        model.apply(variables, X, mutable=["batch_stats"])
    msg = str(info.value)
    assert "batch_stats" in msg and "axis_name='batch'" in msg
    assert "collection_axes={'batch_stats': 0}" in msg
    # Either fix works.
    per_example = linen_stack(
        NormedNoAxis, StackOptions(num_layers=N, collection_axes={"batch_stats": 0})
    )()
    per_example.apply(per_example.init(KEY, X), X, mutable=["batch_stats"])


class NNXNormedNoAxis(nnx.Module):
    def __init__(self, rngs, axis_name=None):
        self.Dense_0 = nnx.Linear(F, F, rngs=rngs)
        self.bn = nnx.BatchNorm(F, use_running_average=False, axis_name=axis_name, rngs=rngs)

    def __call__(self, x, _):
        return self.bn(self.Dense_0(x)), None


def test_nnx_shared_batch_stats_updated_per_example_is_refused_too():
    stack = nnx_stack(NNXNormedNoAxis, StackOptions(num_layers=N), rngs=nnx.Rngs(0))
    with pytest.raises(errors.SharedCollectionError, match="axis_name='batch'"):
        stack(X)
    fixed = nnx_stack(
        lambda r: NNXNormedNoAxis(r, axis_name="batch"),
        StackOptions(num_layers=N),
        rngs=nnx.Rngs(0),
    )
    final, _ = fixed(X)
    assert final.shape == X.shape


def test_ensemble_applied_to_another_batch_size_is_refused_in_linen_and_nnx():
    opts = StackOptions(num_layers=N, batch=BatchMode.ENSEMBLE)
    model = linen_stack(SeedLinen, opts)()
    variables = model.init(KEY, X)
    with pytest.raises(errors.EnsembleSizeError) as info:
        model.apply(variables, jnp.ones((B + 1, F)))
    assert f"{B} members" in str(info.value) and f"batch {B + 1}" in str(info.value)
    stack = nnx_stack(SeedNNX, opts, rngs=nnx.Rngs(0), batch_size=B)
    with pytest.raises(errors.EnsembleSizeError):
        stack(jnp.ones((B + 1, F)))


def test_shared_params_given_to_an_ensemble_stack_are_refused():
    shared = linen_stack(SeedLinen, StackOptions(num_layers=N))()
    variables = shared.init(KEY, X)
    ensemble = linen_stack(SeedLinen, StackOptions(num_layers=N, batch=BatchMode.ENSEMBLE))()
    with pytest.raises(errors.LayoutMismatchError) as info:
        ensemble.apply(variables, X)
    msg = str(info.value)
    assert "params['Dense_0']['bias'] is of shape (3, 6), but this stack" in msg
    assert "lifted axes (2, 3)" in msg and "has shape (2, 3, 6)" in msg


def test_carry_without_a_batch_axis_is_refused():
    with pytest.raises(errors.MissingBatchAxisError) as info:
        init(SeedLinen, carry=jnp.ones((F,)))
    msg = str(info.value)
    assert "carry has shape (6,)" in msg and "x[None]" in msg and "BatchMode.NONE" in msg
