"""A fine-tuning step, ours (``composed_lifts.train``) against PyTorch eager, CPU, GPT-2 small's shape.

GPT-2 small (12 layers, width 768, 12 heads, vocab 50257, 1024 positions), random
weights, B=4 sequences of T=256 tokens, float32. One step = forward, backward,
``clip_grad_norm_`` (1.0) and AdamW (weight decay 0.01), as ``torch.optim.AdamW``:

- ``jax-full``: ``make_trainer`` on the scanned GPT-2, every param trained;
- ``jax-lora``: LoRA r=8 on ``c_attn`` (PEFT's default target for GPT-2), base frozen;
- ``jax-remat-{full,dots,dots_no_batch}``: full fine-tuning with that remat policy;
- ``torch-{1,2}t``: ``transformers.GPT2LMHeadModel`` + ``torch.optim.AdamW`` at 1 and 2
  intra-op threads (the better one is the baseline).

Each configuration runs in a child process of its own (so its peak resident memory is its
own: ``wait4``'s ``ru_maxrss``), round-robin over ``--rounds`` rounds; a child makes the
model, runs one warm-up step (compiling), then times ``--steps`` steps and reports the
median. Memory is reported as the child's peak RSS and as the part above the RSS it had
after its imports (the runtime itself: JAX/XLA or PyTorch).

    flock /tmp/cl-heavy.lock .venv/bin/python bench/finetune_vs_torch.py   # -> bench/results/finetune_vs_torch.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
B, T = 4, 256
CONFIGS = [
    "jax-full",
    "torch-1t",
    "torch-2t",
    "jax-lora",
    "jax-remat-full",
    "jax-remat-dots",
    "jax-remat-dots_no_batch",
]


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(config: str, steps: int) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import numpy as np

    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50257, (B, T)).astype(np.int32)
    mask = np.ones((B, T), np.int32)
    times = []
    if config.startswith("torch"):
        import torch
        import transformers

        torch.set_num_threads(int(config.split("-")[1][0]))
        base = _rss_mb()
        torch.manual_seed(0)
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config()).train()
        for m in model.modules():  # no dropout: the same computation as ours
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01)
        ids_t, mask_t = torch.as_tensor(ids, dtype=torch.long), torch.as_tensor(mask)

        def step():
            opt.zero_grad()
            logits = model(ids_t, attention_mask=mask_t).logits[:, :-1]
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), ids_t[:, 1:].reshape(-1)
            )
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            return loss.item()
    else:
        import jax

        sys.path.insert(0, str(HERE.parent / "src"))
        from composed_lifts import Remat, models
        from composed_lifts.train import LoraOptions, TrainOptions, make_trainer

        base = _rss_mb()
        config_ = models.GPT2Config(
            vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12, n_inner=3072
        )
        model = models.GPT2(config_)
        params = jax.jit(model.init)(jax.random.PRNGKey(0), ids[:1, :8])["params"]
        remat = Remat(config.split("remat-")[1]) if "remat" in config else Remat.NONE
        lora = LoraOptions(rank=8, alpha=16, targets=("c_attn",)) if config == "jax-lora" else None
        trainer = make_trainer(
            model, TrainOptions(steps=100, learning_rate=1e-5, remat=remat), lora=lora
        )
        state = {"s": trainer.init(params)}
        del params
        batch = {"ids": ids, "mask": mask}

        def step():
            state["s"], metrics = trainer.step(state["s"], batch)
            return float(metrics["loss"])

    t0 = time.perf_counter()
    step()  # warm-up (JAX: compiles)
    first = time.perf_counter() - t0
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {"config": config, "times": times, "first_step_s": first, "base_rss_mb": base}


def run_child(config: str, steps: int) -> dict:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", config, "--steps", str(steps)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"{config} failed ({status})")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    return result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--child")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--configs", default=",".join(CONFIGS))
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.steps)))
        return
    sys.path.insert(0, str(HERE))
    from _timing import machine_info

    results: dict[str, list] = {}
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    loads = [os.getloadavg()[0]]
    for _ in range(args.rounds):
        for config in args.configs.split(","):
            r = run_child(config, args.steps)
            results.setdefault(config, []).append(r)
            loads.append(os.getloadavg()[0])
            print(
                config, [round(t, 3) for t in r["times"]], f"{r['peak_rss_mb']:.0f} MB", flush=True
            )
    summary = {}
    for config, runs in results.items():
        times = sorted(t for r in runs for t in r["times"])
        median = times[len(times) // 2]
        summary[config] = {
            "step_s_median": median,
            "step_s_min": times[0],
            "tokens_per_s": B * T / median,
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            "above_runtime_mb": max(r["peak_rss_mb"] - r["base_rss_mb"] for r in runs),
            "first_step_s": runs[0]["first_step_s"],
        }
    torch_best = min(
        (c for c in summary if c.startswith("torch")), key=lambda c: summary[c]["step_s_median"]
    )
    info = {
        "started": started,
        "load_average": [min(loads), max(loads)],
        "machine": machine_info(),
        "B": B,
        "T": T,
        "steps_per_child": args.steps,
        "rounds": args.rounds,
        "torch_baseline": torch_best,
        "results": summary,
        "raw": results,
    }
    out = HERE / "results"
    (out / "finetune_vs_torch.json").write_text(json.dumps(info, indent=2) + "\n")
    base = summary[torch_best]
    lines = [
        "# Fine-tuning step vs PyTorch eager (GPT-2 small's shape, B=4, T=256, float32)",
        "",
        f"Run {started}, load average {min(loads):.1f}-{max(loads):.1f}; baseline: {torch_best} "
        f"(the faster of 1 and 2 threads); each row a child process of its own, median of "
        f"{args.steps * args.rounds} timed steps after a warm-up step.",
        "",
        "| configuration | step (median) | tokens/s | x torch tokens/s | peak RSS | above runtime | first step (compile) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for config, s in summary.items():
        lines.append(
            f"| {config} | {s['step_s_median']:.2f} s | {s['tokens_per_s']:.0f} | "
            f"{s['tokens_per_s'] / base['tokens_per_s']:.2f}x | {s['peak_rss_mb']:.0f} MB | "
            f"{s['above_runtime_mb']:.0f} MB | {s['first_step_s']:.1f} s |"
        )
    if "jax-lora" in summary and "jax-full" in summary:
        ratio = summary["jax-lora"]["tokens_per_s"] / summary["jax-full"]["tokens_per_s"]
        lines += ["", f"LoRA (r=8, c_attn) / full fine-tuning tokens/s: {ratio:.2f}x"]
    (out / "finetune_vs_torch.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
