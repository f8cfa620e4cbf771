"""Training on 4 virtual CPU devices: data parallel and fully sharded params give one device's
losses within 1e-5; a state saved from the mesh restores on one device and back, exactly."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import hf_models
from composed_lifts import ShardingRules, device_mesh, models
from composed_lifts.train import (
    LoraOptions,
    TrainOptions,
    load_train_state,
    make_trainer,
    save_train_state,
)
from train_reference import right_padded_batches

OPTIONS = TrainOptions(steps=3, learning_rate=1e-3, warmup_steps=1, accumulate=2)
FSDP = ShardingRules(batch="data", features=(("embed", "data"),))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpt2")
    hf_models.make_model("gpt2", path)
    return path


def run(model, params, mesh=None, rules=None, lora=None):
    trainer = make_trainer(model, OPTIONS, lora=lora, mesh=mesh, rules=rules)
    state = trainer.init(params)
    losses = []
    for ids, mask in right_padded_batches(7, 3, 8, 12, hf_models.VOCAB):
        state, metrics = trainer.step(state, {"ids": ids, "mask": mask})
        losses.append(float(metrics["loss"]))
    return np.array(losses), state, trainer


@pytest.mark.parametrize(
    "rules, lora",
    [(None, None), (FSDP, None), (None, LoraOptions(rank=2, targets=("c_attn",)))],
    ids=["data-parallel", "fully-sharded", "lora-data-parallel"],
)
def test_four_devices_give_one_devices_losses(folder, rules, lora):
    model, params = models.from_hf(folder)
    one, _, _ = run(model, params, lora=lora)
    mesh = device_mesh({"data": 4})
    many, state, _ = run(model, params, mesh=mesh, rules=rules, lora=lora)
    np.testing.assert_allclose(many, one, rtol=1e-5)
    if rules is FSDP:
        kernel = state.params["layers"]["mlp"]["c_fc"]["kernel"]
        assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, "data", None)
        mu = state.opt_state[1][0].mu["layers"]["mlp"]["c_fc"]["kernel"]
        assert mu.sharding == kernel.sharding  # the moments live where their params do
        assert kernel.addressable_shards[0].data.shape == (2, 8, 128)  # a quarter on each device


def test_a_state_saved_on_the_mesh_restores_on_one_device_and_back(folder, tmp_path):
    model, params = models.from_hf(folder)
    _, state, _ = run(model, params, mesh=device_mesh({"data": 4}), rules=FSDP)
    path = tmp_path / "state.safetensors"
    save_train_state(path, state, data_position=24)
    one = make_trainer(model, OPTIONS).init(params)
    restored, position = load_train_state(path, one)
    assert position == 24
    for a, b in zip(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(state)):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    back = make_trainer(model, OPTIONS, mesh=device_mesh({"data": 4}), rules=FSDP).init(params)
    again, _ = load_train_state(path, back)
    for a, b in zip(jax.tree_util.tree_leaves(again), jax.tree_util.tree_leaves(back)):
        assert a.sharding == b.sharding
    for a, b in zip(jax.tree_util.tree_leaves(again), jax.tree_util.tree_leaves(state)):
        assert np.array_equal(np.asarray(a), np.asarray(b))
