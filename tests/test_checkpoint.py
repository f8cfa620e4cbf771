"""Checkpoints: any saved layout loads into any target layout, exactly; files are checked."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import save_file

from blocks import F, ResidualMLPLinen, ResidualMLPNNX, layer_fn
from composed_lifts import (
    BatchMode,
    StackOptions,
    errors,
    layer_axis_from,
    layer_axis_to,
    linen_stack,
    linen_to_nnx,
    nnx_stack,
    nnx_to_linen,
    stack_params,
    to_state_dict,
    torch_linear_keymap,
    unroll_layers,
    unstack_params,
)
from composed_lifts.checkpoint import Form, KeyMapName, Stack, load, read_layout, save
from test_keymap import DTYPES, N, assert_identical, model_tree

B = 2


@pytest.fixture(scope="module")
def linen_model():
    model = linen_stack(ResidualMLPLinen, StackOptions(num_layers=N))()
    x = jax.random.normal(jax.random.PRNGKey(5), (B, F))
    variables = model.init(jax.random.PRNGKey(0), x)
    return model, variables, x


def test_scanned_checkpoint_loads_into_unrolled_axis1_and_nnx(tmp_path, linen_model):
    model, variables, x = linen_model
    path = tmp_path / "scanned.safetensors"
    save(path, variables, stacks=["params"])
    (record,) = read_layout(path).stacks
    assert (record.path, record.num_layers, record.form, record.layer_axis) == (
        "params",
        N,
        Form.STACKED,
        0,
    )
    apply = jax.jit(lambda v: model.apply(v, x)[0])
    final = apply(variables)
    options = StackOptions(num_layers=N)
    fn = layer_fn(type("C", (), {"reference": ResidualMLPLinen})())
    unroll = jax.jit(lambda layers: unroll_layers(fn, layers, x, options=options)[0])

    # the unrolled model: the Python loop over layers_0 ... layers_{N-1}
    unrolled = jax.eval_shape(lambda: {"params": unstack_params(variables["params"])})
    loaded = load(path, like=unrolled)
    assert_identical(loaded, {"params": unstack_params(variables["params"])})
    want = unroll(unstack_params(variables["params"]))
    got = unroll(loaded["params"])
    assert float(jnp.max(jnp.abs(got - want))) == 0.0
    np.testing.assert_allclose(got, final, rtol=1e-6, atol=1e-6)  # the loop is the scan

    # MaxText's param_scan_axis: 1
    target = layer_axis_to(variables, 1, stacks=("params",))
    loaded = load(path, like=target, layer_axis=1)
    assert_identical(loaded, target)
    got = apply(layer_axis_from(loaded, 1, stacks=("params",)))
    assert float(jnp.max(jnp.abs(got - final))) == 0.0

    # the NNX stack
    stack = nnx_stack(ResidualMLPNNX, StackOptions(num_layers=N), rngs=nnx.Rngs(3))
    loaded_stack = load(path, like=stack)
    assert_identical(nnx_to_linen(loaded_stack), {"params": variables["params"]})
    want, _ = linen_to_nnx(variables, stack)(x)
    got, _ = loaded_stack(x)
    assert float(jnp.max(jnp.abs(got - want))) == 0.0
    np.testing.assert_allclose(got, final, rtol=1e-6, atol=1e-6)
    # and back: the NNX stack saved (unrolled on disk) loads into the Linen stack
    save(tmp_path / "nnx.safetensors", loaded_stack, form=Form.UNROLLED)
    assert_identical(load(tmp_path / "nnx.safetensors", like=variables), variables)


FORMS = [
    ("stacked", dict(form=Form.STACKED), "m.safetensors"),
    ("axis2", dict(form=Form.STACKED, layer_axis=2), "m.safetensors"),
    ("unrolled", dict(form=Form.UNROLLED), "m.safetensors"),
    ("torch", dict(form=Form.UNROLLED, keymap=KeyMapName.TORCH), "m.safetensors"),
    ("orbax", {}, "orbax"),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("mode", [BatchMode.SHARED, BatchMode.ENSEMBLE])
@pytest.mark.parametrize("name,options,filename", FORMS, ids=[f[0] for f in FORMS])
def test_round_trip_every_form(tmp_path, name, options, filename, mode, dtype):
    tree = model_tree(ResidualMLPLinen, mode, dtype)
    ensemble = mode is BatchMode.ENSEMBLE
    axis = 1 if ensemble else 0
    stack = Stack("params/stack", layer_axis=axis, ensemble_size=B if ensemble else None)
    unrolled = {
        "params": dict(tree["params"], stack=unstack_params(tree["params"]["stack"], axis=axis))
    }
    path = tmp_path / filename
    if name == "axis2" and not ensemble:
        options = dict(options, layer_axis=1)
    save(path, tree, stacks=[stack], **options)
    (record,) = read_layout(path).stacks
    assert record.num_layers == N and record.ensemble_size == (B if ensemble else None)
    assert record.dtypes == (np.dtype(dtype).name,)
    assert_identical(load(path, like=tree), tree)
    assert_identical(load(path, like=jax.eval_shape(lambda: unrolled)), unrolled)
    # and saved from the unrolled tree: the same tensors on disk
    save(path, unrolled, stacks=[stack], **options)
    assert_identical(load(path, like=tree), tree)


def test_plain_safetensors_loads_with_an_explicit_keymap(tmp_path):
    tree = model_tree(ResidualMLPLinen, BatchMode.SHARED, np.float32)
    keymap = torch_linear_keymap(("params/stack",))
    path = tmp_path / "plain.safetensors"
    save_file(to_state_dict(tree, keymap), str(path))  # the library's own writer, no layout
    assert read_layout(path) is None
    assert_identical(load(path, like=tree, keymap=keymap), tree)
    with pytest.raises(errors.CheckpointFormatError, match="records no layout.*pass keymap="):
        load(path, like=tree)


def test_mismatches_name_the_param_and_both_shapes(tmp_path, linen_model):
    _, variables, _ = linen_model
    path = tmp_path / "m.safetensors"
    save(path, variables, stacks=["params"])
    more = {
        "params": stack_params(
            {f"layers_{i}": unstack_params(variables["params"])["layers_0"] for i in range(N + 1)}
        )
    }
    with pytest.raises(
        errors.CheckpointMismatchError,
        match=r"param 'params/Dense_0/bias' is 3 layers in the checkpoint but the target needs 4 layers \(shape \(4, 24\)\)",
    ):
        load(path, like=more)
    wide = linen_stack(ResidualMLPLinen, StackOptions(num_layers=N))(features=F + 1)
    wide_vars = jax.eval_shape(wide.init, jax.random.PRNGKey(0), jnp.ones((B, F + 1)))
    with pytest.raises(
        errors.CheckpointMismatchError,
        match=r"param 'params/Dense_0/bias' \(key 'params.0.Dense_0.bias'\) is float32\(24,\) in the checkpoint but the target needs float32\(28,\)",
    ):
        load(path, like=wide_vars)
    half = jax.tree_util.tree_map(lambda a: a.astype(jnp.float16), variables)
    with pytest.raises(
        errors.CheckpointMismatchError, match=r"float32\(24,\).*needs float16\(24,\)"
    ):
        load(path, like=half)
    with pytest.raises(
        errors.CheckpointMismatchError,
        match="'params/head' is a stack of 3 layers in the checkpoint but the target needs no such subtree",
    ):
        save(path, {"params": {"head": variables["params"]}}, stacks=["params/head"])
        load(path, like=variables)


def _flip(path, offset_from_end):
    with open(path, "r+b") as f:
        f.seek(-offset_from_end, os.SEEK_END)
        byte = f.read(1)
        f.seek(-offset_from_end, os.SEEK_END)
        f.write(bytes([byte[0] ^ 0x40]))


def test_damaged_files_are_reported_and_nothing_is_loaded(tmp_path, linen_model):
    _, variables, _ = linen_model
    before = jax.tree_util.tree_map(np.array, variables)
    path = tmp_path / "m.safetensors"
    save(path, variables, stacks=["params"])
    good = path.read_bytes()

    _flip(path, 5)  # a bit in the data of the last tensor
    with pytest.raises(
        errors.ChecksumMismatchError,
        match=r"tensor 'params.LayerNorm_0.scale\[layer 2\]' has xxh3-64 checksum [0-9a-f]{16} but [0-9a-f]{16} was recorded",
    ):
        load(path, like=variables)
    axis1 = tmp_path / "axis1.safetensors"  # stacked at axis 1: read in blocks of rows
    save(axis1, variables, stacks=["params"], layer_axis=1)
    _flip(axis1, 5)  # the last byte of scale[5, 1], shape (F, N): layer 1
    with pytest.raises(
        errors.ChecksumMismatchError, match=r"'params.LayerNorm_0.scale\[layer 1\]'"
    ):
        load(axis1, like=variables)
    path.write_bytes(good[: len(good) - 7])
    with pytest.raises(
        errors.CheckpointFormatError,
        match="is not a safetensors file, or is truncated or corrupted",
    ):
        load(path, like=variables)
    path.write_bytes(good[:8] + b"[" + good[9:])
    with pytest.raises(errors.CheckpointFormatError, match="is not a safetensors file"):
        load(path, like=variables)
    with pytest.raises(errors.CheckpointFormatError, match="'README.md' is not a safetensors file"):
        load("README.md", like=variables)
    with pytest.raises(errors.CheckpointFormatError, match="does not exist"):
        load(tmp_path / "nothing.safetensors", like=variables)
    with pytest.raises(errors.CheckpointFormatError, match="not an Orbax checkpoint"):
        load(tmp_path, like=variables)
    assert_identical(variables, before)  # the target is never written


def test_permissions_umask_and_overwrite(tmp_path):
    tree = {"w": np.ones((2, 3), np.float32)}
    old = os.umask(0o027)
    try:
        save(tmp_path / "new.safetensors", tree)
        assert os.stat(tmp_path / "new.safetensors").st_mode & 0o777 == 0o640
        os.chmod(tmp_path / "new.safetensors", 0o604)
        save(tmp_path / "new.safetensors", tree)
        assert os.stat(tmp_path / "new.safetensors").st_mode & 0o777 == 0o604
    finally:
        os.umask(old)
    os.symlink("new.safetensors", tmp_path / "link.safetensors")
    save(tmp_path / "link.safetensors", {"w": np.zeros((2, 3), np.float32)})
    assert os.path.islink(tmp_path / "link.safetensors")
    assert_identical(
        load(tmp_path / "new.safetensors", like=tree), {"w": np.zeros((2, 3), np.float32)}
    )
    assert sorted(os.listdir(tmp_path)) == ["link.safetensors", "new.safetensors"]
    with pytest.raises(errors.OutputFileError, match="folder .* which does not exist"):
        save(tmp_path / "no" / "m.safetensors", tree)


@pytest.mark.parametrize("name", ["rel_orbax", "rel.safetensors"])
def test_a_relative_path_saves_and_loads(tmp_path, monkeypatch, name):
    # Orbax reads a relative path as "no checkpoint": ours hands it an absolute one.
    monkeypatch.chdir(tmp_path)
    params = {"w": np.arange(12, dtype=np.float32).reshape(3, 2, 2)}
    save(name, params, stacks=[Stack("")])
    got = load(name, like=params)
    assert np.array_equal(got["w"], params["w"])
