"""Linen stack, NNX stack, functional scan and unrolled loop: same outputs, same gradients.

For the dropout block the random keep-masks come from each stack's own RNG
splitting; the block emits its mask as y, and the references are fed those
masks as per-layer inputs, so they check everything but the draw itself. The
draws are checked separately: different per layer and per example.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from blocks import CASES, F, layer_fn
from composed_lifts import (
    BatchMode,
    LayerInputs,
    StackOptions,
    linen_stack,
    linen_to_nnx,
    nnx_split_apply,
    nnx_stack,
    scan_layers,
    stack_params,
    unroll_layers,
    unstack_params,
)

N, B = 3, 4
# Different orders of float32 sums (scan vs loop, vmap vs per example) differ in the last bits.
TOL = dict(rtol=1e-5, atol=1e-6)
GRAD_TOL = dict(rtol=1e-4, atol=1e-5)
MODES = [BatchMode.SHARED, BatchMode.ENSEMBLE]


def loss(final, ys):
    floats = [y for y in jax.tree_util.tree_leaves(ys) if jnp.issubdtype(y.dtype, jnp.floating)]
    return jnp.sum(jnp.sin(final)) + sum(jnp.sum(y) for y in floats)


def inputs(case):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((B, F)), jnp.float32)
    xs = jnp.asarray(rng.uniform(0.5, 1.5, (N, F)), jnp.float32) if case.per_layer_input else None
    return x, xs


def options(case, mode, **kw):
    return StackOptions(num_layers=N, batch=mode, layer_index=case.layer_index, **kw)


def references(case, mode, params, x, xs, ys):
    """Functional scan and unrolled loop: (final, ys, grad params, grad x) for each."""
    if case.dropout:  # feed each example's masks back as per-layer inputs (B, N, F)
        xs, opts = ys, options(case, mode, layer_inputs=LayerInputs.PER_EXAMPLE)
    else:
        opts = options(case, mode)
    fn = layer_fn(case)
    axis = 1 if mode is BatchMode.ENSEMBLE else 0

    def scanned(p, v):
        final, out = scan_layers(fn, p, v, xs, options=opts)
        return loss(final, out), (final, out)

    def unrolled(layers, v):
        final, out = unroll_layers(fn, layers, v, xs, options=opts)
        return loss(final, out), (final, out)

    grad = jax.value_and_grad
    (_, (f1, y1)), (gp1, gx1) = jax.jit(grad(scanned, (0, 1), has_aux=True))(params, x)
    layers = unstack_params(params, axis=axis)
    (_, (f2, y2)), (gl2, gx2) = jax.jit(grad(unrolled, (0, 1), has_aux=True))(layers, x)
    return [(f1, y1, gp1, gx1), (f2, y2, stack_params(gl2, axis=axis), gx2)]


def assert_close(got, want, tol):
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), **tol)


def linen_run(case, mode, x, xs):
    model = linen_stack(case.linen, options(case, mode))()
    keys = {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}
    variables = jax.jit(model.init)(keys, x, xs)
    apply_rngs = {"dropout": jax.random.PRNGKey(2)} if case.dropout else {}

    def f(p, v):
        final, ys = model.apply({"params": p}, v, xs, rngs=apply_rngs)
        return loss(final, ys), (final, ys)

    (_, (final, ys)), (gp, gx) = jax.jit(jax.value_and_grad(f, (0, 1), has_aux=True))(
        variables["params"], x
    )
    return variables, final, ys, gp, gx


def nnx_run(case, mode, variables, x, xs):
    stack = nnx_stack(
        case.nnx, options(case, mode), rngs=nnx.Rngs(params=0, dropout=1), batch_size=B
    )
    stack = linen_to_nnx(variables, stack)
    graphdef, params, rest = nnx.split(stack, nnx.Param, ...)

    def f(p, v, rest):  # rest (RNG state) is traced too: NNX mutates it, never across traces
        final, ys = nnx.merge(graphdef, p, rest, copy=True)(v, xs)
        return loss(final, ys), (final, ys)

    (_, (final, ys)), (gp, gx) = jax.jit(jax.value_and_grad(f, (0, 1), has_aux=True))(
        params, x, rest
    )
    return stack, final, ys, nnx.to_pure_dict(gp)["layers"], gx


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.name.lower())
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_linen_nnx_functional_unrolled_agree(case, mode):
    x, xs = inputs(case)
    variables, final, ys, gp, gx = linen_run(case, mode, x, xs)
    params = variables["params"]
    lead = (B, N) if mode is BatchMode.ENSEMBLE else (N,)
    for leaf in jax.tree_util.tree_leaves(params):
        assert leaf.shape[: len(lead)] == lead
    assert final.shape == (B, F)
    for ref in references(case, mode, params, x, xs, ys):
        assert_close(ref[0], final, TOL)
        assert_close(ref[1], ys, TOL)
        assert_close(ref[2], gp, GRAD_TOL)
        assert_close(ref[3], gx, GRAD_TOL)

    stack, n_final, n_ys, n_gp, n_gx = nnx_run(case, mode, variables, x, xs)
    if not case.dropout:  # same params, no randomness: the NNX stack equals the Linen one
        assert_close(n_final, final, TOL)
        assert_close(n_ys, ys, TOL)
        assert_close(n_gp, gp, GRAD_TOL)
        assert_close(n_gx, gx, GRAD_TOL)
    else:  # NNX drew its own masks: check it against the references fed those masks
        for ref in references(case, mode, params, x, xs, n_ys):
            assert_close(ref[0], n_final, TOL)
            assert_close(ref[2], n_gp, GRAD_TOL)
            assert_close(ref[3], n_gx, GRAD_TOL)

    if case.dropout:  # the draws differ per layer and per example, in both stacks
        for masks in (ys, n_ys):
            masks = np.asarray(masks)
            assert masks.shape == (B, N, F) and masks.dtype == bool
            assert not (masks == masks[:1]).all(), "same mask for every example"
            assert not (masks == masks[:, :1]).all(), "same mask for every layer"
            assert 0.2 < masks.mean() < 0.8


def test_nnx_fast_path_matches_and_advances_rngs():
    case = next(c for c in CASES if c.dropout)
    x, xs = inputs(case)
    stack = nnx_stack(case.nnx, options(case, BatchMode.SHARED), rngs=nnx.Rngs(0, dropout=1))
    apply, state = nnx_split_apply(stack)
    (final1, masks1), state = apply(state, x, xs)
    (final2, masks2), state = apply(state, x, xs)
    assert not np.array_equal(masks1, masks2), "a second call must draw new masks"
    eager_final, eager_masks = stack(x, xs)  # the module itself starts from the same state
    np.testing.assert_array_equal(eager_masks, masks1)
    np.testing.assert_allclose(eager_final, final1, **TOL)


@pytest.mark.parametrize("case", [c for c in CASES if not c.dropout], ids=lambda c: c.name)
def test_shared_params_examples_are_independent(case):
    x, xs = inputs(case)
    model = linen_stack(case.linen, options(case, BatchMode.SHARED))()
    variables = model.init(jax.random.PRNGKey(0), x, xs)
    apply = jax.jit(model.apply)
    full, ys = apply(variables, x, xs)
    for i in range(B):
        alone, ys_alone = apply(variables, x[i : i + 1], xs)
        np.testing.assert_allclose(alone[0], full[i], **TOL)
        assert_close(
            jax.tree_util.tree_map(lambda a: a[0], ys_alone),
            jax.tree_util.tree_map(lambda a, i=i: a[i], ys),
            TOL,
        )
