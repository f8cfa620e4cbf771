"""`composed-lifts generate`: greedy tokens from a save_pretrained folder equal transformers'."""

import json

import numpy as np
import pytest

from composed_lifts.cli import main
from hf_models import make_model, reference_generate


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpt2")
    return folder, make_model("gpt2", folder)


def generate(capsys, monkeypatch, *args):
    monkeypatch.setenv("COMPOSED_LIFTS_CACHE", "off")
    code = main(["generate", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("devices", [[], ["--devices", 2]], ids=["one device", "2 devices"])
def test_generate_json_equals_transformers(gpt2, capsys, monkeypatch, devices):
    folder, reference = gpt2
    prompt = np.array([[5, 17, 3, 40], [8, 8, 2, 91]])
    code, out, err = generate(
        capsys,
        monkeypatch,
        *devices,
        folder,
        "--prompt-ids",
        "5,17,3,40",
        "--prompt-ids",
        "8,8,2,91",
        "--max-new-tokens",
        12,
        "--ignore-eos",
        "--format",
        "json",
    )
    assert code == 0, err
    reference.generation_config.eos_token_id = None
    try:
        want = reference_generate(reference, prompt, 12)
    finally:
        reference.generation_config.eos_token_id = reference.config.eos_token_id
    assert json.loads(out) == {"prompt_ids": prompt.tolist(), "generated_ids": want.tolist()}


def test_generate_text_stops_at_eos(gpt2, capsys, monkeypatch):
    folder, reference = gpt2
    code, out, err = generate(capsys, monkeypatch, folder, "--prompt-ids", "1,2,3", "--unrolled")
    assert code == 0, err
    want = reference_generate(reference, np.array([[1, 2, 3]]), 16)[0].tolist()
    got = [int(t) for t in out.strip().split(",")]
    assert len(got) == 16 and got[: len(want)] == want


def test_generate_refuses_ragged_prompts_and_missing_folder(gpt2, capsys, monkeypatch, tmp_path):
    folder, _ = gpt2
    code, _, err = generate(capsys, monkeypatch, folder, "--prompt-ids", "1,2", "--prompt-ids", "3")
    assert code == 2 and "same length" in err and "[1, 2]" in err
    code, _, err = generate(capsys, monkeypatch, tmp_path, "--prompt-ids", "1")
    assert code == 2 and "config.json" in err
    code, _, err = generate(capsys, monkeypatch, folder, "--prompt-ids", "1", "--max-new-tokens", 0)
    assert code == 2 and "--max-new-tokens must be >= 1, got 0" in err


def test_generate_refuses_a_batch_the_devices_do_not_divide(gpt2, capsys, monkeypatch):
    code, out, err = generate(
        capsys, monkeypatch, gpt2[0], "--prompt-ids", "1,2", "--devices", 4, "--ignore-eos"
    )
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "batch of 1 examples" in err and "--devices of size 4" in err
