"""GPT-2 and Llama from Hugging Face folders: logits equal transformers', to_hf round trips.

Reference: ``transformers``' own PyTorch model on the same folder, float32 on CPU.
Tolerance: ``rtol=1e-5`` with ``atol`` 1e-5 of the largest |logit| (float32 sums
in a different order); the round trip of weights is bitwise.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from composed_lifts import models, stack_params
from hf_models import (
    SPECS,
    assert_logits_close,
    load_reference,
    logits_of,
    make_model,
    random_ids,
    reference_logits,
)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    out = {}
    for name in SPECS:
        folder = tmp_path_factory.mktemp(name)
        out[name] = (folder, make_model(name, folder))
    return out


@pytest.mark.parametrize("scan", [True, False], ids=["scanned", "unrolled"])
@pytest.mark.parametrize("name", list(SPECS))
def test_logits_equal_transformers(folders, name, scan):
    folder, reference = folders[name]
    model, params = models.from_hf(folder, scan_layers=scan, dtype=jnp.float32)
    layers = {k for k in params if k.startswith("layers")}
    n = model.config.num_layers
    assert layers == ({"layers"} if scan else {f"layers_{i}" for i in range(n)})
    ids = random_ids(1, (3, 13))
    assert_logits_close(np.asarray(logits_of(model, params, ids)), reference_logits(reference, ids))


def test_scanned_params_are_the_unrolled_ones_stacked(folders):
    folder, _ = folders["llama-gqa"]
    _, scanned = models.from_hf(folder)
    _, unrolled = models.from_hf(folder, scan_layers=False)
    layers = {k: v for k, v in unrolled.items() if k.startswith("layers_")}
    want = {
        **{k: v for k, v in unrolled.items() if k not in layers},
        "layers": stack_params(layers),
    }
    assert jax.tree_util.tree_structure(scanned) == jax.tree_util.tree_structure(want)
    for got, expected in zip(jax.tree_util.tree_leaves(scanned), jax.tree_util.tree_leaves(want)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))


def test_bfloat16_folder_loads_as_bfloat16_by_default_and_as_asked(folders):
    folder, reference = folders["llama-tied-bf16-sharded"]
    assert (folder / "model.safetensors.index.json").is_file()
    model, params = models.from_hf(folder)
    assert {leaf.dtype.name for leaf in jax.tree_util.tree_leaves(params)} == {"bfloat16"}
    ours = np.asarray(params["embed_tokens"]["embedding"].astype("float32"))
    np.testing.assert_array_equal(ours, reference.model.embed_tokens.weight.detach().numpy())
    _, wide = models.from_hf(folder, dtype=jnp.float32)
    assert {leaf.dtype.name for leaf in jax.tree_util.tree_leaves(wide)} == {"float32"}
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(wide)):
        np.testing.assert_array_equal(np.asarray(a).astype(np.float32), np.asarray(b))


@pytest.mark.parametrize("scan", [True, False], ids=["scanned", "unrolled"])
@pytest.mark.parametrize("name", ["gpt2", "llama-gqa"])
def test_to_hf_round_trips_bitwise(folders, tmp_path, name, scan):
    folder, reference = folders[name]
    model, params = models.from_hf(folder, scan_layers=scan)
    models.to_hf(params, model.config, tmp_path)
    reloaded = load_reference(tmp_path)
    want, got = reference.state_dict(), reloaded.state_dict()
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key].dtype == want[key].dtype == torch.float32
        assert torch.equal(got[key], want[key]), key
    assert models.from_hf(tmp_path, scan_layers=scan)[0] == model
    ids = random_ids(2, (2, 9))
    assert_logits_close(np.asarray(logits_of(model, params, ids)), reference_logits(reloaded, ids))


def test_to_hf_bfloat16_rewrites_the_sharded_file_bit_for_bit(folders, tmp_path):
    from safetensors.numpy import load_file

    folder, _ = folders["gpt2-bf16-sharded"]
    model, params = models.from_hf(folder, dtype=jnp.float32)  # float32 in memory
    models.to_hf(params, model.config, tmp_path, dtype="bfloat16")
    written = load_file(tmp_path / "model.safetensors")
    original = {}
    for shard in sorted(folder.glob("model-*.safetensors")):
        original.update(load_file(shard))
    assert sorted(written) == sorted(original)
    for key, array in original.items():
        assert written[key].dtype == array.dtype and written[key].tobytes() == array.tobytes(), key


def test_nnx_llama_logits_equal_transformers(folders):
    from flax import nnx

    folder, reference = folders["llama-gqa"]
    model, params = models.from_hf(folder)
    nnx_model = models.nnx_llama(model.config, params)
    layers = nnx.to_pure_dict(nnx.state(nnx_model.layers.layers, nnx.Param))
    assert jax.tree_util.tree_structure(layers) == jax.tree_util.tree_structure(params["layers"])
    ids = random_ids(5, (2, 11))
    logits = nnx.jit(lambda m, x: m(x))(nnx_model, ids)
    assert_logits_close(np.asarray(logits), reference_logits(reference, ids))


def test_nnx_llama_refuses_unrolled_params(folders):
    from composed_lifts.errors import LayoutMismatchError

    model, params = models.from_hf(folders["llama-gqa"][0], scan_layers=False)
    with pytest.raises(LayoutMismatchError, match="layers_0"):
        models.nnx_llama(model.config, params)
