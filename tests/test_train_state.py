"""Train-state checkpoints: a scanned run's state (params and Adam moments) loads into an
unrolled model exactly and back; a non-finite loss stops the loop naming the step; a full disk
during a save leaves the previous checkpoint whole."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess

import jax
import numpy as np
import pytest

import hf_models
from composed_lifts import models, unstack_params
from composed_lifts.errors import NonFiniteLossError
from composed_lifts.train import (
    LoraOptions,
    TrainOptions,
    load_train_state,
    make_trainer,
    save_train_state,
    token_windows,
    train_loop,
)
from train_reference import right_padded_batches

OPTIONS = TrainOptions(steps=4, learning_rate=1e-3, warmup_steps=1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("llama")
    hf_models.make_model("llama-gqa", path)
    return path


def trained(model, params, lora=None, steps=2):
    trainer = make_trainer(model, OPTIONS, lora=lora)
    state = trainer.init(params)
    for ids, mask in right_padded_batches(0, steps, 2, 8, hf_models.VOCAB):
        state, _ = trainer.step(state, {"ids": ids, "mask": mask})
    return trainer, state


def host(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


def assert_equal_trees(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        assert x.dtype == y.dtype and np.array_equal(x, y)


def unrolled_moments(opt_state):
    """Each moment tree of a scanned state, unstacked as an unrolled model's params are."""

    def unstack(params):
        layers = unstack_params(params["layers"])
        return {**{k: v for k, v in params.items() if k != "layers"}, **layers}

    adam = opt_state[1][0]
    return unstack(host(adam.mu)), unstack(host(adam.nu))


@pytest.mark.parametrize("lora", [None, LoraOptions(rank=2, targets=("q_proj", "down_proj"))])
def test_a_scanned_state_loads_into_an_unrolled_model_exactly_and_back(folder, tmp_path, lora):
    model, params = models.from_hf(folder)
    _, state = trained(model, params, lora)
    path = tmp_path / "state.safetensors"
    save_train_state(path, state, data_position=4)

    unrolled_model, unrolled_params = models.from_hf(folder, scan_layers=False)
    like = make_trainer(unrolled_model, OPTIONS, lora=lora).init(unrolled_params)
    loaded, position = load_train_state(path, like)
    assert position == 4 and int(loaded.step) == 2
    assert np.array_equal(loaded.rng, state.rng)
    want_params = host(state.params)
    want_params = {
        **{k: v for k, v in want_params.items() if k != "layers"},
        **unstack_params(want_params["layers"]),
    }
    assert_equal_trees(host(loaded.params), want_params)
    mu, nu = unrolled_moments(state.opt_state)
    assert_equal_trees(host(loaded.opt_state[1][0].mu), mu)
    assert_equal_trees(host(loaded.opt_state[1][0].nu), nu)

    back = tmp_path / "unrolled.safetensors"
    save_train_state(back, loaded, data_position=4)
    again, _ = load_train_state(back, make_trainer(model, OPTIONS, lora=lora).init(params))
    assert_equal_trees(host(again.params), host(state.params))
    assert_equal_trees(host(again.opt_state), host(state.opt_state))


def test_a_non_finite_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(folder, tmp_path):
    model, params = models.from_hf(folder)
    trainer = make_trainer(model, OPTIONS)
    data = token_windows(list(np.random.default_rng(0).integers(0, 96, (8, 12))), 12, 96)
    path = tmp_path / "state.safetensors"
    result = train_loop(
        trainer,
        trainer.init(params),
        data,
        rows=2,
        checkpoint=path,
        save_every=1,
        stop_requested=lambda: True,
    )
    assert result.stopped and int(result.state.step) == 1
    before = path.read_bytes()
    poisoned = result.state.replace(
        params={
            **result.state.params,
            "norm": {"scale": result.state.params["norm"]["scale"] * np.nan},
        }
    )
    with pytest.raises(NonFiniteLossError, match="the loss of step 2 is nan") as info:
        train_loop(
            trainer, poisoned, data, rows=2, position=result.position, checkpoint=path, save_every=1
        )
    assert info.value.checkpoint == str(path)
    assert path.read_bytes() == before  # the bad step was not saved


@contextlib.contextmanager
def small_disk(path, size: int):
    """A tmpfs of ``size`` bytes at ``path`` (root only), else None."""
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if done.returncode != 0:
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_a_full_disk_during_a_save_leaves_the_previous_checkpoint_whole(
    folder, tmp_path, monkeypatch
):
    model, params = models.from_hf(folder)
    trainer, state = trained(model, params, steps=1)
    probe = tmp_path / "probe.safetensors"
    save_train_state(probe, state)
    size = probe.stat().st_size
    with small_disk(tmp_path / "disk", size * 3 // 2 + 8192) as real:
        path = tmp_path / "disk" / "state.safetensors"
        save_train_state(path, state, data_position=2)
        first = path.read_bytes()
        state, _ = trainer.step(
            state, {"ids": np.ones((2, 8), np.int32), "mask": np.ones((2, 8), np.int32)}
        )
        if not real:  # not root: the disk fills up at the flush instead

            def full(fd):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            monkeypatch.setattr(os, "fsync", full)
        with pytest.raises(OSError) as info:
            save_train_state(path, state, data_position=4)
        monkeypatch.undo()
        assert info.value.errno == errno.ENOSPC or "No space left" in str(info.value)
        assert path.read_bytes() == first
        assert sorted(os.listdir(path.parent)) == ["state.safetensors"]  # no temporary file left
        restored, position = load_train_state(path, trainer.init(params))
        assert position == 2 and int(restored.step) == 1
