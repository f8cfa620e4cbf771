"""Checkpoints and configs that composed_lifts.models refuses, with our error naming the culprit."""

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from composed_lifts import models
from composed_lifts.errors import (
    ArgumentTypeError,
    CheckpointMismatchError,
    InputFileError,
    KeyMapError,
    LayoutMismatchError,
    MissingKeyError,
    UnsupportedConfigError,
)
from hf_models import make_model


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama")
    make_model("llama-gqa", folder)
    return folder


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpt2")
    make_model("gpt2", folder)
    return folder


def edited_copy(src, dst, edit):
    """A copy of folder ``src`` in ``dst`` whose tensors pass through ``edit(dict)``."""
    shutil.copytree(src, dst)
    tensors = load_file(dst / "model.safetensors")
    edit(tensors)
    save_file(tensors, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


KEY = "model.layers.1.self_attn.k_proj.weight"


def test_missing_tensor(llama_folder, tmp_path):
    folder = edited_copy(llama_folder, tmp_path / "m", lambda t: t.pop(KEY))
    with pytest.raises(MissingKeyError, match=KEY.replace(".", r"\.")):
        models.from_hf(folder)


def test_unexpected_tensor(llama_folder, tmp_path):
    extra = "model.layers.0.self_attn.q_proj.bias"
    folder = edited_copy(
        llama_folder, tmp_path / "u", lambda t: t.update({extra: np.zeros(64, np.float32)})
    )
    with pytest.raises(KeyMapError, match=extra.replace(".", r"\.")):
        models.from_hf(folder)


def test_wrong_shape(llama_folder, tmp_path):
    folder = edited_copy(
        llama_folder, tmp_path / "s", lambda t: t.update({KEY: np.zeros((8, 32), np.float32)})
    )
    with pytest.raises(CheckpointMismatchError, match=KEY.replace(".", r"\.") + r".*\(8, 32\)"):
        models.from_hf(folder, scan_layers=False)


@pytest.mark.parametrize(
    "field, value",
    [
        ("attention_bias", True),
        ("mlp_bias", True),
        ("hidden_act", "gelu"),
        ("rope_parameters", {"rope_type": "llama3", "rope_theta": 1e4, "factor": 8.0}),
        (
            "rope_parameters",
            {"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": 0.5},
        ),
        ("rope_scaling", {"rope_type": "linear", "factor": 2.0}),
        ("model_type", "falcon"),
        ("architectures", ["LlamaForSequenceClassification"]),
    ],
)
def test_unsupported_llama_config(llama_folder, tmp_path, field, value):
    folder = tmp_path / "c"
    shutil.copytree(llama_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    config[field] = value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedConfigError, match=f"config.json: {field}"):
        models.from_hf(folder)


@pytest.mark.parametrize(
    "field, value",
    [
        ("activation_function", "relu"),
        ("scale_attn_by_inverse_layer_idx", True),
        ("reorder_and_upcast_attn", True),
        ("add_cross_attention", True),
        ("tie_word_embeddings", False),
    ],
)
def test_unsupported_gpt2_config(gpt2_folder, field, value):
    config = json.loads((gpt2_folder / "config.json").read_text())
    with pytest.raises(UnsupportedConfigError, match=f"config.json: {field} = {value!r}"):
        models.config_from_hf({**config, field: value})


@pytest.mark.parametrize("folder_name", ["llama", "gpt2"])
def test_config_round_trips(llama_folder, gpt2_folder, folder_name):
    folder = llama_folder if folder_name == "llama" else gpt2_folder
    config = models.config_from_hf(json.loads((folder / "config.json").read_text()))
    assert models.config_from_hf(models.config_to_hf(config)) == config


def test_folder_without_weights(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "model_type": "gpt2",
                "n_embd": 8,
                "n_head": 2,
                "n_layer": 1,
                "n_positions": 8,
                "vocab_size": 10,
            }
        )
    )
    with pytest.raises(InputFileError, match="neither model.safetensors"):
        models.from_hf(tmp_path)


def test_corrupted_safetensors(llama_folder, tmp_path):
    folder = tmp_path / "x"
    shutil.copytree(llama_folder, folder)
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(InputFileError, match="is not a safetensors file"):
        models.from_hf(folder)


def test_to_hf_refuses_params_of_another_config(llama_folder, gpt2_folder, tmp_path):
    model, params = models.from_hf(llama_folder)
    gpt2_config = models.from_hf(gpt2_folder)[0].config
    with pytest.raises(LayoutMismatchError, match="missing"):
        models.to_hf(params, gpt2_config, tmp_path)
    params["layers"]["mlp"]["up_proj"]["kernel"] = params["layers"]["mlp"]["up_proj"]["kernel"][
        :, :, :8
    ]
    with pytest.raises(LayoutMismatchError, match="layers/mlp/up_proj/kernel"):
        models.to_hf(params, model.config, tmp_path)
    assert not (tmp_path / "model.safetensors").exists()
    with pytest.raises(ArgumentTypeError, match=r"config must be a model config \(.*GPT2Config"):
        models.to_hf(params, {"model_type": "llama"}, tmp_path)
