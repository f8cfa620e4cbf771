"""``models.generate`` against ``transformers``' ``generate`` (PyTorch eager), CPU, round-robin in one process.

Same weights, same dtype, same prompts, same greedy tokens (checked). For each model:

- decode tokens/s at batch 1 and 4 (prompt 16): ours from ``generate_with_details``
  (``decode_s``, the steps after the prefill); theirs as ``B * (N - 1) / (t(N) - t(1))``
  of ``generate(max_new_tokens=N)`` and ``generate(max_new_tokens=1)``, best of 1 and
  2 torch threads;
- our scanned decoding against our unrolled (``scan_layers=False``) decoding;
- prefill B=4, T=128: our prefill (``prefill_s`` of a 1-token generation) against
  ``model(ids, logits_to_keep=1)``;
- sampling (temperature 0.8, top-k 40, top-p 0.95) against greedy, ours;
- a ragged batch of 4 prompts (lengths 16, 12, 9, 5) against the 4 one by one, ours;
- first-call compile time (``compile_s``) of the prefill and step programs;
- for the 1.1B model, batch-1 decoding as a fraction of the memory bandwidth: bytes
  of params read per token times tokens/s, against a NumPy copy of 1 GiB measured in
  the same run (read + write bytes per second, as STREAM counts a copy).

Models (random weights, normal(0, 0.1), saved once into /tmp/cl-models/ by
``transformers``): the 12-layer width-256 GPT-2 and Llama of ``models_vs_torch.py``;
GPT-2 small (124M, float32); a 135M Llama (SmolLM's shape, tied, float32); a 1.1B
Llama (TinyLlama's shape, a bfloat16 folder in 5 shards, run in bfloat16 by both).

    flock /tmp/cl-heavy.lock .venv/bin/python bench/generate_vs_torch.py [--models a,b]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see models_vs_torch.py

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _timing import machine_info  # noqa: E402
from composed_lifts import models  # noqa: E402

STORE = pathlib.Path("/tmp/cl-models")
PROMPT = 16


def specs():
    return {
        "bench-gpt2": (
            transformers.GPT2Config(
                n_layer=12, n_embd=256, n_head=8, n_positions=512, vocab_size=8192,
                bos_token_id=0, eos_token_id=1,
            ),
            torch.float32, 32,
        ),
        "bench-llama": (
            transformers.LlamaConfig(
                num_hidden_layers=12, hidden_size=256, intermediate_size=704,
                num_attention_heads=8, num_key_value_heads=2, vocab_size=8192,
                max_position_embeddings=512, bos_token_id=0, eos_token_id=1,
            ),
            torch.float32, 32,
        ),
        "gpt2-small": (transformers.GPT2Config(), torch.float32, 24),
        "llama-135m": (
            transformers.LlamaConfig(
                num_hidden_layers=30, hidden_size=576, intermediate_size=1536,
                num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                max_position_embeddings=2048, tie_word_embeddings=True,
                bos_token_id=0, eos_token_id=1,
            ),
            torch.float32, 24,
        ),
        "llama-1.1b": (
            transformers.LlamaConfig(
                num_hidden_layers=22, hidden_size=2048, intermediate_size=5632,
                num_attention_heads=32, num_key_value_heads=4, vocab_size=32000,
                max_position_embeddings=2048, bos_token_id=1, eos_token_id=2,
            ),
            torch.bfloat16, 8,
        ),
    }  # fmt: skip


def folder_for(name: str) -> pathlib.Path:
    config, dtype, _ = specs()[name]
    folder = STORE / name
    if (folder / "config.json").is_file():
        return folder
    torch.manual_seed(0)
    with torch.device("cpu"):
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.1)
    shard = "500MB" if name == "llama-1.1b" else "5GB"
    model.save_pretrained(folder, max_shard_size=shard)
    return folder


def torch_threads(n: int, fn):
    def call():
        torch.set_num_threads(n)
        return fn()

    return call


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bandwidth_copy() -> float:
    a = np.ones(2**28, np.float32)  # 1 GiB
    b = np.empty_like(a)
    best = min(timed(lambda: np.copyto(b, a)) for _ in range(3))
    return 2 * a.nbytes / best


def run_model(name: str, rounds: int, full: bool = True) -> dict:
    """Every measurement of the module docstring; ``full=False``: decoding (ours, torch) only."""
    config, dtype, new = specs()[name]
    folder = folder_for(name)
    reference = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
    reference.generation_config.eos_token_id = None
    model, params = models.from_hf(folder, dtype=None)
    unrolled, unrolled_params = models.from_hf(folder, dtype=None, scan_layers=False)
    vocab = model.config.vocab_size
    rng = np.random.default_rng(0)
    prompts = {b: rng.integers(2, vocab, (b, PROMPT)) for b in (1, 4)}
    ragged = [rng.integers(2, vocab, n).tolist() for n in (16, 12, 9, 5)]
    long = rng.integers(2, vocab, (4, 128))

    def ours(m, p, ids, n, **kw):
        return models.generate_with_details(m, p, ids, n, eos_token_id=None, **kw)

    def theirs(ids, n):
        with torch.no_grad():
            return reference.generate(
                torch.as_tensor(ids), attention_mask=torch.ones(ids.shape, dtype=torch.long),
                do_sample=False, max_new_tokens=n, min_new_tokens=n, pad_token_id=0,
            ).numpy()[:, ids.shape[1]:]  # fmt: skip

    def their_prefill():
        with torch.no_grad():
            return reference(torch.as_tensor(long), logits_to_keep=1).logits

    agreement, compile_s = {}, {}
    for b, ids in prompts.items():
        first = ours(model, params, ids, new)
        compile_s[f"decode_b{b}"] = first.compile_s
        agreement[f"tokens_equal_b{b}"] = bool((first.tokens == theirs(ids, new)).all())
        if full:
            agreement[f"unrolled_equal_b{b}"] = bool(
                (ours(unrolled, unrolled_params, ids, new).tokens == first.tokens).all()
            )
    sample = dict(temperature=0.8, top_k=40, top_p=0.95, seed=0)
    if full:
        compile_s["sampling_b4"] = ours(model, params, prompts[4], new, **sample).compile_s
        compile_s["ragged"] = ours(model, params, ragged, new).compile_s
        for r in ragged:
            ours(model, params, [r], new)
        compile_s["prefill_b4_t128"] = ours(model, params, long, 1).compile_s
        their_prefill()

    samples: dict[str, list[float]] = {}

    def add(key, value):
        samples.setdefault(key, []).append(value)

    for _ in range(rounds):
        for b, ids in prompts.items():
            add(f"ours_decode_b{b}", ours(model, params, ids, new).decode_tokens_per_s)
            if full:
                rate = ours(unrolled, unrolled_params, ids, new).decode_tokens_per_s
                add(f"ours_unrolled_decode_b{b}", rate)
            for t in (1, 2):
                torch.set_num_threads(t)
                whole = timed(lambda ids=ids: theirs(ids, new))
                one = timed(lambda ids=ids: theirs(ids, 1))
                add(f"torch_{t}t_decode_b{b}", b * (new - 1) / max(whole - one, 1e-9))
        if not full:
            continue
        add("ours_sampling_b4", ours(model, params, prompts[4], new, **sample).decode_tokens_per_s)
        ragged_run = ours(model, params, ragged, new)
        add("ours_ragged_b4_s", ragged_run.prefill_s + ragged_run.decode_s)
        one_by_one = [ours(model, params, [r], new) for r in ragged]
        add("ours_one_by_one_s", sum(g.prefill_s + g.decode_s for g in one_by_one))
        add("ours_prefill_b4_t128_s", ours(model, params, long, 1).prefill_s)
        for t in (1, 2):
            torch.set_num_threads(t)
            add(f"torch_{t}t_prefill_b4_t128_s", timed(their_prefill))
    med = {k: float(np.median(v)) for k, v in samples.items()}
    out: dict = {"agreement": agreement, "compile_s": compile_s, "median": med}
    ratios = {}
    for b in (1, 4):
        best_torch = max(med[f"torch_{t}t_decode_b{b}"] for t in (1, 2))
        ratios[f"decode_b{b}_vs_torch"] = med[f"ours_decode_b{b}"] / best_torch
        if full:
            ratios[f"decode_b{b}_scanned_vs_unrolled"] = (
                med[f"ours_decode_b{b}"] / med[f"ours_unrolled_decode_b{b}"]
            )
    out["ratios"] = ratios
    if not full:
        return _sizes(out, params, new)
    best_prefill = min(med[f"torch_{t}t_prefill_b4_t128_s"] for t in (1, 2))
    ratios["prefill_time_vs_torch"] = med["ours_prefill_b4_t128_s"] / best_prefill
    ratios["sampling_vs_greedy_tokens_per_s"] = med["ours_sampling_b4"] / med["ours_decode_b4"]
    ratios["ragged_b4_speedup_vs_one_by_one"] = med["ours_one_by_one_s"] / med["ours_ragged_b4_s"]
    return _sizes(out, params, new)


def _sizes(out: dict, params, new: int) -> dict:
    leaves = jax.tree_util.tree_leaves(params)
    out["param_bytes"] = int(sum(x.size * x.dtype.itemsize for x in leaves))
    out["dtype"] = str(leaves[0].dtype)
    out["new_tokens"] = new
    return out


def markdown(results: dict) -> str:
    lines = [
        f"# models.generate vs transformers generate ({results['machine']['date']})",
        "",
        f"Machine: {results['machine']['cpu']}, {results['machine']['nproc']} cores; "
        f"NumPy copy bandwidth in this run: {results['copy_gb_s']:.1f} GB/s (read + write).",
        "",
        "| model | dtype | decode B=1 (ours / torch) | decode B=4 | scanned / unrolled B=1, B=4 "
        "| prefill B=4 T=128 time (ours / torch) | sampling / greedy | ragged 4 vs 1-by-1 "
        "| compile s (decode B=1) | tokens equal |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["models"].items():
        m, q = r["median"], r["ratios"]

        def x(key, q=q):
            return f"{q[key]:.2f}x" if key in q else "not run"

        lines.append(
            f"| {name} | {r['dtype']} "
            f"| {m['ours_decode_b1']:.1f} tok/s ({x('decode_b1_vs_torch')}) "
            f"| {m['ours_decode_b4']:.1f} tok/s ({x('decode_b4_vs_torch')}) "
            f"| {x('decode_b1_scanned_vs_unrolled')}, {x('decode_b4_scanned_vs_unrolled')} "
            f"| {x('prefill_time_vs_torch')} "
            f"| {x('sampling_vs_greedy_tokens_per_s')} "
            f"| {x('ragged_b4_speedup_vs_one_by_one')} "
            f"| {r['compile_s']['decode_b1']:.1f} "
            f"| {all(r['agreement'].values())} |"
        )
        if "bandwidth_fraction_b1" in r:
            lines.append(
                f"| {name}: batch-1 decode reads {r['param_bytes'] / 1e9:.2f} GB of params per "
                f"token: {r['bandwidth_fraction_b1']:.0%} of the copy bandwidth |||||||||"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="bench-gpt2,bench-llama,gpt2-small,llama-135m")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(HERE / "results" / "generate_vs_torch"))
    args = parser.parse_args()
    out_path = pathlib.Path(args.out)
    results = {"machine": machine_info(), "models": {}}
    if out_path.with_suffix(".json").is_file():  # runs of other models are kept
        results["models"] = json.loads(out_path.with_suffix(".json").read_text())["models"]
    results["copy_gb_s"] = bandwidth_copy() / 1e9
    for name in args.models.split(","):
        big = name in ("llama-1.1b",)
        r = run_model(name, 1 if big else args.rounds, full=not big)
        if name == "llama-1.1b":
            per_s = r["median"]["ours_decode_b1"] * r["param_bytes"]
            r["bandwidth_fraction_b1"] = per_s / (results["copy_gb_s"] * 1e9)
        results["models"][name] = r
        print(name, json.dumps(r["ratios"]), r["agreement"], flush=True)
        out_path.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
        out_path.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
