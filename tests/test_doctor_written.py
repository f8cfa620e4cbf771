"""The doctor's verdict on a Composition is true for the recipe as written.

The seed's recipe names only the params collection (``Spelling.PARAMS_ONLY``). Each case
here runs that literal recipe, typed out as a user writes it, in Flax: where Flax fails,
the doctor reports an error whose fix, applied to the recipe, makes it run; where the
doctor reports nothing, the recipe runs. The same blocks under ``linen_stack``
(``Spelling.COMPLETE``) get the verdicts ``linen_stack`` itself bears out.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from composed_lifts import Block, StackOptions, linen_stack
from composed_lifts.doctor import Composition, Pitfall, Severity, Spelling, check, describe
from composed_lifts.errors import SharedCollectionError, UnliftedVariablesError
from doctor_blocks import Partitioned

KEY = jax.random.PRNGKey(0)
X = jnp.ones((3, 2))


class Normed(nn.Module):
    """Dense then BatchNorm: keeps ``batch_stats``; ``axis_name`` averages over the batch."""

    features: int
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x, _):
        x = nn.Dense(self.features)(x)
        return nn.BatchNorm(use_running_average=False, axis_name=self.axis_name)(x), None


def literal(block, n, *, scan=None, vmap=None):
    """The seed's recipe, as the problem writes it, with extra keyword arguments (the fix)."""
    scan_kwargs = {"variable_axes": {"params": 0}, "split_rngs": {"params": True}, "length": n}
    vmap_kwargs = {"variable_axes": {"params": None}, "split_rngs": {"params": False}}
    for kwargs, extra in ((scan_kwargs, scan or {}), (vmap_kwargs, vmap or {})):
        for key, value in extra.items():
            kwargs[key] = (
                {**kwargs[key], **value} if isinstance(value, dict) and key in kwargs else value
            )
    return nn.vmap(nn.scan(block, **scan_kwargs), in_axes=0, out_axes=0, **vmap_kwargs)


def runs(model, mutable=("batch_stats",)):
    variables = model.init(KEY, X, None)
    model.apply(variables, X, None, mutable=list(mutable))
    return variables


def test_seed_block_as_written_is_clean_and_runs():
    assert check(Block(features=2), Composition(num_layers=2), X.shape).findings == ()
    runs(literal(Block, 2)(features=2))


def test_partitioned_block_as_written_fails_in_flax_and_the_doctor_says_so():
    with pytest.raises(Exception, match="metadata_params"):
        runs(literal(Partitioned, 2)(features=2))
    report = check(Partitioned(features=2), Composition(num_layers=2), X.shape)
    (f,) = report.findings
    assert f.pitfall is Pitfall.PARTITION_NAME_MISSING and f.severity is Severity.ERROR
    assert "params/Dense_0/kernel" in f.message and "('embed', 'mlp')" in f.message
    assert 'metadata_params={nn.PARTITION_NAME: "layers"} to the nn.scan' in f.fix
    assert report.layout is None and not report.ok
    with pytest.raises(UnliftedVariablesError, match="params/Dense_0/kernel"):
        describe(Partitioned(features=2), Composition(num_layers=2), X.shape)
    # the fix, applied to the recipe as written, runs and names the layer axis
    fixed = literal(Partitioned, 2, scan={"metadata_params": {nn.PARTITION_NAME: "layers"}})
    variables = runs(fixed(features=2))
    assert variables["params"]["Dense_0"]["kernel"].names == ("layers", "embed", "mlp")


def test_batchnorm_block_as_written_fails_in_flax_and_the_doctor_says_so():
    with pytest.raises(Exception, match="batch_stats"):
        runs(literal(Normed, 2)(features=2))
    (f,) = check(Normed(features=2), Composition(num_layers=2), X.shape).findings
    assert f.pitfall is Pitfall.COLLECTION_NOT_LIFTED and f.severity is Severity.ERROR
    assert "'batch_stats'" in f.message and "batch_stats/BatchNorm_0/mean" in f.message
    assert '"batch_stats": 0 to the nn.scan\'s variable_axes' in f.fix
    with pytest.raises(UnliftedVariablesError, match="'batch_stats'"):
        describe(Normed(features=2), Composition(num_layers=2), X.shape)
    # the fix: one set per layer on the scan, one per example on the vmap
    axes = {"variable_axes": {"batch_stats": 0}}
    variables = runs(literal(Normed, 2, scan=axes, vmap=axes)(features=2))
    assert variables["batch_stats"]["BatchNorm_0"]["mean"].shape == (3, 2, 2)
    # or shared across the batch, with the statistics averaged over it
    shared = {"variable_axes": {"batch_stats": None}, "axis_name": "batch"}
    runs(literal(Normed, 2, scan=axes, vmap=shared)(features=2, axis_name="batch"))


def test_batchnorm_with_axis_name_as_written_still_needs_the_collection_lifted():
    block = Normed(features=2, axis_name="batch")
    with pytest.raises(Exception, match="batch_stats"):
        runs(literal(Normed, 2, vmap={"axis_name": "batch"})(features=2, axis_name="batch"))
    (f,) = check(block, Composition(num_layers=2), X.shape).findings
    assert f.pitfall is Pitfall.COLLECTION_NOT_LIFTED


@pytest.mark.parametrize("spelled", ["options", "complete"])
def test_linen_stack_verdicts_stay_true(spelled):
    def composition():
        if spelled == "options":
            return StackOptions(num_layers=2)
        return Composition(num_layers=2, spelling=Spelling.COMPLETE)

    # partition names: linen_stack names the axes, so no finding, and it runs
    assert check(Partitioned(features=2), composition(), X.shape).findings == ()
    runs(linen_stack(Partitioned, StackOptions(num_layers=2))(features=2))
    # BatchNorm averaging over the batch: shared batch_stats, no finding, and it runs
    named = Normed(features=2, axis_name="batch")
    assert check(named, composition(), X.shape).findings == ()
    linen = linen_stack(Normed, StackOptions(num_layers=2))(features=2, axis_name="batch")
    variables = linen.init(KEY, X)
    linen.apply(variables, X, mutable=["batch_stats"])
    # BatchNorm per example: the shared batch_stats cannot take it, the doctor says so
    (f,) = check(Normed(features=2), composition(), X.shape).findings
    assert f.pitfall is Pitfall.SHARED_COLLECTION_UPDATED and f.severity is Severity.ERROR
    assert "collection_axes={'batch_stats': 0}" in f.fix and 'axis_name="batch"' in f.fix
    linen = linen_stack(Normed, StackOptions(num_layers=2))(features=2)
    variables = linen.init(KEY, X)
    with pytest.raises(SharedCollectionError):
        linen.apply(variables, X, mutable=["batch_stats"])
    per_example = StackOptions(num_layers=2, collection_axes={"batch_stats": 0})
    if spelled == "options":  # the fix runs, and the doctor agrees
        assert check(Normed(features=2), per_example, X.shape).findings == ()
        linen = linen_stack(Normed, per_example)(features=2)
        linen.apply(linen.init(KEY, X), X, mutable=["batch_stats"])


def test_printed_params_only_recipe_is_the_recipe_as_written():
    line = Composition(num_layers=2).recipe("Block")
    model = eval(line, {"nn": nn, "Block": Block})(features=2)  # noqa: S307 - the point
    made = jax.eval_shape(model.init, KEY, X, None)
    want = jax.eval_shape(literal(Block, 2)(features=2).init, KEY, X, None)
    assert jax.tree_util.tree_map(lambda s: s.shape, made) == jax.tree_util.tree_map(
        lambda s: s.shape, want
    )
