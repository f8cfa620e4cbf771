"""Generation as transformers does it: cache in place, ragged prompts, dtypes, sampling, stopping."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
import torch
import transformers

from composed_lifts import models
from composed_lifts.errors import ArgumentRangeError, ArgumentTypeError, InputFileError
from composed_lifts.models import _decode
from composed_lifts.models._sampling import (
    Sampling,
    candidates,
    choose_tokens,
    next_tokens,
    process_scores,
    sampling_from,
)
from hf_models import VOCAB, load_reference, make_model, make_tokenizer

ROWS = [[5, 17, 3], [8, 8, 2, 91, 4, 6], [1, 2, 3, 4, 5]]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    out = {}
    for name in ("gpt2", "llama-gqa", "llama-tied-bf16-sharded"):
        folder = tmp_path_factory.mktemp(name)
        out[name] = (folder, make_model(name, folder))
    return out


def left_padded(rows, pad=0):
    length = max(map(len, rows))
    ids = np.array([[pad] * (length - len(r)) + r for r in rows])
    mask = np.array([[0] * (length - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def hf_generate(reference, rows, new_tokens, **kwargs):
    ids, mask = left_padded(rows)
    with torch.no_grad():
        out = reference.generate(
            torch.as_tensor(ids),
            attention_mask=torch.as_tensor(mask),
            max_new_tokens=new_tokens,
            pad_token_id=0,
            **kwargs,
        )
    return out.numpy()[:, ids.shape[1] :]


def test_a_step_writes_the_cache_in_place_and_donates_it(folders):
    folder, _ = folders["llama-gqa"]
    model, params = models.from_hf(folder)
    ids, mask = jnp.ones((2, 5), jnp.int32), jnp.ones((2, 5), bool)
    state, full = _decode._prefill(model, Sampling(), 12, params, ids, mask, 0)
    eos = jnp.asarray([VOCAB - 1], jnp.int32)
    args = (model, Sampling(), params, state, jnp.int32(5), full, eos, 0)
    text = _decode._step.lower(*args).compile().as_text()
    shape = f"f32[2,{model.config.num_layers},12,2,8]"
    lines = [line.split("=", 1)[1] for line in text.splitlines() if shape in line and " = " in line]
    ops = {line.split("(")[0].split()[-1] for line in lines if line.strip().startswith(shape)}
    assert "copy" not in ops and "dynamic-update-slice" in ops, ops  # written in place
    assert "while" in text  # through the layer scan's carry
    assert "input_output_alias" in text  # the state's buffers are reused
    new = _decode._step(*args)
    assert state.cache.key.is_deleted() and not new.cache.key.is_deleted()  # donated


@pytest.mark.parametrize("name", ["gpt2", "llama-gqa"])
def test_ragged_rows_equal_transformers_and_each_row_alone(folders, name):
    folder, reference = folders[name]
    model, params = models.from_hf(folder)
    reference.generation_config.eos_token_id = None
    try:
        want = hf_generate(reference, ROWS, 8, do_sample=False)
    finally:
        reference.generation_config.eos_token_id = model.config.eos_token_id
    got = models.generate(model, params, ROWS, 8, eos_token_id=None)
    np.testing.assert_array_equal(got, want)
    ids, mask = left_padded(ROWS, pad=7)  # the pad id does not matter
    same = models.generate(model, params, ids, 8, attention_mask=mask, eos_token_id=None)
    np.testing.assert_array_equal(same, want)
    alone = models.generate(model, params, [ROWS[0]], 8, eos_token_id=None)
    np.testing.assert_array_equal(alone[0], want[0])


def test_bfloat16_end_to_end_equals_transformers_bfloat16(folders):
    folder, _ = folders["llama-tied-bf16-sharded"]
    model, params = models.from_hf(folder, dtype=None)  # the folder's own dtype
    assert {p.dtype for p in jax.tree_util.tree_leaves(params)} == {jnp.dtype("bfloat16")}
    reference = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)
    reference.generation_config.eos_token_id = None
    ids, mask = left_padded(ROWS)
    with torch.no_grad():
        out = reference.generate(
            torch.as_tensor(ids),
            attention_mask=torch.as_tensor(mask),
            max_new_tokens=8,
            pad_token_id=0,
            do_sample=False,
            output_scores=True,
            return_dict_in_generate=True,
        )
    want = out.sequences.numpy()[:, ids.shape[1] :]
    got = np.asarray(models.generate(model, params, ROWS, 8, eos_token_id=None))
    # bfloat16 logits often tie: where transformers' best two scores are within one bfloat16
    # step of each other, either token is a right answer, and the rows part ways from there.
    scores = np.stack([s.float().numpy() for s in out.scores], axis=1)  # (B, steps, V)
    top2 = np.sort(scores, axis=-1)[..., -2:]
    ulp = np.abs(top2[..., 1]) * 2.0**-7
    compared = 0
    for row in range(len(ROWS)):
        ties = np.flatnonzero(top2[row, :, 1] - top2[row, :, 0] <= ulp[row])
        upto = int(ties[0]) if ties.size else want.shape[1]
        np.testing.assert_array_equal(got[row, :upto], want[row, :upto], err_msg=f"row {row}")
        compared += upto
    assert compared >= want.size // 2, (compared, want.size)  # most steps are not ties
    f32 = models.generate_with_details(model, params, [[1, 2]], 2, dtype="float32")
    assert f32.tokens.shape == (1, 2)


def hf_processors(reference, config: transformers.GenerationConfig, length: int):
    return reference._get_logits_processor(
        generation_config=config, input_ids_seq_length=length, device="cpu"
    )


@pytest.mark.parametrize(
    "settings",
    [
        dict(do_sample=True, temperature=0.7, top_k=20, top_p=0.9, min_p=0.02,
             repetition_penalty=1.3),
        dict(do_sample=True, temperature=1.5, top_k=0, top_p=0.5),
        dict(do_sample=False, repetition_penalty=0.8),
    ],
    ids=["all", "temperature-top-p", "greedy-penalty"],
)  # fmt: skip
def test_processed_scores_equal_transformers_processors(folders, settings):
    _, reference = folders["llama-gqa"]
    config = transformers.GenerationConfig(**settings)
    processors = hf_processors(reference, config, 4)
    sampling = sampling_from({}, **settings)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, VOCAB, (3, 4))
    for _ in range(4):  # the sequences grow as they would while decoding
        scores = rng.standard_normal((3, VOCAB)).astype(np.float32) * 3
        want = processors(torch.as_tensor(ids), torch.as_tensor(scores)).numpy()
        seen = np.zeros((3, VOCAB), bool)
        np.put_along_axis(seen, ids, True, axis=1)
        got = np.asarray(process_scores(sampling, jnp.asarray(scores), jnp.asarray(seen)))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
        finite = np.isfinite(want)
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-5, atol=1e-6)
        ids = np.concatenate([ids, rng.integers(0, VOCAB, (3, 1))], axis=1)


def test_sampled_frequencies_match_the_processed_distribution():
    sampling = Sampling(do_sample=True, temperature=0.8, top_k=5, top_p=0.95)
    logits = jnp.asarray([[2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, 3.0]])
    scores = process_scores(sampling, logits, None)
    probs = np.asarray(jax.nn.softmax(scores[0]))
    draws = 20000
    rows = jnp.broadcast_to(scores, (draws, 8))
    tokens = np.asarray(choose_tokens(sampling, rows, jax.random.PRNGKey(3)))
    counts = np.bincount(tokens, minlength=8)
    kept = probs > 0
    assert (counts[~kept] == 0).all()  # removed tokens are never drawn
    chi2 = scipy.stats.chisquare(counts[kept], draws * probs[kept] / probs[kept].sum())
    assert chi2.pvalue > 0.001, (counts, probs)


def test_same_seed_same_tokens(folders):
    folder, _ = folders["gpt2"]
    model, params = models.from_hf(folder)
    run = lambda seed: models.generate(  # noqa: E731
        model, params, [[1, 2, 3]] * 2, 12, temperature=1.0, top_k=0, seed=seed, eos_token_id=None
    )
    first, again, other = run(5), run(5), run(6)
    np.testing.assert_array_equal(first, again)
    assert (first != other).any()


def test_eos_ids_of_generation_config_json_stop_rows_as_in_transformers(folders, tmp_path):
    source, _ = folders["llama-gqa"]
    folder = tmp_path / "llama"
    shutil.copytree(source, folder)
    model, params = models.from_hf(folder)
    free = models.generate(model, params, ROWS, 10, eos_token_id=None)
    eos = [int(free[0, 3]), int(free[1, 1])]  # two ids that occur early
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": eos}))
    model, params = models.from_hf(folder)
    assert model.config.eos_token_id == tuple(eos)
    result = models.generate_with_details(model, params, ROWS, 10)  # the config's ids: default
    padded = models.generate(model, params, ROWS, 10, pad_token_id=0)
    reference = load_reference(folder)
    want = hf_generate(reference, ROWS, 10, do_sample=False)
    np.testing.assert_array_equal(padded[:, : want.shape[1]], want)
    assert result.stop_reasons[:2] == ["eos", "eos"]
    assert result.new_ids[0] == free[0, :4].tolist()
    assert (result.tokens[0, 4:] == eos[0]).all()  # finished rows emit pad (the first eos)


def test_bad_sampling_arguments_name_the_argument(folders):
    folder, _ = folders["gpt2"]
    model, params = models.from_hf(folder)
    cases = [
        (dict(temperature=-0.5), ArgumentRangeError, "temperature must be in"),
        (dict(top_p=0.0), ArgumentRangeError, r"top_p must be in \(0.0, 1.0\]"),
        (dict(top_p=1.5), ArgumentRangeError, "top_p"),
        (dict(top_k=-1), ArgumentRangeError, "top_k must be >= 0"),
        (dict(seed=2**32), ValueError, "seed"),
        (dict(stop=["x"]), ArgumentTypeError, "stop must be used with a tokenizer"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            models.generate(model, params, [[1, 2]], 2, **kwargs)
    with pytest.raises(ArgumentTypeError, match="--top-k"):
        sampling_from({}, {"top_k": "--top-k"}, top_k="3")


def test_tokenizer_equals_transformers(tmp_path):
    make_tokenizer(tmp_path)
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path)
    ours = models.Tokenizer.from_folder(tmp_path)
    for text in ["hello there, the fox", "ça va? général", "zzz ###", ""]:
        ids = theirs(text)["input_ids"]
        assert ours.encode(text) == ids
        assert ours.decode(ids) == theirs.decode(ids)
        assert ours.decode(ids, skip_special_tokens=True) == theirs.decode(
            ids, skip_special_tokens=True
        )
    messages = [
        {"role": "system", "content": "be bold"},
        {"role": "user", "content": "hello there"},
    ]
    for prompt in (True, False):
        want = theirs.apply_chat_template(messages, add_generation_prompt=prompt, tokenize=False)
        assert ours.render_chat(messages, add_generation_prompt=prompt) == want
        want_ids = theirs.apply_chat_template(messages, add_generation_prompt=prompt)
        assert ours.apply_chat_template(messages, add_generation_prompt=prompt) == list(
            want_ids["input_ids"]
        )


def test_tokenizer_files_are_named(tmp_path):
    with pytest.raises(InputFileError, match="has no tokenizer.json"):
        models.Tokenizer.from_folder(tmp_path)
    make_tokenizer(tmp_path, chat_template=False)
    with pytest.raises(InputFileError, match="has no chat template"):
        models.Tokenizer.from_folder(tmp_path).render_chat([{"role": "user", "content": "x"}])


@pytest.mark.parametrize("top_p, min_p", [(1.0, None), (0.8, None), (0.9, 0.05)])
def test_top_k_candidates_are_the_processed_scores(top_p, min_p):
    sampling = Sampling(do_sample=True, temperature=0.7, top_k=12, top_p=top_p, min_p=min_p,
                        repetition_penalty=1.2)  # fmt: skip
    rng = np.random.default_rng(1)
    scores = jnp.asarray(rng.standard_normal((3, VOCAB)).astype(np.float32) * 3)
    seen = jnp.asarray(rng.random((3, VOCAB)) < 0.2)
    want = np.asarray(process_scores(sampling, scores, seen))
    values, ids = candidates(sampling, scores, seen)
    got = np.full(want.shape, -np.inf, np.float32)
    np.put_along_axis(got, np.asarray(ids), np.asarray(values), axis=1)
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    np.testing.assert_allclose(got[np.isfinite(want)], want[np.isfinite(want)], rtol=1e-6)
    draws = 4000  # and the draws follow the processed distribution
    picked = np.asarray(next_tokens(sampling, jnp.broadcast_to(scores[:1], (draws, VOCAB)),
                                    jnp.broadcast_to(seen[:1], (draws, VOCAB)),
                                    jax.random.PRNGKey(0)))  # fmt: skip
    probs = np.asarray(jax.nn.softmax(jnp.asarray(want[0]))).astype(np.float64)
    kept = probs > 0
    counts = np.bincount(picked, minlength=VOCAB)
    assert (counts[~kept] == 0).all()
    expected = draws * probs[kept] / probs[kept].sum()
    assert scipy.stats.chisquare(counts[kept], expected).pvalue > 0.001
