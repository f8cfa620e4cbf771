"""`composed-lifts finetune`: killed (SIGKILL) and stopped (SIGTERM) runs resume to a bitwise
equal loss curve; LoRA writes a PEFT folder; bad data and flags are refused by name."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import hf_models
from composed_lifts.cli import main
from composed_lifts.train import from_peft

STEPS = 6


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    hf_models.make_model("llama-gqa", root / "base")
    np.save(root / "data.npy", np.random.default_rng(0).integers(0, hf_models.VOCAB, (12, 40)))
    return root


def flags(root, out, *extra):
    return [
        "finetune",
        str(root / "base"),
        "--data",
        str(root / "data.npy"),
        "--steps",
        str(STEPS),
        "--out",
        str(out),
        "--batch",
        "2",
        "--seq-len",
        "16",
        "--lr",
        "1e-3",
        "--warmup",
        "2",
        "--save-every",
        "1",
        *map(str, extra),
    ]


def finetune(capsys, monkeypatch, *args):
    monkeypatch.setenv("COMPOSED_LIFTS_CACHE", "off")
    code = main(list(map(str, args)))
    out = capsys.readouterr()
    return code, out.out, out.err


def losses(out) -> list[str]:
    """The log's losses as written (JSON text: equal text is equal float32 bits)."""
    lines = (out / "log.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["step"] for r in records] == list(range(1, len(records) + 1))
    return [repr(r["loss"]) for r in records]


def spawn(args) -> subprocess.Popen:
    env = {**os.environ, "COMPOSED_LIFTS_CACHE": "off", "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    return subprocess.Popen(
        [sys.executable, "-m", "composed_lifts", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_step(proc, out, step: int) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        log = out / "log.jsonl"
        if log.exists() and len(log.read_text().splitlines()) >= step:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("no progress")


def test_killed_then_stopped_run_resumes_to_the_same_loss_curve(setup, capsys, monkeypatch):
    code, out, err = finetune(capsys, monkeypatch, *flags(setup, setup / "whole"))
    assert code == 0, err
    whole = losses(setup / "whole")
    assert len(whole) == STEPS

    run = setup / "interrupted"
    proc = spawn(flags(setup, run))  # SIGTERM while it compiles: stops after step 1, saved
    deadline = time.monotonic() + 300
    while not (run / "run.json").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    assert "stopped by SIGTERM after step 1" in stdout
    assert losses(run) == whole[:1]

    kill_at = int(np.random.default_rng().integers(2, STEPS))  # a random step, any run
    proc = spawn([*flags(setup, run), "--resume"])
    wait_for_step(proc, run, kill_at)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert losses(run) == whole[: len(losses(run))]

    code, out, err = finetune(capsys, monkeypatch, *flags(setup, run), "--resume")
    assert code == 0, err
    assert losses(run) == whole  # bitwise, step for step
    a = (setup / "whole" / "model.safetensors").read_bytes()
    assert a == (run / "model.safetensors").read_bytes()


def test_lora_run_writes_a_peft_folder(setup, capsys, monkeypatch, tmp_path):
    code, out, err = finetune(
        capsys,
        monkeypatch,
        *flags(setup, tmp_path / "lora"),
        "--lora-rank",
        "2",
        "--lora-targets",
        "q_proj,down_proj",
    )
    assert code == 0, err
    assert "PEFT adapter folder" in out
    from composed_lifts import models

    model, params = models.from_hf(setup / "base")
    lora, options = from_peft(tmp_path / "lora", params, model.config)
    assert options.rank == 2 and options.targets == ("q_proj", "down_proj")
    assert lora["layers"]["self_attn"]["q_proj"]["lora_a"].shape == (2, 32, 2)


@pytest.mark.parametrize(
    "data, extra, words",
    [
        (np.array([[1, 2, 500]]), [], ["token id 500", "vocabulary [0, 96)"]),
        (np.zeros((0,), np.int64), [], ["--data", "no document with 2 or more tokens"]),
        ('{"ids": [1, [2, 3]]}\n', [], ["line 1", "flat list of integer token ids"]),
        ('{"text": "hello"}\n', [], ["no tokenizer.json"]),
        (np.array([[1, 2, 3]]), ["--seq-len", "65"], ["--seq-len must be <= 64", "got 65"]),
        (np.array([[1.5, 2.0]]), [], ["integer token ids"]),
    ],
    ids=["id-above-vocab", "empty", "ragged-jsonl", "text-without-tokenizer", "seq-len", "floats"],
)
def test_bad_data_and_flags_are_refused_by_name(
    setup, capsys, monkeypatch, tmp_path, data, extra, words
):
    path = tmp_path / ("data.jsonl" if isinstance(data, str) else "data.npy")
    if isinstance(data, str):
        path.write_text(data)
    else:
        np.save(path, data)
    args = flags(setup, tmp_path / "out", *extra)
    args[args.index("--data") + 1] = str(path)
    code, out, err = finetune(capsys, monkeypatch, *args)
    assert code == 2, err
    for word in words:
        assert word in err, err


def test_a_second_run_into_the_same_folder_or_a_changed_resume_is_refused(
    setup, capsys, monkeypatch, tmp_path
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"steps": 3}))
    code, _, err = finetune(capsys, monkeypatch, *flags(setup, out))
    assert code == 2 and "--out must be a folder without a run" in err
    (out / "train_state.safetensors").write_bytes(b"")
    code, _, err = finetune(capsys, monkeypatch, *flags(setup, out), "--resume")
    assert code == 2 and "--resume: model was None when the run was saved" in err
