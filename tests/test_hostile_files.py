"""Files from strangers, read by the format handlers: each finding of issue 17 that lives in a
reader (index files, shards, dtypes, layout records, FIFOs, damaged Orbax metadata), and the
layout a plain file does not record declared with ``load(..., saved_as=...)``.

Each case failed before the readers checked it (a read outside the folder, a silently
different model, a KeyError, a hang, "none recorded" with exit 0).
"""

import contextlib
import json
import os
import shutil
import signal

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from composed_lifts import models, stack_params, unstack_params
from composed_lifts.checkpoint import Stack, describe, load, save
from composed_lifts.checkpoint._record import LAYOUT_KEY
from composed_lifts.errors import CheckpointFormatError
from hf_models import make_model
from hostile import hostile


@pytest.fixture(autouse=True)
def no_compilation_cache(monkeypatch):
    monkeypatch.setenv("COMPOSED_LIFTS_CACHE", "off")


@contextlib.contextmanager
def no_hang(seconds=20):
    """Fail instead of hanging (a blocking open of a FIFO would wait forever)."""

    def fail(*_):
        raise AssertionError(f"hung for {seconds} s")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpt2")
    make_model("gpt2-bf16-sharded", folder)
    assert (folder / "model.safetensors.index.json").is_file()
    return folder


def copy_with_index(src, dst, edit):
    shutil.copytree(src, dst)
    index = json.loads((dst / "model.safetensors.index.json").read_text())
    edit(index["weight_map"], dst)
    (dst / "model.safetensors.index.json").write_text(json.dumps(index))
    return dst


def first(weight_map):
    return sorted(weight_map)[0]


@pytest.mark.parametrize("where", ["parent", "absolute", "symlink"])
def test_index_naming_a_shard_outside_the_folder_is_refused(sharded, tmp_path, capsys, where):
    outside = tmp_path / "x.safetensors"
    name = None

    def edit(weight_map, dst):
        nonlocal name
        key = first(weight_map)
        shutil.copy(dst / weight_map[key], outside)
        for k, v in list(weight_map.items()):
            if v == weight_map[key]:
                weight_map[k] = {
                    "parent": "../x.safetensors",
                    "absolute": str(outside),
                    "symlink": "link.safetensors",
                }[where]
        name = weight_map[key]
        if where == "symlink":
            os.symlink(outside, dst / "link.safetensors")

    folder = copy_with_index(sharded, tmp_path / "m", edit)
    with pytest.raises(CheckpointFormatError, match="outside the model folder|leaves the model"):
        models.from_hf(folder)
    line, _ = hostile(capsys, "show", folder, words=(name,))
    assert "refusing to read it" in line


def test_a_hub_cache_snapshot_may_link_into_its_blobs(sharded, tmp_path):
    snapshot = tmp_path / "models--x" / "snapshots" / "abc"
    blobs = tmp_path / "models--x" / "blobs"
    snapshot.mkdir(parents=True)
    blobs.mkdir()
    for p in sharded.iterdir():
        shutil.copy(p, blobs / p.name)
        os.symlink(os.path.join("..", "..", "blobs", p.name), snapshot / p.name)
    _, params = models.from_hf(snapshot)
    _, want = models.from_hf(sharded)
    assert all(
        np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(jax_leaves(params), jax_leaves(want))
    )


def jax_leaves(tree):
    import jax

    return jax.tree_util.tree_leaves(tree)


def test_a_tensor_in_two_shards_is_refused(sharded, tmp_path, capsys):
    def edit(weight_map, dst):
        key = first(weight_map)
        other = next(v for v in sorted(set(weight_map.values())) if v != weight_map[key])
        tensors = load_file(dst / other)
        tensors[key] = load_file(dst / weight_map[key])[key] + 1  # a different copy
        save_file(tensors, dst / other, metadata={"format": "pt"})

    folder = copy_with_index(sharded, tmp_path / "m", edit)
    with pytest.raises(CheckpointFormatError, match="stored once"):
        models.from_hf(folder)
    hostile(capsys, "show", folder, words=("stored once",))


def test_index_putting_a_tensor_in_a_shard_without_it_is_refused(sharded, tmp_path):
    def edit(weight_map, dst):
        key = first(weight_map)
        weight_map[key] = next(v for v in sorted(set(weight_map.values())) if v != weight_map[key])

    folder = copy_with_index(sharded, tmp_path / "m", edit)
    with pytest.raises(CheckpointFormatError, match="does not hold it"):
        models.from_hf(folder)


def _raw_safetensors(path, header: dict, data: bytes = b""):
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + data)


@pytest.mark.parametrize("code,size", [("C64", 8), ("F8_E8M0", 1)])
def test_a_dtype_we_do_not_read_is_refused_by_name(tmp_path, capsys, code, size):
    path = tmp_path / "m.safetensors"
    _raw_safetensors(
        path, {"w": {"dtype": code, "shape": [2], "data_offsets": [0, 2 * size]}}, b"\0" * 2 * size
    )
    with pytest.raises(CheckpointFormatError, match=f"as {code}, a dtype"):
        load(path)
    hostile(capsys, "show", path, words=(code,))
    hostile(capsys, "convert", path, tmp_path / "o.safetensors", words=(code,))


def _with_layout(tmp_path, edit):
    """A scanned file of 3 layers whose layout record passes through ``edit``."""
    params = {"stack": {"w": np.arange(3 * 2 * 4, dtype=np.float32).reshape(3, 2, 4)}}
    good = tmp_path / "good.safetensors"
    save(good, params, stacks=["stack"])
    from composed_lifts.checkpoint._safetensors import SafetensorsFile

    with SafetensorsFile(good) as f:
        layout = json.loads(f.metadata[LAYOUT_KEY])
    edit(layout["stacks"][0])
    bad = tmp_path / "bad.safetensors"
    save_file(load_file(good), bad, metadata={LAYOUT_KEY: json.dumps(layout)})
    return bad, params


@pytest.mark.parametrize(
    "field,value,words",
    [
        ("num_layers", 10**18, "records 1000000000000000000 layers"),
        ("num_layers", 4, "records 4 layers"),
        ("layer_axis", 2**63, "layer axis 9223372036854775808"),
    ],
)
def test_a_layout_record_that_contradicts_the_tensors(tmp_path, capsys, field, value, words):
    bad, params = _with_layout(tmp_path, lambda s: s.update({field: value}))
    with no_hang():
        with pytest.raises(CheckpointFormatError, match=str(bad)):
            load(bad, like=params)
        line, out = hostile(capsys, "show", bad, words=(words, "disagrees"))
        assert "stack.w" in out  # the description is printed, then the disagreement
        hostile(capsys, "convert", bad, tmp_path / "o.safetensors", words=(words,))
    assert describe(bad).problems


def test_a_layout_record_of_negative_layers_is_unreadable(tmp_path, capsys):
    bad, params = _with_layout(tmp_path, lambda s: s.update({"num_layers": -1}))
    with no_hang():
        with pytest.raises(CheckpointFormatError, match="num_layers must be >= 1, got -1"):
            load(bad, like=params)
        hostile(capsys, "show", bad, words=("unreadable layout record", "got -1"))


def test_a_fifo_shard_or_metadata_is_refused_without_blocking(sharded, tmp_path, capsys):
    folder = tmp_path / "m"
    shutil.copytree(sharded, folder)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shard = folder / sorted(set(index["weight_map"].values()))[0]
    shard.unlink()
    os.mkfifo(shard)
    with no_hang():
        with pytest.raises(CheckpointFormatError, match="not a regular file"):
            models.from_hf(folder)
        hostile(capsys, "show", folder, words=("not a regular file",))
    orbax = tmp_path / "orbax"
    save(orbax, {"w": np.ones((2, 3), np.float32)})
    meta = orbax / "_METADATA"
    assert meta.exists()
    meta.unlink()
    os.mkfifo(meta)
    with no_hang():
        with pytest.raises(CheckpointFormatError, match="FIFO"):
            load(orbax)
        hostile(capsys, "show", orbax, words=("FIFO",))
    single = tmp_path / "fifo.safetensors"
    os.mkfifo(single)
    with no_hang():
        hostile(capsys, "show", single, words=("not a regular file",))


def test_garbage_checkpoint_metadata_is_not_no_layout(tmp_path, capsys):
    orbax = tmp_path / "orbax"
    params = {"w": np.ones((2, 3), np.float32)}
    save(orbax, params)
    (orbax / "_CHECKPOINT_METADATA").write_bytes(b"\x00garbage{")
    with pytest.raises(CheckpointFormatError, match=f"{orbax}.*damaged _CHECKPOINT_METADATA"):
        load(orbax, like=params)
    line, out = hostile(capsys, "show", orbax, words=("_CHECKPOINT_METADATA",))
    assert "none recorded" not in out


def test_a_plain_file_without_layout_names_itself_and_saved_as(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"stack.w": np.ones((3, 2), np.float32)}, path)
    with pytest.raises(CheckpointFormatError, match=f"{path}.*saved_as="):
        load(path, like={"stack": {"w": np.ones((3, 2), np.float32)}})


# ---------------------------------------------------------------- saved_as= (issue 17 item 5)


def _maxtext_tree(n=3, seed=0):
    """A scanned model's params as MaxText stores them: the layer axis at 1."""
    rng = np.random.default_rng(seed)
    return {
        "params": {
            "decoder": {
                "layers": {
                    "mlp": {"kernel": rng.standard_normal((4, n, 6)).astype(np.float32)},
                    "norm": {"scale": rng.standard_normal((5, n)).astype(np.float32)},
                },
                "final_norm": {"scale": rng.standard_normal(4).astype(np.float32)},
            }
        }
    }


def _targets(tree):
    layers = tree["params"]["decoder"]["layers"]
    axis0 = {k: {n: np.moveaxis(v, 1, 0) for n, v in d.items()} for k, d in layers.items()}
    unrolled = unstack_params(axis0)

    def wrap(node):
        return {"params": {"decoder": {**tree["params"]["decoder"], "layers": node}}}

    return wrap(axis0), wrap(unrolled), wrap(layers)


def _write_plain(kind, path, tree):
    if kind == "safetensors":
        import jax

        flat = {
            ".".join(str(getattr(k, "key", k)) for k in p): v
            for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]
        }
        save_file(flat, path)
    else:
        import orbax.checkpoint as ocp

        ckptr = ocp.StandardCheckpointer()
        ckptr.save(os.path.abspath(path), tree)
        ckptr.wait_until_finished()
        ckptr.close()


@pytest.mark.parametrize("kind", ["safetensors", "orbax"])
def test_saved_as_declares_the_layout_of_a_plain_scanned_checkpoint(tmp_path, kind):
    tree = _maxtext_tree()
    path = tmp_path / ("plain.safetensors" if kind == "safetensors" else "plain")
    _write_plain(kind, path, tree)
    assert describe(path).layout is None
    axis0, unrolled, axis1 = _targets(tree)
    declared = Stack("params/decoder/layers", layer_axis=1)
    for target, axis in ((axis0, 0), (unrolled, None), (axis1, 1)):
        got = load(path, like=target, saved_as=declared, layer_axis=axis)
        assert jax_structure(got) == jax_structure(target)
        for a, b in zip(jax_leaves(got), jax_leaves(target)):
            assert a.dtype == b.dtype and np.array_equal(a, b)
    assert np.array_equal(
        stack_params(unrolled["params"]["decoder"]["layers"])["mlp"]["kernel"],
        axis0["params"]["decoder"]["layers"]["mlp"]["kernel"],
    )


def jax_structure(tree):
    import jax

    return jax.tree_util.tree_structure(tree)


def test_saved_as_is_checked_against_the_tensors(tmp_path):
    tree = _maxtext_tree()
    path = tmp_path / "plain.safetensors"
    _write_plain("safetensors", path, tree)
    axis0, _, _ = _targets(tree)
    with pytest.raises(CheckpointFormatError, match="disagree on the number of layers"):
        load(path, like=axis0, saved_as=Stack("params/decoder/layers", layer_axis=0))
    with pytest.raises(CheckpointFormatError, match="no tensor under stack 'nope'"):
        load(path, like=axis0, saved_as="nope")
    recorded = tmp_path / "ours.safetensors"
    save(recorded, axis0, stacks=["params/decoder/layers"])
    with pytest.raises(CheckpointFormatError, match="records its own layout"):
        load(recorded, like=axis0, saved_as="params/decoder/layers")
