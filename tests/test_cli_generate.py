"""`composed-lifts generate`: text or ids from a save_pretrained folder equal transformers'."""

import io
import json
import shutil

import numpy as np
import pytest
import torch
import transformers

from composed_lifts.cli import _generate, main
from hf_models import make_model, make_tokenizer, reference_generate


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpt2")
    reference = make_model("gpt2", folder)
    make_tokenizer(folder)
    return folder, reference


def generate(capsys, monkeypatch, *args):
    monkeypatch.setenv("COMPOSED_LIFTS_CACHE", "off")
    code = main(["generate", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def hf_text_generate(folder, reference, prompt_ids, new_tokens):
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    tokens = reference_generate(reference, np.asarray([prompt_ids]), new_tokens)[0].tolist()
    return tokens, tokenizer.decode(tokens)


@pytest.mark.parametrize("devices", [[], ["--devices", 2]], ids=["one device", "2 devices"])
def test_generate_json_equals_transformers(gpt2, capsys, monkeypatch, devices):
    folder, reference = gpt2
    prompt = np.array([[5, 17, 3, 40], [8, 8, 2, 91]])
    code, out, err = generate(
        capsys, monkeypatch, *devices, folder, "--prompt-ids", "5,17,3,40", "--prompt-ids",
        "8,8,2,91", "--max-new-tokens", 12, "--ignore-eos", "--format", "json",
    )  # fmt: skip
    assert code == 0, err
    reference.generation_config.eos_token_id = None
    try:
        want = reference_generate(reference, prompt, 12)
    finally:
        reference.generation_config.eos_token_id = reference.config.eos_token_id
    result = json.loads(out)
    assert [row["prompt_ids"] for row in result["rows"]] == prompt.tolist()
    assert [row["generated_ids"] for row in result["rows"]] == want.tolist()
    assert [row["stop_reason"] for row in result["rows"]] == ["length", "length"]
    assert result["timings"]["decode_tokens"] == 2 * 11 and result["timings"]["compile_s"] > 0


def test_generate_text_stops_at_eos(gpt2, capsys, monkeypatch):
    folder, reference = gpt2
    code, out, err = generate(capsys, monkeypatch, folder, "--prompt-ids", "1,2,3", "--unrolled")
    assert code == 0, err
    want = reference_generate(reference, np.array([[1, 2, 3]]), 16)[0].tolist()
    got = [int(t) for t in out.strip().split(",")]
    assert len(got) == 16 and got[: len(want)] == want
    assert "tokens/s" in err and "compile (first call)" in err


def test_text_prompt_streams_the_text_transformers_decodes(gpt2, capsys, monkeypatch):
    folder, reference = gpt2
    text = "hello there, the fox"
    code, out, err = generate(capsys, monkeypatch, folder, "--prompt", text, "--max-new-tokens", 8)
    assert code == 0, err  # --prompt is not taken for --prompt-ids (allow_abbrev)
    ids = transformers.AutoTokenizer.from_pretrained(folder)(text)["input_ids"]
    _, want = hf_text_generate(folder, reference, ids, 8)
    assert out == want + "\n"
    assert f"prompt: {len(ids)} tokens" in err


def test_chat_applies_the_template_as_transformers_does(gpt2, capsys, monkeypatch):
    folder, reference = gpt2
    code, out, err = generate(
        capsys, monkeypatch, folder, "--prompt", "hello there", "--chat", "--max-new-tokens", 6,
        "--format", "json",
    )  # fmt: skip
    assert code == 0, err
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    messages = [{"role": "user", "content": "hello there"}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True)["input_ids"]
    tokens, text = hf_text_generate(folder, reference, ids, 6)
    row = json.loads(out)["rows"][0]
    assert row["prompt_ids"] == list(ids)
    assert row["generated_ids"] == tokens and row["text"] == text


def test_ragged_text_prompts_and_stop_strings(gpt2, capsys, monkeypatch):
    folder, reference = gpt2
    prompts = ["the quick brown fox", "hello"]
    code, out, err = generate(
        capsys, monkeypatch, folder, "--prompt", prompts[0], "--prompt", prompts[1],
        "--max-new-tokens", 6, "--ignore-eos", "--format", "json",
    )  # fmt: skip
    assert code == 0, err
    rows = json.loads(out)["rows"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    for prompt, row in zip(prompts, rows):  # each row as that prompt alone
        reference.generation_config.eos_token_id = None
        try:
            tokens, text = hf_text_generate(folder, reference, tokenizer(prompt)["input_ids"], 6)
        finally:
            reference.generation_config.eos_token_id = reference.config.eos_token_id
        assert row["generated_ids"] == tokens and row["text"] == text
    stop = rows[0]["text"][-2:]  # a string that the first row produces late
    code, out, err = generate(
        capsys, monkeypatch, folder, "--prompt", prompts[0], "--max-new-tokens", 6,
        "--ignore-eos", "--stop", stop, "--format", "json",
    )  # fmt: skip
    row = json.loads(out)["rows"][0]
    assert row["stop_reason"] == "stop_string" and row["text"].endswith(stop)
    assert stop not in tokenizer.decode(row["generated_ids"][:-1])


def test_stream_flushes_every_token(monkeypatch):
    class Recorder(io.StringIO):
        flushes = 0

        def flush(self):
            self.flushes += 1

    class Chars:  # one character per id
        def decode(self, ids):
            return "".join(chr(97 + i) for i in ids)

    out = Recorder()
    monkeypatch.setattr("sys.stdout", out)
    stream = _generate._Stream(Chars())
    for token in (0, 1, 2):
        stream(np.array([token]))
    assert out.getvalue() == "abc" and out.flushes == 3


def test_bfloat16_dtype_flag(gpt2, capsys, monkeypatch):
    code, out, err = generate(
        capsys, monkeypatch, gpt2[0], "--prompt-ids", "1,2", "--dtype", "bfloat16",
        "--max-new-tokens", 3, "--format", "json",
    )  # fmt: skip
    assert code == 0, err and len(json.loads(out)["rows"][0]["generated_ids"]) <= 3


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--prompt-ids", "1", "--max-new-tokens", 0], "--max-new-tokens must be >= 1, got 0"),
        (["--prompt-ids", "1", "--max-new-tokens", 70], "--max-new-tokens must be <= 63"),
        (["--prompt-ids", "1", "--temperature", -1], "--temperature must be in [0.0, inf)"),
        (["--prompt-ids", "1", "--top-p", 0], "--top-p must be in (0.0, 1.0]"),
        (["--prompt-ids", "1", "--top-k", -2], "--top-k must be >= 0"),
        (["--prompt-ids", "1", "--seed", 2**32], "--seed"),
        (["--prompt-ids", "1", "--prompt", "hi"], "--prompt TEXT or --prompt-ids IDS"),
        (["--prompt-ids", "1", "--chat"], "--chat must be used with --prompt TEXT"),
    ],
)
def test_bad_flags_are_named(gpt2, capsys, monkeypatch, flags, message):
    code, _, err = generate(capsys, monkeypatch, gpt2[0], *flags)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err


def test_missing_tokenizer_and_template_are_named(gpt2, capsys, monkeypatch, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(gpt2[0], bare)
    (bare / "tokenizer.json").unlink()
    code, _, err = generate(capsys, monkeypatch, bare, "--prompt", "hi")
    assert code == 2 and "--prompt needs the folder's tokenizer.json" in err
    assert str(bare / "tokenizer.json") in err
    plain = tmp_path / "plain"
    shutil.copytree(gpt2[0], plain)
    make_tokenizer(plain, chat_template=False)
    code, _, err = generate(capsys, monkeypatch, plain, "--prompt", "hi", "--chat")
    assert code == 2 and "--chat needs a chat template" in err


def test_generate_refuses_a_missing_folder(capsys, monkeypatch, tmp_path):
    code, _, err = generate(capsys, monkeypatch, tmp_path, "--prompt-ids", "1")
    assert code == 2 and "config.json" in err


def test_generate_refuses_a_batch_the_devices_do_not_divide(gpt2, capsys, monkeypatch):
    code, out, err = generate(
        capsys, monkeypatch, gpt2[0], "--prompt-ids", "1,2", "--devices", 4, "--ignore-eos"
    )
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "batch of 1 examples" in err and "--devices of size 4" in err


def test_reference_is_float32(gpt2):
    assert next(gpt2[1].parameters()).dtype == torch.float32
