"""Our GPT-2 and Llama (``composed_lifts.models``) against ``transformers`` in PyTorch eager, CPU.

Same config and weights (a random model saved with ``save_pretrained`` and read
with ``models.from_hf``), timed round-robin in one process:

- prefill: one forward pass to logits, B=4, T=128, 12 layers, width 256;
- greedy decoding: ``models.generate`` (prefill + a ``lax.scan`` of cached steps,
  one ``jax.jit`` program) against ``generate(do_sample=False)``, new tokens per second;
- ``OMP_WAIT_POLICY=PASSIVE`` (see below), so PyTorch's idle threads do not spin;
- PyTorch runs at its default intra-op threads and at one thread (on a loaded 2-core
  machine its OpenMP threads spin and stall: one thread is often several times faster);
  ratios are against the faster of the two;
- compile time (trace + lower + XLA compile) of the scanned and the unrolled forward
  at 12 and 48 layers.

    .venv/bin/python bench/models_vs_torch.py   # writes bench/results/models_vs_torch.{json,md}
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# PyTorch's OpenMP threads busy-wait after each op by default; in one process with XLA
# they spin on the cores XLA's threads need (seen: our prefill 112 ms beside them, 65 ms
# alone). With passive waiting PyTorch's own best times were also faster in our runs.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _timing import machine_info, round_robin, summarize  # noqa: E402
from composed_lifts import models  # noqa: E402

B, T, D, LAYERS, VOCAB, NEW = 4, 128, 256, 12, 8192, 32
DEFAULT_THREADS = torch.get_num_threads()
PROMPT = 16  # decoding: a short prompt, so the steps dominate


def hf_config(arch: str, layers: int):
    if arch == "gpt2":
        return transformers.GPT2Config(
            n_layer=layers,
            n_embd=D,
            n_head=8,
            n_positions=512,
            vocab_size=VOCAB,
            bos_token_id=0,
            eos_token_id=1,
        )
    return transformers.LlamaConfig(
        num_hidden_layers=layers,
        hidden_size=D,
        intermediate_size=704,
        num_attention_heads=8,
        num_key_value_heads=2,
        vocab_size=VOCAB,
        max_position_embeddings=512,
        bos_token_id=0,
        eos_token_id=1,
    )


def build(arch: str, folder: pathlib.Path):
    torch.manual_seed(0)
    reference = transformers.AutoModelForCausalLM.from_config(hf_config(arch, LAYERS)).eval()
    reference.save_pretrained(folder)
    reference.generation_config.eos_token_id = None  # decode exactly NEW tokens
    model, params = models.from_hf(folder)
    return reference, model, params


def run_pair(arch: str, rounds: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        reference, model, params = build(arch, pathlib.Path(tmp))
    ids = np.random.default_rng(0).integers(2, VOCAB, (B, T))
    prompt = ids[:, :PROMPT]
    forward = jax.jit(lambda p, x: model.apply({"params": p}, x))
    ours_ids = jnp.asarray(ids)
    torch_ids = torch.as_tensor(ids)
    torch_prompt = torch.as_tensor(prompt)
    mask = torch.ones(prompt.shape, dtype=torch.long)

    with torch.no_grad():
        want = reference(torch_ids).logits.numpy()
        want_tokens = reference.generate(
            torch_prompt, attention_mask=mask, do_sample=False, max_new_tokens=NEW, pad_token_id=0
        ).numpy()[:, PROMPT:]
    got = np.asarray(forward(params, ours_ids))
    tokens = models.generate(model, params, prompt, NEW, eos_token_id=None)  # compiles
    agreement = {
        "max_abs_logit_diff": float(np.abs(got - want).max()),
        "max_abs_logit": float(np.abs(want).max()),
        "greedy_tokens_equal": bool((tokens == want_tokens).all()),
    }

    def torch_prefill():
        with torch.no_grad():
            return reference(torch_ids).logits

    def torch_generate():
        with torch.no_grad():
            return reference.generate(
                torch_prompt,
                attention_mask=mask,
                do_sample=False,
                max_new_tokens=NEW,
                pad_token_id=0,
            )

    def threads(n, fn):  # PyTorch at its default threads and at one (see the module doc)
        def call():
            torch.set_num_threads(n)
            return fn()

        return call

    fns = {
        "ours_prefill": lambda: forward(params, ours_ids).block_until_ready(),
        "ours_generate": lambda: models.generate(model, params, prompt, NEW, eos_token_id=None),
    }
    for n in sorted({1, DEFAULT_THREADS}):
        fns[f"torch_prefill_{n}t"] = threads(n, torch_prefill)
        fns[f"torch_generate_{n}t"] = threads(n, torch_generate)
    samples = round_robin(fns, rounds=rounds)
    torch.set_num_threads(DEFAULT_THREADS)
    stats = {name: summarize(s) for name, s in samples.items()}
    for name in stats:
        if "generate" in name:
            stats[name]["new_tokens_per_s"] = B * NEW / stats[name]["median_s"]

    def best(kind):
        return min((v["median_s"], k) for k, v in stats.items() if k.startswith(f"torch_{kind}"))

    return {
        "agreement": agreement,
        "stats": stats,
        "best_torch_prefill": best("prefill")[1],
        "best_torch_generate": best("generate")[1],
        "prefill_ratio_ours_over_torch": stats["ours_prefill"]["median_s"] / best("prefill")[0],
        "decode_speedup_ours_over_torch": best("generate")[0] / stats["ours_generate"]["median_s"],
    }


def compile_seconds(arch: str, layers: int, scan: bool) -> dict:
    """Trace + lower and XLA compile of a fresh forward (no JAX cache hit), abstract params."""
    config = models.config_from_hf(hf_config(arch, layers).to_dict())
    model = models.model_for_config(config, scan_layers=scan)
    ids = jax.ShapeDtypeStruct((B, T), jnp.int32)
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0), ids)["params"]

    def forward(p, x):
        return model.apply({"params": p}, x)

    start = time.perf_counter()
    lowered = jax.jit(forward).trace(params, ids).lower()
    traced = time.perf_counter() - start
    start = time.perf_counter()
    lowered.compile()
    compiled = time.perf_counter() - start
    return {"trace_lower_s": traced, "compile_s": compiled, "total_s": traced + compiled}


def main() -> int:
    rounds = int(os.environ.get("ROUNDS", "7"))
    result = {
        "machine": machine_info(),
        "torch_threads": DEFAULT_THREADS,
        "load_average": os.getloadavg(),
        "shape": {
            "B": B,
            "T": T,
            "D": D,
            "layers": LAYERS,
            "vocab": VOCAB,
            "decode_prompt": PROMPT,
            "decode_new_tokens": NEW,
        },
    }
    for arch in ("gpt2", "llama"):
        result[arch] = run_pair(arch, rounds)
        print(arch, json.dumps({k: v for k, v in result[arch].items() if k != "stats"}), flush=True)
    result["compile"] = {}
    for rep in range(2):  # round-robin over forms and depths, best of two
        for layers in (12, 48):
            for scan in (True, False):
                name = f"llama_{'scanned' if scan else 'unrolled'}_{layers}"
                t = compile_seconds("llama", layers, scan)
                best = result["compile"].get(name)
                if best is None or t["total_s"] < best["total_s"]:
                    result["compile"][name] = t
                print(rep, name, t, flush=True)
    out = HERE / "results" / "models_vs_torch.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    (HERE / "results" / "models_vs_torch.md").write_text(report(result))
    print(report(result))
    return 0


def report(r: dict) -> str:
    m = r["machine"]
    lines = [
        "# composed_lifts.models against transformers (PyTorch eager, CPU)",
        "",
        f"{m['date']}, {m['nproc']} cores ({m['cpu']}), load average "
        f"{r['load_average'][0]:.1f} at the start, torch {m['versions']['torch']} "
        f"(default {r['torch_threads']} threads, and 1), jax {m['versions']['jax']}; B={B} T={T} D={D} "
        f"{LAYERS} layers vocab {VOCAB}; decoding: prompt {PROMPT}, {NEW} new tokens. "
        f"Round-robin in one process; {m['note']}.",
        "",
        "Ratios: ours / torch is time (below 1: ours faster) for prefill, and tokens/s "
        "(above 1: ours faster) for decoding.",
        "",
        "| model | prefill ours | prefill torch (best) | ours / torch | decode ours tok/s | "
        "decode torch tok/s (best) | ours / torch | max abs logit diff | same tokens |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for arch in ("gpt2", "llama"):
        a, s = r[arch], r[arch]["stats"]
        lines.append(
            f"| {arch} | {s['ours_prefill']['median_s'] * 1e3:.1f} ms | "
            f"{s[a['best_torch_prefill']]['median_s'] * 1e3:.1f} ms "
            f"({a['best_torch_prefill'].rsplit('_', 1)[1]}) | "
            f"{a['prefill_ratio_ours_over_torch']:.2f} | "
            f"{s['ours_generate']['new_tokens_per_s']:.0f} | "
            f"{s[a['best_torch_generate']]['new_tokens_per_s']:.0f} "
            f"({a['best_torch_generate'].rsplit('_', 1)[1]}) | "
            f"{a['decode_speedup_ours_over_torch']:.2f}x | "
            f"{a['agreement']['max_abs_logit_diff']:.1e} | {a['agreement']['greedy_tokens_equal']} |"
        )
    lines += [
        "",
        "Compile time of the Llama forward (best of 2):",
        "",
        "| layers | scanned | unrolled | unrolled / scanned |",
        "|---:|---:|---:|---:|",
    ]
    c = r["compile"]
    for layers in (12, 48):
        sc, un = c[f"llama_scanned_{layers}"]["total_s"], c[f"llama_unrolled_{layers}"]["total_s"]
        lines.append(f"| {layers} | {sc:.2f} s | {un:.2f} s | {un / sc:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
