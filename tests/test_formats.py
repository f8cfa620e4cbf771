"""Format handlers: Hugging Face folders through `convert` and `show`, `to_hf` sharded and
streamed, `from_hf` reading per-device slices, one function picking the format.

Reference: ``transformers``' ``from_pretrained`` of the folders written (weights compared
bitwise), and the bytes the reader counts against the bytes each device's part holds.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from composed_lifts import models
from composed_lifts.checkpoint import describe, load, save
from composed_lifts.checkpoint._format import format_for
from composed_lifts.cli import main
from hf_models import load_reference, make_model


@pytest.fixture(autouse=True)
def no_compilation_cache(monkeypatch):
    monkeypatch.setenv("COMPOSED_LIFTS_CACHE", "off")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    out = {}
    for name in ("gpt2", "llama-gqa", "llama-tied-bf16-sharded"):
        folder = tmp_path_factory.mktemp(name)
        out[name] = (folder, make_model(name, folder))
    return out


def _torch_state(folder) -> dict:
    model = transformers_model(folder)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def transformers_model(folder):
    import transformers

    return transformers.AutoModelForCausalLM.from_pretrained(folder, dtype="auto")


def test_one_function_picks_the_format(folders, tmp_path):
    folder, _ = folders["gpt2"]
    assert format_for(folder).name == "hf"
    assert format_for(tmp_path / "x.safetensors").name == "safetensors"
    assert format_for(tmp_path / "x.safetensors", writing=True).name == "safetensors"
    assert format_for(tmp_path / "ckpt", writing=True).name == "orbax"
    (tmp_path / "orbax").mkdir()
    assert format_for(tmp_path / "orbax").name == "orbax"


@pytest.mark.parametrize("name", ["llama-gqa", "llama-tied-bf16-sharded", "gpt2"])
def test_convert_folder_to_checkpoint_and_back_is_bitwise(folders, tmp_path, capsys, name):
    folder, _ = folders[name]
    ckpt = tmp_path / ("orbax" if name == "gpt2" else "model.safetensors")  # both formats
    assert main(["convert", str(folder), str(ckpt)]) == 0
    assert "wrote" in capsys.readouterr().out
    info = describe(ckpt)
    assert info.layout is not None and info.layout.stacks[0].path == "layers"
    assert info.layout.stacks[0].form.value == "stacked"
    assert info.config == json.loads((folder / "config.json").read_text())
    out = tmp_path / "back"
    args = ["convert", str(ckpt), str(out), "--to", "hf", "--max-shard-size", "20KB", "--verify"]
    assert main(args) == 0
    assert "largest difference 0" in capsys.readouterr().out
    want, got = _torch_state(folder), _torch_state(out)
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key].dtype == want[key].dtype, key
        assert torch.equal(got[key], want[key]), key


def test_convert_needs_a_config_for_a_checkpoint_not_from_a_folder(folders, tmp_path, capsys):
    folder, _ = folders["llama-gqa"]
    model, params = models.from_hf(folder)
    ckpt = tmp_path / "plain.safetensors"
    save(ckpt, params, stacks=["layers"])  # records no config
    assert main(["convert", str(ckpt), str(tmp_path / "o"), "--to", "hf"]) == 2
    assert "records no Hugging Face config" in capsys.readouterr().err
    args = ["convert", str(ckpt), str(tmp_path / "o"), "--to", "hf"]
    assert main([*args, "--config", str(folder / "config.json")]) == 0
    got = load_reference(tmp_path / "o").state_dict()
    want = load_reference(folder).state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_show_describes_a_folder_without_reading_tensors(folders, capsys):
    folder, _ = folders["llama-tied-bf16-sharded"]
    assert main(["show", str(folder)]) == 0
    text = " ".join(capsys.readouterr().out.split())  # rich wraps at the terminal's width
    assert "Hugging Face folder" in text
    assert "model: llama, 2 layers" in text
    assert "dtypes: bfloat16" in text
    shards = sorted(p.name for p in folder.glob("model-*.safetensors"))
    assert f"shards: {len(shards)}, {shards[0]}" in text
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert f"total: {index['metadata']['total_size']:,} bytes" in text


def test_to_hf_shards_like_save_pretrained_and_keeps_bfloat16(folders, tmp_path):
    folder, _ = folders["llama-tied-bf16-sharded"]
    model, params = models.from_hf(folder)
    assert {x.dtype for x in jax.tree_util.tree_leaves(params)} == {jnp.dtype("bfloat16")}
    models.to_hf(params, model.config, tmp_path, max_shard_size="8KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    n = len(shards)
    assert n > 1 and shards == [f"model-{k:05d}-of-{n:05d}.safetensors" for k in range(1, n + 1)]
    sizes = {s: 0 for s in shards}
    info = describe(tmp_path)
    for t in info.tensors:
        assert t.dtype == "bfloat16"
        sizes[index["weight_map"][t.key]] += t.nbytes
    assert index["metadata"]["total_size"] == sum(sizes.values()) == info.total_bytes
    # greedy in key order: a shard is closed only when the next tensor would pass the limit
    assert all(
        size <= 8000 or len([k for k, v in index["weight_map"].items() if v == s]) == 1
        for s, size in sizes.items()
    )
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
    want = load_reference(folder).state_dict()
    reloaded = transformers_model(tmp_path)
    assert next(reloaded.parameters()).dtype == torch.bfloat16
    got = reloaded.state_dict()
    assert all(torch.equal(got[k].float(), want[k]) for k in want)
    # a second save in one shard removes the stale shards and index
    models.to_hf(params, model.config, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    assert all(torch.equal(load_reference(tmp_path).state_dict()[k], want[k]) for k in want)


@pytest.mark.parametrize("name", ["llama-gqa", "gpt2"])
def test_from_hf_on_a_mesh_reads_each_devices_part_alone(folders, name, monkeypatch):
    from composed_lifts import ShardingRules, device_mesh
    from composed_lifts.checkpoint import _format_hf

    folder, _ = folders[name]
    model, whole = models.from_hf(folder)
    mesh = device_mesh({"data": 1, "model": 4})
    rules = ShardingRules(features=(("heads", "model"), ("mlp", "model"), ("vocab", "model")))
    counted = []
    restore = _format_hf.HF.restore
    monkeypatch.setattr(
        _format_hf.HF,
        "restore",
        lambda *a, **k: restore(*a, **{**k, "counter": counted}),
    )
    _, placed = models.from_hf(folder, mesh=mesh, rules=rules)
    for a, b in zip(jax.tree_util.tree_leaves(whole), jax.tree_util.tree_leaves(placed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # each distinct part read once (a replicated part is read once for all its devices)
    shard_bytes = 0
    for leaf in jax.tree_util.tree_leaves(placed):
        parts = {
            tuple(s.indices(d)[:2] for s, d in zip(index, leaf.shape))
            for index in leaf.sharding.devices_indices_map(leaf.shape).values()
        }
        shard_bytes += sum(
            int(np.prod([b - a for a, b in part])) * leaf.dtype.itemsize for part in parts
        )
    assert counted == [shard_bytes]
    split = [x for x in jax.tree_util.tree_leaves(placed) if not x.sharding.is_fully_replicated]
    assert split, "the rules shard some params"
    for leaf in split:
        assert leaf.addressable_shards[0].data.size * 4 == leaf.size


def test_read_slice_reads_only_its_bytes(tmp_path):
    from composed_lifts.checkpoint._safetensors import SafetensorsFile

    x = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    save(tmp_path / "a.safetensors", {"x": x}, stacks=[])
    with SafetensorsFile(tmp_path / "a.safetensors") as f:
        for index in [
            (slice(1, 3),),
            (slice(0, 4), slice(2, 4)),
            (slice(1, 2), slice(0, 5), slice(3, 6)),
            (slice(0, 4), slice(0, 5), slice(0, 6)),
        ]:
            before = f.bytes_read
            got = f.read_slice("x", index)
            np.testing.assert_array_equal(got, x[index])
            assert f.bytes_read - before == x[index].nbytes


def test_load_of_a_folder_without_a_keymap_names_from_hf(folders):
    from composed_lifts.errors import CheckpointFormatError

    folder, _ = folders["gpt2"]
    with pytest.raises(CheckpointFormatError, match="from_hf"):
        load(folder, like={})
