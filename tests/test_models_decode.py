"""Greedy decoding with our per-layer KV cache gives exactly transformers' greedy tokens."""

import numpy as np
import pytest

from composed_lifts import models
from composed_lifts.errors import ArgumentRangeError, InputShapeError
from hf_models import make_model, random_ids, reference_generate

NEW_TOKENS = 16


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    out = {}
    for name in ("gpt2", "llama-gqa"):
        folder = tmp_path_factory.mktemp(name)
        out[name] = (folder, make_model(name, folder))
    return out


@pytest.mark.parametrize("scan", [True, False], ids=["scanned", "unrolled"])
@pytest.mark.parametrize("name", ["gpt2", "llama-gqa"])
def test_greedy_tokens_equal_transformers(folders, name, scan):
    folder, reference = folders[name]
    model, params = models.from_hf(folder, scan_layers=scan)
    prompt = random_ids(3, (2, 5))
    want = reference_generate(reference, prompt, NEW_TOKENS)
    reference.generation_config.eos_token_id = None  # the same run without stopping at eos
    try:
        want_all = reference_generate(reference, prompt, NEW_TOKENS)
    finally:
        reference.generation_config.eos_token_id = model.config.eos_token_id
    free = models.generate(model, params, prompt, NEW_TOKENS, eos_token_id=None)
    np.testing.assert_array_equal(free, want_all)
    eos = model.config.eos_token_id
    ours = models.generate(model, params, prompt, NEW_TOKENS)  # the config's eos by default
    np.testing.assert_array_equal(ours[:, : want.shape[1]], want)
    assert (ours[:, want.shape[1] :] == eos).all()  # transformers stops when all are done


def test_eos_pads_finished_sequences(folders):
    folder, reference = folders["llama-gqa"]
    model, params = models.from_hf(folder)
    prompt = random_ids(4, (2, 3))
    free = models.generate(model, params, prompt, 8, eos_token_id=None)
    eos = int(free[0, 2])  # pretend the first sequence's third token is eos
    stopped = models.generate(model, params, prompt, 8, eos_token_id=eos, pad_token_id=7)
    want = free.copy()
    for row in want:  # everything after the first eos becomes pad
        hits = np.flatnonzero(row == eos)
        if hits.size:
            row[hits[0] + 1 :] = 7
    assert (want == 7).any()
    np.testing.assert_array_equal(stopped, want)


def test_cache_is_stacked_on_the_layer_axis(folders):
    folder, _ = folders["llama-gqa"]
    model, _ = models.from_hf(folder)
    c = model.config
    cache = models.init_cache(model, batch=3, max_len=10)
    kv = (3, c.num_layers, 10, c.num_key_value_heads, c.head_dim)
    assert isinstance(cache, models.KVCache)
    assert (cache.key.shape, cache.value.shape) == (kv, kv)


def test_generate_refuses_bad_prompts(folders):
    folder, _ = folders["gpt2"]
    model, params = models.from_hf(folder)
    with pytest.raises(InputShapeError, match="prompt_ids"):
        models.generate(model, params, [1, 2, 3], 4)
    with pytest.raises(ArgumentRangeError, match="vocab_size=96"):
        models.generate(model, params, [[1, 96]], 4)
    with pytest.raises(
        ArgumentRangeError, match=r"max_new_tokens must be <= \d+ \(the model's 64 positions"
    ):
        models.generate(model, params, [[1, 2]], 63)
