"""Every verdict of the doctor checked against Flax itself: init, compare slices, apply.

For each pitfall the doctor can express the composition is also built and run
with Flax, from the ``lifts:`` line the doctor prints (executed verbatim), so
that what the doctor says is what Flax does.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from composed_lifts import BatchMode, Block, StackOptions, linen_stack
from composed_lifts.doctor import (
    AxisRole,
    Composition,
    LiftOrder,
    LiftParams,
    Pitfall,
    Severity,
    Spelling,
    check,
    describe,
)
from doctor_blocks import (
    Casting,
    Collections,
    Gated,
    GrowsCarry,
    PairCarry,
    Partitioned,
    Residual,
    TwoWidths,
)

KEY = jax.random.PRNGKey(0)
TIED = LiftParams(variable_axis=None, split_rngs=False)
NO_SPLIT = LiftParams(variable_axis=0, split_rngs=False)
ENSEMBLE = LiftParams(variable_axis=0, split_rngs=True)
COMPLETE = Spelling.COMPLETE  # what linen_stack builds: other collections lifted, axes named


def built_from_recipe(report_or_layout, block):
    """The model the printed ``lifts:`` line makes, executed verbatim."""
    line = report_or_layout.as_dict()["recipe"]
    namespace = {"nn": nn, type(block).__name__: type(block)}
    exec(f"Model = {line}", namespace)  # noqa: S102 - the point of the test
    fields = {
        k: getattr(block, k) for k in block.__dataclass_fields__ if k not in ("parent", "name")
    }
    return namespace["Model"](**fields)


def shapes(tree):
    tree = nn.meta.unbox(tree)
    return {
        "/".join(str(getattr(k, "key", k)) for k in path): tuple(leaf.shape)
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


# Every composition the doctor's tests use, with a carry that fits the block.
CASES = {
    "seed": (Block(features=3), Composition(num_layers=3), (2, 3)),
    "ensemble": (Block(features=3), Composition(num_layers=2, vmap=ENSEMBLE), (4, 3)),
    "ensemble-no-split": (Block(features=2), Composition(num_layers=2, vmap=NO_SPLIT), (3, 2)),
    "layers-no-split": (Block(features=2), Composition(num_layers=3, scan=NO_SPLIT), (2, 2)),
    "tied": (Block(features=2), Composition(num_layers=3, scan=TIED), (2, 2)),
    "scan-only": (
        Block(features=2),
        Composition.from_options(StackOptions(2, batch=BatchMode.NONE)),
        (5, 2),
    ),
    "reversed": (
        Block(features=3),
        Composition(num_layers=3, order=LiftOrder.SCAN_OF_VMAP),
        (3, 3),
    ),
    "reversed-ensemble": (
        Block(features=2),
        Composition(num_layers=2, order=LiftOrder.SCAN_OF_VMAP, vmap=ENSEMBLE),
        (3, 2),
    ),
    "two-widths": (TwoWidths(features=4, hidden=6), Composition(num_layers=2), (2, 4)),
    "scalar-param": (Gated(features=2), Composition(num_layers=3), (2, 2)),
    "partitioned": (Partitioned(features=2), Composition(2, spelling=COMPLETE), (3, 2)),
    "collections": (Collections(features=2), Composition(2, spelling=COMPLETE), (3, 2)),
    "collections-reversed": (
        Collections(features=2),
        Composition(num_layers=2, order=LiftOrder.SCAN_OF_VMAP, spelling=COMPLETE),
        (3, 2),
    ),
    "collections-options": (
        Collections(features=2),
        StackOptions(num_layers=2, collection_axes={"batch_stats": 0, "counter": None}),
        (3, 2),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_printed_lifts_line_runs_verbatim_and_makes_what_was_described(name):
    block, composition, carry = CASES[name]
    layout = describe(block, composition, carry)
    model = built_from_recipe(layout, block)
    made = jax.eval_shape(model.init, KEY, jnp.ones(carry), None)
    assert shapes(made) == {leaf.path: leaf.shape for leaf in layout.leaves}


def test_pytree_carry_recipe_runs():
    carry = {
        "h": jax.ShapeDtypeStruct((4, 2), jnp.float32),
        "step": jax.ShapeDtypeStruct((4,), jnp.int32),
    }
    layout = describe(PairCarry(features=2), Composition(num_layers=3, vmap=ENSEMBLE), carry)
    made = jax.eval_shape(built_from_recipe(layout, PairCarry(features=2)).init, KEY, carry, None)
    assert shapes(made) == {leaf.path: leaf.shape for leaf in layout.leaves}


@pytest.mark.parametrize("order", [LiftOrder.VMAP_OF_SCAN, LiftOrder.SCAN_OF_VMAP])
def test_scan_without_split_makes_identical_layers(order):
    block, c, carry = CASES["layers-no-split"]
    report = check(block, c.with_order(order), carry)
    f = report.find(Pitfall.LAYERS_WITHOUT_SPLIT)
    assert f is not None and f.severity is Severity.WARNING
    assert (
        "3 identical layers" in f.message and "the scan's split_rngs={'params': False}" in f.message
    )
    assert "split_rngs={'params': True} on the scan" in f.fix
    # Flax: every layer's slice is the same at init.
    model = built_from_recipe(report, block)
    variables = jax.jit(model.init)(KEY, jnp.ones(carry), None)
    kernel = np.asarray(variables["params"]["Dense_0"]["kernel"])
    assert kernel.shape == (3, 2, 2) and all(np.array_equal(kernel[0], k) for k in kernel)
    model.apply(variables, jnp.ones(carry), None)  # and it runs


@pytest.mark.parametrize("order", [LiftOrder.VMAP_OF_SCAN, LiftOrder.SCAN_OF_VMAP])
def test_ensemble_without_split_makes_identical_members_in_both_orders(order):
    block, c, carry = CASES["ensemble-no-split"]
    report = check(block, c.with_order(order), carry)
    f = report.find(Pitfall.ENSEMBLE_WITHOUT_SPLIT)
    assert f is not None and "on the vmap" in f.fix
    model = built_from_recipe(report, block)
    kernel = np.asarray(
        jax.jit(model.init)(KEY, jnp.ones(carry), None)["params"]["Dense_0"]["kernel"]
    )
    batch_axis = 0 if order is LiftOrder.VMAP_OF_SCAN else 1
    members = np.moveaxis(kernel, batch_axis, 0)
    assert len(members) == 3 and all(np.array_equal(members[0], m) for m in members)
    layers = np.moveaxis(kernel, 1 - batch_axis, 0)
    assert not np.array_equal(layers[0], layers[1])  # the scan still splits


@pytest.mark.parametrize(
    "composition, lift, other",
    [
        (Composition(num_layers=2, scan=LiftParams(None, True)), "scan", "vmap"),
        (Composition(num_layers=2, vmap=LiftParams(None, True)), "vmap", "scan"),
        (
            Composition(num_layers=2, order=LiftOrder.SCAN_OF_VMAP, vmap=LiftParams(None, True)),
            "vmap",
            "scan",
        ),
    ],
)
def test_confused_split_fix_names_the_lift_and_flax_fails(composition, lift, other):
    report = check(Block(features=2), composition, (3, 2))
    (f,) = report.findings
    assert f.pitfall is Pitfall.CONFUSED_SPLIT and f.severity is Severity.ERROR
    assert f"on the {lift}" in f.fix and f"on the {other}" not in f.fix
    assert f.message.startswith(f"the {lift}'s split_rngs={{'params': True}}")
    namespace = {"nn": nn, "Block": Block}
    exec(f"Model = {report.as_dict()['recipe']}", namespace)  # noqa: S102
    with pytest.raises(Exception):  # noqa: B017 - Flax's own error, whatever its class
        jax.eval_shape(namespace["Model"](features=2).init, KEY, jnp.ones((3, 2)), None)


def test_dtype_changing_carry_is_its_own_finding():
    report = check(Casting(features=3), Composition(num_layers=2), (2, 3))
    (f,) = report.findings
    assert (f.pitfall, f.severity) == (Pitfall.CARRY_DTYPE, Severity.ERROR)
    assert "from float32[3] to bfloat16[3]" in f.message
    assert "width" not in f.message + f.fix and "dtype" in f.fix
    model = linen_stack(Casting, StackOptions(num_layers=2))(features=3)
    with pytest.raises(Exception):  # noqa: B017 - Flax's scan refuses it too
        nn.vmap(
            nn.scan(Casting, variable_axes={"params": 0}, split_rngs={"params": True}, length=2),
            variable_axes={"params": None},
            split_rngs={"params": False},
        )(features=3).init(KEY, jnp.ones((2, 3)), None)
    del model


def test_residual_width_pitfall_is_reported_not_raised():
    report = check(Residual(features=4), Composition(num_layers=2), (2, 5))
    (f,) = report.findings
    assert (f.pitfall, f.severity) == (Pitfall.WIDTH_MISMATCH, Severity.ERROR)
    assert "x.shape[-1] is 5 but Residual(features=4)" in f.message
    assert "x.shape[-1] == features" in f.fix and report.layout is None
    with pytest.raises(TypeError, match="incompatible shapes"):  # what Flax does
        jax.eval_shape(Residual(features=4).init, KEY, jnp.ones((5,)), None)


@pytest.mark.parametrize("order", [LiftOrder.VMAP_OF_SCAN, LiftOrder.SCAN_OF_VMAP])
def test_weight_tying_is_described_with_the_form_flax_accepts(order):
    block, c, carry = CASES["tied"]
    report = check(block, c.with_order(order), carry)
    f = report.find(Pitfall.WEIGHT_TYING)
    assert f is not None and f.severity is Severity.INFO
    assert "one set of params shared by all 3 layers" in f.message
    assert 'variable_broadcast="params"' in f.fix
    line = report.as_dict()["recipe"]
    assert (
        'variable_broadcast="params"' in line and '"params": None' not in line.split("nn.vmap")[0]
    )
    # Flax refuses the literal variable_axes={"params": None} on a scan, with a bare assertion.
    with pytest.raises(AssertionError):
        nn.scan(Block, variable_axes={"params": None}, split_rngs={"params": False}, length=3)(
            features=2
        ).init(KEY, jnp.ones((2,)), None)
    # The printed form runs, and is the block applied 3 times with the same params.
    model = built_from_recipe(report, block)
    x = jnp.asarray(np.random.default_rng(0).standard_normal(carry), jnp.float32)
    variables = model.init(KEY, x, None)
    assert variables["params"]["Dense_0"]["kernel"].shape == (2, 2)
    want = x
    for _ in range(3):
        want = jax.vmap(lambda c: block.apply(variables, c, None)[0])(want)
    np.testing.assert_allclose(model.apply(variables, x, None)[0], want, rtol=1e-6)


def test_partitioned_block_is_described_and_built_without_a_layer_name():
    layout = describe(Partitioned(features=2), Composition(2, spelling=COMPLETE), (3, 2))
    assert layout.leaf("params/Dense_0/kernel").shape == (2, 2, 2)
    for name in ("layers", None):
        model = linen_stack(Partitioned, StackOptions(num_layers=2, layer_axis_name=name))(
            features=2
        )
        variables = model.init(KEY, jnp.ones((3, 2)))
        kernel = variables["params"]["Dense_0"]["kernel"]
        assert kernel.names == (name, "embed", "mlp") and kernel.value.shape == (2, 2, 2)


COMBOS = [
    StackOptions(num_layers=2, batch=batch, collection_axes=axes, layer_axis_name=name)
    for batch in (BatchMode.SHARED, BatchMode.ENSEMBLE, BatchMode.NONE)
    for axes in ({}, {"batch_stats": 0}, {"intermediates": None, "counter": None})
    for name in ("layers", None)
]


@pytest.mark.parametrize(
    "options",
    COMBOS,
    ids=lambda o: f"{o.batch.value}-{dict(o.collection_axes)}-{o.layer_axis_name}",
)
def test_doctor_matches_linen_stack_for_every_collection(options):
    axis = None if options.batch is BatchMode.NONE else "batch"
    block = Collections(features=2, axis_name=axis)
    carry = (3, 2)
    layout = describe(block, options, carry)
    made = jax.eval_shape(
        linen_stack(Collections, options)(features=2, axis_name=axis).init, KEY, jnp.ones(carry)
    )
    assert shapes(made) == {leaf.path: leaf.shape for leaf in layout.leaves}
    # roles: a batch axis exactly where the stack maps the collection per example
    per_example = {"params": options.batch is BatchMode.ENSEMBLE}
    per_example["batch_stats"] = dict(options.collection_axes).get("batch_stats", None) == 0
    per_example["counter"] = dict(options.collection_axes).get("counter", 0) == 0
    for leaf in layout.leaves:
        batched = per_example[leaf.path.split("/")[0]] and options.batch is not BatchMode.NONE
        assert (AxisRole.BATCH in leaf.roles) == batched, leaf
    # init leaves out intermediates (Flax: mutable=DenyList("intermediates")); the rest are all here
    assert {p.split("/")[0] for p in shapes(made)} == {"params", "batch_stats", "counter"}


def test_ensemble_by_accident_and_shared_by_accident_as_flax_makes_them():
    block, c, carry = CASES["ensemble"]  # vmap params 0 with a split, meant shared
    report = check(block, c, carry)
    f = report.find(Pitfall.ENSEMBLE_BY_ACCIDENT)
    assert f is not None and f"{carry[0]} x 2 = 8 independent layers" in f.message
    variables = jax.jit(built_from_recipe(report, block).init)(KEY, jnp.ones(carry), None)
    kernel = np.asarray(variables["params"]["Dense_0"]["kernel"])
    assert kernel.size * 4 + 4 * 2 * 3 * 4 == report.layout.nbytes  # kernel + bias bytes
    assert not np.array_equal(kernel[0], kernel[1])  # independent members, as it says
    meant = Composition(num_layers=2, intent=BatchMode.ENSEMBLE)  # shared, meant an ensemble
    report = check(block, meant, carry)
    assert report.find(Pitfall.SHARED_BY_ACCIDENT) is not None
    variables = jax.jit(built_from_recipe(report, block).init)(KEY, jnp.ones(carry), None)
    assert variables["params"]["Dense_0"]["kernel"].shape == (2, 3, 3)  # no batch axis


def test_carry_structure_change_is_its_own_finding():
    carry = {"h": jax.ShapeDtypeStruct((3, 2), jnp.float32)}
    report = check(GrowsCarry(features=2), Composition(num_layers=2), carry)
    (f,) = report.findings
    assert f.pitfall is Pitfall.CARRY_STRUCTURE and "keys and nesting" in f.fix
    model = built_from_recipe(report, GrowsCarry(features=2))
    with pytest.raises(Exception):  # noqa: B017 - Flax's scan refuses it too
        jax.eval_shape(model.init, KEY, carry, None)
