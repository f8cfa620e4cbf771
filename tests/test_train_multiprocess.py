"""A run over 2 processes (jax.distributed, coordinator on 127.0.0.1, gloo CPU collectives, 2
devices each) follows one 4-device process's loss curve within 1e-5, with its train state
saved by 2 processes and resumed by 1, then saved by 1 and resumed by 2."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

import hf_models

SCRIPT = pathlib.Path(__file__).with_name("train_multiprocess_script.py")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpt2")
    hf_models.make_model("gpt2", path)
    return path


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(processes: int, folder, out, load="-", stop=0) -> list[float]:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    port, local = _port(), 4 // processes
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(SCRIPT),
                str(i),
                str(processes),
                str(port),
                str(local),
                str(folder),
                str(out),
                str(load),
                str(stop),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    outputs = [p.communicate(timeout=480) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    result = json.loads(outputs[0][0].strip().splitlines()[-1])
    assert result["devices"] == 4 and result["processes"] == processes
    return result["losses"]


def test_two_processes_equal_one_and_checkpoints_cross(folder, tmp_path):
    one = launch(1, folder, tmp_path)
    state = tmp_path / "state.safetensors"
    step1 = launch(2, folder, tmp_path, stop=1)  # 2 processes, saved after step 1
    step2 = launch(1, folder, tmp_path, load=state, stop=2)  # resumed by 1, saved after step 2
    step3 = launch(2, folder, tmp_path, load=state)  # resumed by 2 processes
    assert len(step1) == len(step2) == len(step3) == 1
    np.testing.assert_allclose(step1 + step2 + step3, one, rtol=1e-5)
