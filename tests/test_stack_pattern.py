"""Pattern stacks (Linen and NNX) against the plain loop over true layer indices: outputs and
gradients, every batch mode, layer_index, per-layer inputs, reverse, remat, unroll, dropout;
and the two stacks against each other.

For the dropout case the keep-masks come from each stack's own RNG splitting; the blocks emit
them as y and the reference loop is fed those masks as per-example inputs, as in
test_stack_equivalence.py.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import pattern_blocks as pb
from composed_lifts import (
    BatchMode,
    LayerInputs,
    LayerPattern,
    Remat,
    StackOptions,
    linen_pattern_stack,
    linen_to_nnx,
    nnx_pattern_stack,
    nnx_to_linen,
    unstack_pattern_params,
)

B, F = 2, pb.F
TOL = dict(rtol=1e-5, atol=1e-6)
GRAD_TOL = dict(rtol=1e-4, atol=1e-5)
PERIOD = ("local", "local", "global")


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    num_layers: int
    period: tuple[str, ...] = PERIOD
    batch: BatchMode = BatchMode.SHARED
    kinds: str = "plain"  # plain | indexed | dropout
    layer_inputs: LayerInputs | None = None  # None: no xs
    reverse: bool = False
    remat: Remat = Remat.NONE
    unroll: int = 1

    @property
    def pattern(self):
        return LayerPattern(self.period, self.num_layers)

    def options(self, **kw):
        kw = {
            "num_layers": self.num_layers,
            "batch": self.batch,
            "layer_inputs": self.layer_inputs or LayerInputs.SHARED,
            "layer_index": self.kinds == "indexed",
            "reverse": self.reverse,
            "remat": self.remat,
            "unroll": self.unroll,
            **kw,
        }
        return StackOptions(**kw)


TWO = ("local", "global")
CASES = [  # period 3 or 2; N with 2 whole periods and a remainder, none, or only a remainder
    Case("shared_5", 5, TWO),
    Case("ensemble_5", 5, TWO, batch=BatchMode.ENSEMBLE),
    Case("none_short_2", 2, batch=BatchMode.NONE),  # N < k: the remainder only
    Case("shared_whole_4_remat_unroll", 4, TWO, remat=Remat.FULL, unroll=2),
    Case("indexed_xs_shared_7", 7, kinds="indexed", layer_inputs=LayerInputs.SHARED),
    Case(
        "indexed_xs_per_example_ensemble_reverse_5",
        5,
        TWO,
        batch=BatchMode.ENSEMBLE,
        kinds="indexed",
        layer_inputs=LayerInputs.PER_EXAMPLE,
        reverse=True,
    ),
    Case(
        "indexed_none_reverse_5",
        5,
        batch=BatchMode.NONE,
        kinds="indexed",
        reverse=True,
        layer_inputs=LayerInputs.SHARED,
    ),
    Case("dropout_4", 4, kinds="dropout"),
]

LINEN = {
    "plain": {"local": pb.Local(), "global": pb.Global()},
    "indexed": {"local": pb.LocalIndexed(), "global": pb.GlobalIndexed()},
    "dropout": {"local": pb.LocalDropout(), "global": pb.GlobalKeep()},
}
NNX = {
    "plain": {"local": pb.LocalNNX, "global": pb.GlobalNNX},
    "indexed": {"local": pb.LocalIndexedNNX, "global": pb.GlobalIndexedNNX},
    "dropout": {"local": pb.LocalDropoutNNX, "global": pb.GlobalKeepNNX},
}
REFERENCE = {  # the Linen module each kind's layer is applied with in the loop
    "plain": LINEN["plain"],
    "indexed": LINEN["indexed"],
    "dropout": {"local": pb.LocalMasked(), "global": pb.GlobalKeep()},
}


def loss(final, ys):
    floats = [y for y in jax.tree_util.tree_leaves(ys) if jnp.issubdtype(y.dtype, jnp.floating)]
    return jnp.sum(jnp.sin(final)) + sum(jnp.sum(jnp.cos(y)) for y in floats)


def inputs(case):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((B, F)), jnp.float32)
    if case.layer_inputs is None:
        return x, None
    shape = (
        (B, case.num_layers, F)
        if case.layer_inputs is LayerInputs.PER_EXAMPLE
        else (case.num_layers, F)
    )
    return x, jnp.asarray(rng.uniform(0.5, 1.5, shape), jnp.float32)


def assert_close(got, want, tol):
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), **tol)


def reference(case, params, x, xs, masks=None):
    """The loop over true layers: (final, ys, grads as {layers_i}, grad x)."""
    fns = {
        kind: (lambda p, c, x_i, *i, m=m: m.apply({"params": p}, c, x_i, *i))
        for kind, m in REFERENCE[case.kinds].items()
    }
    xs_per_example = case.layer_inputs is LayerInputs.PER_EXAMPLE
    if masks is not None:  # the stack's own draws, fed back per example
        xs, xs_per_example = masks, True
    axis = 1 if case.batch is BatchMode.ENSEMBLE else 0
    layers = {
        f"layers_{i}": pb.layer_of(params, len(case.period), case.num_layers, i, axis)
        for i in range(case.num_layers)
    }

    def f(layers, v):
        final, ys = pb.loop(
            fns,
            case.pattern.layer_types,
            layers,
            v,
            xs,
            batch=case.batch.value,
            xs_per_example=xs_per_example,
            layer_index=case.kinds == "indexed",
            reverse=case.reverse,
        )
        return loss(final, ys), (final, ys)

    (_, (final, ys)), (gl, gx) = jax.jit(jax.value_and_grad(f, (0, 1), has_aux=True))(layers, x)
    return final, ys, gl, gx


def assert_grads_per_layer(case, grad_tree, grad_layers):
    """The stack's scanned grads, read layer by layer by index arithmetic, equal the loop's."""
    axis = 1 if case.batch is BatchMode.ENSEMBLE else 0
    for i in range(case.num_layers):
        got = pb.layer_of(grad_tree, len(case.period), case.num_layers, i, axis)
        assert_close(got, grad_layers[f"layers_{i}"], GRAD_TOL)


def linen_run(case, x, xs):
    model = linen_pattern_stack(LINEN[case.kinds], case.pattern, case.options())()
    keys = {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}
    variables = jax.jit(model.init)(keys, x, xs)
    rngs = {"dropout": jax.random.PRNGKey(2)} if case.kinds == "dropout" else {}

    def f(p, v):
        final, ys = model.apply({"params": p}, v, xs, rngs=rngs)
        return loss(final, ys), (final, ys)

    (_, (final, ys)), (gp, gx) = jax.jit(jax.value_and_grad(f, (0, 1), has_aux=True))(
        variables["params"], x
    )
    return variables, final, ys, gp, gx


def nnx_run(case, variables, x, xs):
    def create():
        return nnx_pattern_stack(
            NNX[case.kinds],
            case.pattern,
            case.options(),
            rngs=nnx.Rngs(params=0, dropout=1),
            batch_size=B,
        )

    # Without RNG streams the params are all the state, and they come from Linen: create the
    # blocks abstractly (no eager init to pay for), then move the Linen params in.
    stack = create() if case.kinds == "dropout" else nnx.eval_shape(create)
    stack = linen_to_nnx(variables, stack)
    assert not any(
        isinstance(leaf, jax.ShapeDtypeStruct)
        for leaf in jax.tree_util.tree_leaves(nnx.state(stack))
    )
    graphdef, params, rest = nnx.split(stack, nnx.Param, ...)

    def f(p, v, rest):
        final, ys = nnx.merge(graphdef, p, rest, copy=True)(v, xs)
        return loss(final, ys), (final, ys)

    (_, (final, ys)), (gp, gx) = jax.jit(jax.value_and_grad(f, (0, 1), has_aux=True))(
        params, x, rest
    )
    return stack, final, ys, nnx.to_pure_dict(gp)["layers"], gx


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_pattern_stacks_equal_the_loop(case):
    x, xs = inputs(case)
    variables, final, ys, gp, gx = linen_run(case, x, xs)
    params = variables["params"]
    pattern = case.pattern
    # the documented layout: repeats (R, ...) and remainder (1, ...), per position of the period
    lead = (B,) if case.batch is BatchMode.ENSEMBLE else ()
    want_parts = {"repeats": pattern.repeats, "remainder": 1 if pattern.remainder else 0}
    assert sorted(params) == sorted(p for p, n in want_parts.items() if n)
    for part, length in want_parts.items():
        if not length:
            continue
        count = len(case.period) if part == "repeats" else pattern.remainder
        assert sorted(params[part]) == [f"kind_{j}" for j in range(count)]
        for leaf in jax.tree_util.tree_leaves(params[part]):
            assert leaf.shape[: len(lead) + 1] == lead + (length,)

    # unrolled: layers_i by true index, each with its kind's params, equal to the scanned slice
    axis = 1 if case.batch is BatchMode.ENSEMBLE else 0
    layers = unstack_pattern_params(params, pattern, axis=axis)
    assert list(layers) == [f"layers_{i}" for i in range(case.num_layers)]
    for i, kind in enumerate(pattern.layer_types):
        x_i = None if xs is None else xs[0, 0] if xs.ndim == 3 else xs[0]
        extra = (jnp.int32(i),) if case.kinds == "indexed" else ()
        init = LINEN[case.kinds][kind].init
        one = jax.eval_shape(init, jax.random.PRNGKey(0), x[0], x_i, *extra)
        want = jax.tree_util.tree_map(lambda a: (B, *a.shape) if axis else a.shape, one["params"])
        assert jax.tree_util.tree_map(jnp.shape, layers[f"layers_{i}"]) == want
        exact = pb.layer_of(params, len(case.period), case.num_layers, i, axis)
        assert_close(layers[f"layers_{i}"], exact, dict(rtol=0, atol=0))

    masks = ys if case.kinds == "dropout" else None
    r_final, r_ys, r_gl, r_gx = reference(case, params, x, xs, masks)
    assert_close(final, r_final, TOL)
    assert_close(ys, r_ys, TOL)
    assert_close(gx, r_gx, GRAD_TOL)
    assert_grads_per_layer(case, gp, r_gl)
    if case.kinds == "indexed":  # the block saw the true layer index, in every example
        index = np.asarray(ys["index"])
        n = case.num_layers
        want = np.arange(n, dtype=np.float32)
        assert (index == (want if case.batch is BatchMode.NONE else np.tile(want, (B, 1)))).all()

    stack, n_final, n_ys, n_gp, n_gx = nnx_run(case, variables, x, xs)
    assert_close(nnx_to_linen(stack)["params"], params, dict(rtol=0, atol=0))
    if case.kinds != "dropout":  # same params, no randomness: NNX equals Linen
        assert_close(n_final, final, TOL)
        assert_close(n_ys, ys, TOL)
        assert_close(n_gp, gp, GRAD_TOL)
        assert_close(n_gx, gx, GRAD_TOL)
    else:  # NNX drew its own masks: the loop fed those masks equals it
        r_final, r_ys, r_gl, r_gx = reference(case, params, x, xs, n_ys)
        assert_close(n_final, r_final, TOL)
        assert_close(n_gx, r_gx, GRAD_TOL)
        assert_grads_per_layer(case, n_gp, r_gl)
        for m in (np.asarray(ys), np.asarray(n_ys)):
            local = m[:, [i for i, k in enumerate(pattern.layer_types) if k == "local"]]
            assert not (local == local[:1]).all(), "same mask for every example"
            assert not (local == local[:, :1]).all(), "same mask for every local layer"
            assert m[:, [i for i, k in enumerate(pattern.layer_types) if k == "global"]].all()


def test_nnx_pattern_stack_runs_under_split_apply_and_draws_anew():
    from composed_lifts import nnx_split_apply

    case = Case("dropout_7", 7, kinds="dropout")
    x, _ = inputs(case)
    stack = nnx_pattern_stack(
        NNX["dropout"], case.pattern, case.options(), rngs=nnx.Rngs(params=0, dropout=1)
    )
    apply, state = nnx_split_apply(stack)
    (final1, masks1), state = apply(state, x)
    (final2, masks2), state = apply(state, x)
    assert masks1.shape == (B, 7, F)
    assert not np.array_equal(masks1, masks2), "a second call must draw new masks"
