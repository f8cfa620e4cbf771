"""Every config.json field of every family: implemented (checked by name), fixed (other values
refused by name) or ignored (changes nothing); unknown fields and bad values refused by name;
a model too large for the memory available refused before anything is allocated."""

import json
import shutil

import pytest
import transformers

from composed_lifts import models
from composed_lifts.cli import main
from composed_lifts.errors import ConfigValueError, ModelTooLargeError, UnsupportedConfigError
from composed_lifts.models import Fixed, Ignored, Read
from hf_models import FAMILY_SPECS, SPECS, make_model

CONFIGS = {  # one transformers config per family, as save_pretrained writes it
    "gpt2": SPECS["gpt2"][0],
    "llama": SPECS["llama-gqa"][0],
    "mistral": FAMILY_SPECS["mistral"][0],
    "qwen2": FAMILY_SPECS["qwen2"][0],
    "qwen3": FAMILY_SPECS["qwen3"][0],
    "gemma": FAMILY_SPECS["gemma"][0],
    "gemma2": FAMILY_SPECS["gemma2"][0],
    "gemma3_text": FAMILY_SPECS["gemma3"][0],
}
REFUSED = (ConfigValueError, UnsupportedConfigError)


def saved(model_type: str) -> dict:
    """The family's config.json dict as ``save_pretrained`` writes it (its architecture too)."""
    hf = json.loads(CONFIGS[model_type]().to_json_string())
    return {**hf, "architectures": [models.families()[model_type].architecture]}


def entries(kind):
    return [
        pytest.param(name, entry, id=f"{name}-{entry.name}")
        for name, family in models.families().items()
        for entry in family.fields
        if isinstance(entry, kind)
    ]


def test_every_family_is_tested():
    assert set(CONFIGS) == set(models.families())


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_field_transformers_writes_is_listed(name):
    """Every field of transformers' full config dict (defaults included) is in the table."""
    full = CONFIGS[name]().to_dict()
    full["architectures"] = [models.families()[name].architecture]
    config = models.config_from_hf(full)
    assert models.family_of(config) is models.families()[name]
    assert config == models.config_from_hf(saved(name))


@pytest.mark.parametrize("name, entry", entries(Read))
def test_an_implemented_field_refuses_a_wrong_value_by_name(name, entry):
    hf = {**saved(name), entry.name: {"not": ["a", "value"]}}
    with pytest.raises(REFUSED, match=f"config.json: {entry.name}") as info:
        models.config_from_hf(hf)
    assert info.value.field.startswith(entry.name)


@pytest.mark.parametrize("name, entry", entries(Fixed))
def test_a_fixed_field_takes_its_values_and_refuses_others_by_name(name, entry):
    base = models.config_from_hf(saved(name))
    for value in entry.allowed:
        assert models.config_from_hf({**saved(name), entry.name: value}) == base
    others = ["not-implemented", *(not v for v in entry.allowed if isinstance(v, bool))]
    for value in others:
        with pytest.raises(UnsupportedConfigError, match=f"config.json: {entry.name} = ") as info:
            models.config_from_hf({**saved(name), entry.name: value})
        assert info.value.field == entry.name


IGNORED = entries(Ignored) + [
    pytest.param("llama", Ignored(name), id=f"all-{name}") for name in models.COMMON_IGNORED
]


@pytest.mark.parametrize("name, entry", IGNORED)
def test_an_ignored_field_changes_nothing(name, entry):
    base = models.config_from_hf(saved(name))
    for value in ("anything", 7, None, ["x"]):
        assert models.config_from_hf({**saved(name), entry.name: value}) == base


@pytest.mark.parametrize("name", list(CONFIGS))
def test_an_unknown_field_is_refused_by_name(name):
    with pytest.raises(UnsupportedConfigError, match="config.json: quantization_config = "):
        models.config_from_hf({**saved(name), "quantization_config": {"bits": 4}})


ROPE = [
    ("rope_parameters", {"rope_type": "linear", "rope_theta": 1e4, "factor": 2.0}),
    ("rope_parameters", {"rope_type": "llama3", "rope_theta": 1e4, "factor": 8.0}),
    ("rope_parameters", {"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}),
    ("rope_parameters", {"rope_type": "default", "partial_rotary_factor": 0.5}),
    ("rope_scaling", {"rope_type": "dynamic", "factor": 2.0}),
]


@pytest.mark.parametrize("field, value", ROPE)
@pytest.mark.parametrize("name", [n for n in CONFIGS if n != "gpt2"])
def test_rope_scaling_other_than_default_is_refused(name, field, value):
    if name == "gemma3_text" and field == "rope_parameters":
        value = {"full_attention": value, "sliding_attention": {"rope_type": "default"}}
    with pytest.raises(UnsupportedConfigError, match=f"config.json: {field}"):
        models.config_from_hf({**saved(name), field: value})


# Values of the wrong type or range, each refused with the field named (issue 17's list first).
BAD_VALUES = [
    ("llama", "hidden_size", 32.5),
    ("llama", "hidden_size", 32.0),
    ("llama", "hidden_size", "wide"),
    ("llama", "num_attention_heads", None),
    ("llama", "vocab_size", 0),
    ("gpt2", "n_head", 0),
    ("gpt2", "n_positions", -32),
    ("gpt2", "n_embd", True),
    ("llama", "num_hidden_layers", 10**30),
    ("llama", "rms_norm_eps", -1e-5),
    ("llama", "rms_norm_eps", float("nan")),
    ("llama", "eos_token_id", -1),
    ("llama", "eos_token_id", [2, "x"]),
    ("llama", "tie_word_embeddings", "yes"),
    ("llama", "num_key_value_heads", 3),  # not a divisor of 8 heads
    ("gpt2", "n_head", 5),  # not a divisor of n_embd 32
    ("qwen2", "layer_types", ["sliding_attention"]),  # one entry for 3 layers
    ("qwen2", "layer_types", ["sliding_attention", "full", "full_attention"]),
    ("gemma2", "query_pre_attn_scalar", 0),
    ("gemma2", "hidden_activation", "relu"),
    ("gemma3_text", "sliding_window_pattern", 0),
]


@pytest.mark.parametrize("name, field, value", BAD_VALUES)
def test_a_bad_value_is_refused_by_name(name, field, value):
    with pytest.raises(ConfigValueError, match=rf"config.json: {field}\b") as info:
        models.config_from_hf({**saved(name), field: value})
    assert info.value.field.startswith(field)


def test_the_file_must_be_an_object():
    with pytest.raises(ConfigValueError, match="a JSON object"):
        models.config_from_hf(["llama"])


def test_a_window_without_a_size_is_refused():
    hf = {**saved("qwen2"), "use_sliding_window": False}  # layer_types still say sliding
    with pytest.raises(ConfigValueError, match="config.json: layer_types"):
        models.config_from_hf(hf)


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama")
    make_model("llama-gqa", folder)
    return folder


def with_config(folder, tmp_path, **changes):
    out = tmp_path / "m"
    shutil.copytree(folder, out)
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, **changes}))
    return out


def test_a_huge_model_is_refused_before_anything_is_allocated(llama_folder, tmp_path):
    folder = with_config(llama_folder, tmp_path, num_hidden_layers=10**9)
    with pytest.raises(ModelTooLargeError, match="pass force=True to try anyway") as info:
        models.from_hf(folder)
    assert info.value.need > 10**9 * 4 * 32 * 32  # at least the layers' float32 kernels


def test_force_skips_the_estimate(llama_folder, monkeypatch):
    from composed_lifts import _memory

    monkeypatch.setattr(_memory, "_meminfo_available", lambda: 1000)
    monkeypatch.setattr(_memory, "_cgroup_available", lambda: None)
    with pytest.raises(ModelTooLargeError, match="1e-06 GB is available"):
        models.from_hf(llama_folder)
    model, _ = models.from_hf(llama_folder, force=True)
    assert model.config.num_hidden_layers == 2


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"hidden_size": "wide"}, "config.json: hidden_size = 'wide' is not a valid value"),
        ({"num_hidden_layers": 10**9}, "or pass --force to try anyway"),
        ({"model_type": "falcon"}, "config.json: model_type = 'falcon' is not supported"),
    ],
)
def test_the_command_line_says_one_line(llama_folder, tmp_path, capsys, changes, words):
    folder = with_config(llama_folder, tmp_path, **changes)
    code = main(["generate", str(folder), "--prompt-ids", "1,2"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and words in err, err


def test_transformers_default_configs_are_read(tmp_path):
    """Default-constructed configs (sizes of real models) parse, with transformers' defaults."""
    config = models.config_from_hf(transformers.Gemma3TextConfig().to_dict())
    kinds = config.layer_kinds()
    assert [k.window for k in kinds[:6]] == [4096] * 5 + [None]
    assert (kinds[0].rope_theta, kinds[5].rope_theta) == (10_000.0, 1_000_000.0)
    qwen = models.config_from_hf(transformers.Qwen2Config().to_dict())
    assert all(k.window is None for k in qwen.layer_kinds())
