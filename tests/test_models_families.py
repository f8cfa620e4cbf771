"""Mistral, Qwen2, Qwen3, Gemma, Gemma 2 and Gemma 3 text against transformers, in float32.

Reference: ``transformers``' own PyTorch model of each tiny random folder
(``hf_models.FAMILY_SPECS``: windows of 4-6 tokens, odd head dims, small soft-caps).
Logits to ``rtol=1e-5`` (``atol`` 1e-5 of the largest |logit|), scanned and unrolled;
16 greedy tokens from a 5-token prompt, past every window, and from ragged
(left-padded) prompts, equal to transformers' on the same padded batch; ``to_hf`` then
``from_pretrained`` gives bitwise the same weights.
"""

import dataclasses
import functools

import jax
import numpy as np
import pytest
import torch

from composed_lifts import models
from hf_models import (
    FAMILY_SPECS,
    SPECS,
    assert_logits_close,
    load_reference,
    logits_of,
    make_model,
    random_ids,
    reference_generate,
    reference_logits,
)

NAMES = list(FAMILY_SPECS)
NEW_TOKENS = 16
CLASSES = {
    "mistral": models.Mistral,
    "qwen2": models.Qwen2,
    "qwen3": models.Qwen3,
    "gemma": models.Gemma,
    "gemma2": models.Gemma2,
    "gemma3": models.Gemma3,
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    out = {}
    for name in NAMES:
        folder = tmp_path_factory.mktemp(name)
        out[name] = (folder, make_model(name, folder))
    return out


@functools.cache
def _loaded(folder, scan):
    return models.from_hf(folder, scan_layers=scan)


def loaded(folders, name, scan=True):
    return _loaded(folders[name][0], scan)


@pytest.mark.parametrize("scan", [True, False], ids=["scanned", "unrolled"])
@pytest.mark.parametrize("name", NAMES)
def test_logits_equal_transformers(folders, name, scan):
    model, params = loaded(folders, name, scan)
    assert type(model) is CLASSES[name]
    n = model.config.num_layers
    layers = {k for k in params if k.startswith("layers")}
    assert layers == ({"layers"} if scan else {f"layers_{i}" for i in range(n)})
    ids = random_ids(1, (2, 13))  # longer than every window
    assert_logits_close(
        np.asarray(logits_of(model, params, ids)), reference_logits(folders[name][1], ids)
    )


@pytest.mark.parametrize("name", ["mistral", "gemma2", "gemma3"])
def test_the_window_and_the_kinds_matter(folders, name):
    """Without its windows (every layer global, one rope base), the model differs from
    transformers': the tests above would see a window or a rope base ignored."""
    model, params = loaded(folders, name)
    c = model.config
    plain = (
        dataclasses.replace(c, sliding_window=None, layer_types=("full_attention",) * c.num_layers)
        if hasattr(c, "layer_types")
        else dataclasses.replace(c, sliding_window=None)
    )
    assert all(k.window is None for k in plain.layer_kinds())
    ids = random_ids(1, (2, 13))
    ours = np.asarray(logits_of(type(model)(plain), params, ids))
    ref = reference_logits(folders[name][1], ids)
    assert np.abs(ours - ref).max() > 1e-3 * np.abs(ref).max()


def test_mixed_layers_are_one_scan(folders):
    """Gemma 3's sliding and global layers (different windows and rope bases) are one
    ``nn.scan``: their kinds are a per-layer input, so the jaxpr holds one scan."""
    model, params = loaded(folders, "gemma3")
    kinds = model.config.layer_kinds()
    assert len(set(kinds)) == 2 and len(kinds) == 4
    jaxpr = jax.make_jaxpr(lambda p, i: model.apply({"params": p}, i))(
        params, random_ids(0, (1, 3))
    )
    scans = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "scan"]
    assert len(scans) == 1 and scans[0].params["length"] == 4


def _greedy_reference(reference, prompt):
    reference.generation_config.eos_token_id = None  # no stopping: all 16 tokens
    return reference_generate(reference, prompt, NEW_TOKENS)


@pytest.mark.parametrize("name", NAMES)
def test_greedy_tokens_equal_transformers_past_the_window(folders, name):
    model, params = loaded(folders, name)
    windows = [k.window for k in model.config.layer_kinds() if k.window is not None]
    prompt = random_ids(3, (2, 5))
    assert max(windows, default=0) < prompt.shape[1] + NEW_TOKENS  # Gemma has none
    want = _greedy_reference(folders[name][1], prompt)
    assert want.shape == (2, NEW_TOKENS)
    got = models.generate(model, params, prompt, NEW_TOKENS, eos_token_id=None)
    np.testing.assert_array_equal(got, want)


def test_greedy_unrolled_gemma3(folders):
    model, params = loaded(folders, "gemma3", scan=False)
    prompt = random_ids(4, (1, 6))
    want = _greedy_reference(folders["gemma3"][1], prompt)
    got = models.generate(model, params, prompt, NEW_TOKENS, eos_token_id=None)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", NAMES)
def test_ragged_prompts_equal_transformers_past_the_window(folders, name):
    """Left-padded rows (pads masked, per-row positions, windows on the cache's slots)
    give transformers' tokens on the same padded batch, and the short row its tokens alone."""
    model, params = loaded(folders, name)
    reference = folders[name][1]
    long, short = random_ids(5, (1, 7))[0].tolist(), random_ids(6, (1, 2))[0].tolist()
    rows = [long, short]
    ids = np.array([long, [0] * (len(long) - len(short)) + short])
    mask = np.array([[1] * len(long), [0] * (len(long) - len(short)) + [1] * len(short)])
    reference.generation_config.eos_token_id = None
    try:
        with torch.no_grad():
            out = reference.generate(
                torch.as_tensor(ids),
                attention_mask=torch.as_tensor(mask),
                do_sample=False,
                max_new_tokens=NEW_TOKENS,
                pad_token_id=0,
            )
    finally:
        reference.generation_config.eos_token_id = model.config.eos_token_id
    want = out.numpy()[:, ids.shape[1] :]
    np.testing.assert_array_equal(
        models.generate(model, params, rows, NEW_TOKENS, eos_token_id=None), want
    )
    alone = models.generate(model, params, [short], NEW_TOKENS, eos_token_id=None)
    np.testing.assert_array_equal(alone[0], want[1])


@pytest.mark.parametrize("name", NAMES)
def test_to_hf_round_trips_bitwise(folders, tmp_path, name):
    folder, reference = folders[name]
    model, params = loaded(folders, name)
    models.to_hf(params, model.config, tmp_path)
    reloaded = load_reference(tmp_path)
    assert type(reloaded) is type(reference)
    want, got = reference.state_dict(), reloaded.state_dict()
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key].dtype == want[key].dtype == torch.float32
        assert torch.equal(got[key], want[key]), key
    kinds = getattr(reference.config, "layer_types", None)
    assert getattr(reloaded.config, "layer_types", None) == kinds
    assert models.from_hf(tmp_path)[0] == model


def test_unrolled_to_hf_round_trips_bitwise(folders, tmp_path):
    _, reference = folders["gemma2"]
    model, params = loaded(folders, "gemma2", scan=False)
    models.to_hf(params, model.config, tmp_path)
    got, want = load_reference(tmp_path).state_dict(), reference.state_dict()
    assert sorted(got) == sorted(want)
    assert all(torch.equal(got[k], want[k]) for k in want)


@pytest.mark.parametrize("name", NAMES + list(SPECS)[:1] + ["llama-gqa"])
def test_param_count_from_the_config_is_the_models(tmp_path, folders, name):
    """The count the memory check uses (from the config alone) is the model's own."""
    if name in folders:
        config = loaded(folders, name)[0].config
    else:
        config = models.config_from_hf(SPECS[name][0]().to_dict())
    family = models.family_of(config)
    shapes = jax.eval_shape(
        family.model(config).init, jax.random.PRNGKey(0), np.zeros((1, 1), np.int32)
    )
    assert family.param_count(config) == sum(x.size for x in jax.tree_util.tree_leaves(shapes))


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trips_and_names_the_family(folders, name):
    config = loaded(folders, name)[0].config
    family = models.family_of(config)
    hf = models.config_to_hf(config)
    assert models.family_for(hf) is family
    assert hf["architectures"] == [type(folders[name][1]).__name__]
    assert models.config_from_hf(hf) == config
