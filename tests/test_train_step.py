"""The training step against transformers + torch.optim.AdamW: losses and params after 10 steps."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

import hf_models
from composed_lifts import Remat, models
from composed_lifts._keymap import to_state_dict
from composed_lifts.models._hf import _keymap
from composed_lifts.train import (
    TrainOptions,
    clip_grad_norm_like_torch,
    cosine_schedule_with_warmup,
    make_trainer,
)
from train_reference import right_padded_batches, torch_finetune

STEPS, LR, WARMUP = 10, 1e-3, 3


@pytest.fixture(scope="module", params=["gpt2", "llama-gqa"])
def folder(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param)
    hf_models.make_model(request.param, path)
    return path


def train(model, params, batches, **options):
    trainer = make_trainer(
        model, TrainOptions(steps=STEPS, learning_rate=LR, warmup_steps=WARMUP, **options)
    )
    state = trainer.init(params)
    losses = []
    for ids, mask in batches:
        state, metrics = trainer.step(state, {"ids": ids, "mask": mask})
        losses.append(float(metrics["loss"]))
    return np.array(losses), state


def _zero_gradient_entries(key: str, config) -> slice | None:
    """GPT-2's key bias: softmax is invariant to it (q . (k + b) shifts every score of a query
    alike), so its gradient is 0 in exact arithmetic and both frameworks update it by Adam-
    normalised rounding noise. No other entry is exempt."""
    if isinstance(config, models.GPT2Config) and key.endswith("attn.c_attn.bias"):
        return slice(config.n_embd, 2 * config.n_embd)
    return None


def test_ten_steps_equal_torch_adamw(folder):
    ref = hf_models.load_reference(folder)
    model, params = models.from_hf(folder)
    batches = right_padded_batches(0, STEPS, 4, 16, hf_models.VOCAB)
    ours, state = train(model, params, batches, accumulate=2, max_grad_norm=1.0)
    theirs = torch_finetune(ref, batches, steps=STEPS, lr=LR, warmup=WARMUP, accumulate=2)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    assert ours[-1] < ours[0]  # it learned something
    want = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
    assert_params_close(state.params, want, model.config, atol=1e-5)
    before = hf_state(params, model.config)
    for key, value in hf_state(state.params, model.config).items():
        assert not np.array_equal(value, before[key]), key  # every param was trained


def hf_state(params, config) -> dict:
    return to_state_dict(jax.tree_util.tree_map(np.asarray, params), _keymap(config))


def assert_params_close(params, want: dict, config, atol: float) -> None:
    got = hf_state(params, config)
    assert set(got) <= set(want)
    for key, value in got.items():
        keep = np.ones(value.shape, bool)
        exempt = _zero_gradient_entries(key, config)
        if exempt is not None:
            keep[exempt] = False
        np.testing.assert_allclose(value[keep], want[key][keep], atol=atol, rtol=0, err_msg=key)


def test_scanned_and_unrolled_training_give_the_same_losses(folder):
    batches = right_padded_batches(1, 3, 2, 12, hf_models.VOCAB)
    model, params = models.from_hf(folder)
    unrolled_model, unrolled_params = models.from_hf(folder, scan_layers=False)
    scanned, _ = train(model, params, batches)
    unrolled, _ = train(unrolled_model, unrolled_params, batches)
    np.testing.assert_allclose(scanned, unrolled, rtol=1e-6)


@pytest.mark.parametrize("remat", [Remat.FULL, Remat.DOTS])
def test_remat_policies_give_the_same_losses(folder, remat):
    batches = right_padded_batches(2, 2, 2, 12, hf_models.VOCAB)
    model, params = models.from_hf(folder)
    plain, _ = train(model, params, batches)
    rematted, _ = train(model, params, batches, remat=remat)
    np.testing.assert_allclose(rematted, plain, rtol=1e-6)


def test_accumulation_equals_one_larger_batch(folder):
    batches = right_padded_batches(3, 2, 4, 12, hf_models.VOCAB)
    model, params = models.from_hf(folder)
    one, s1 = train(model, params, batches)
    four, s4 = train(model, params, batches, accumulate=4)
    np.testing.assert_allclose(four, one, rtol=1e-6)
    assert_params_close(s4.params, hf_state(s1.params, model.config), model.config, atol=2e-6)


def test_clipping_equals_torch_clip_grad_norm():
    rng = np.random.default_rng(0)
    for scale in (0.01, 1.0, 100.0):  # below, near and above the threshold
        grads = {
            "a": rng.standard_normal((5, 3)).astype(np.float32) * scale,
            "b": rng.standard_normal(7).astype(np.float32) * scale,
        }
        tensors = [torch.zeros(g.shape, requires_grad=True) for g in grads.values()]
        for t, g in zip(tensors, grads.values()):
            t.grad = torch.as_tensor(g.copy())
        torch.nn.utils.clip_grad_norm_(tensors, 1.0)
        tx = clip_grad_norm_like_torch(1.0)
        clipped, _ = tx.update(grads, tx.init(grads))
        for t, g in zip(tensors, clipped.values()):
            np.testing.assert_allclose(np.asarray(g), t.grad.numpy(), rtol=1e-6)


def test_schedule_equals_transformers():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
    sched = transformers.get_cosine_schedule_with_warmup(opt, 4, 20)
    ours = cosine_schedule_with_warmup(0.5, 4, 20)
    for k in range(25):
        assert math.isclose(
            float(ours(k)), opt.param_groups[0]["lr"], rel_tol=1e-5, abs_tol=1e-8
        ), k
        opt.step()
        sched.step()


def test_step_compiles_once_and_donates_the_state(folder):
    model, params = models.from_hf(folder)
    trainer = make_trainer(model, TrainOptions(steps=3))
    state = trainer.init(jax.tree_util.tree_map(jnp.array, params))
    batches = right_padded_batches(4, 3, 2, 8, hf_models.VOCAB)
    old = state
    for ids, mask in batches:
        state, _ = trainer.step(state, {"ids": ids, "mask": mask})
    assert trainer.step.jitted._cache_size() == 1
    assert jax.tree_util.tree_leaves(old.params)[0].is_deleted()  # donated, not copied
    assert int(state.step) == 3
