"""Hugging Face folders in and out on a ~1.2 GB bfloat16 Llama: ours against ``transformers``.

A random Llama (hidden 2048, 10 layers, vocab 32000; 582M params, bfloat16) is saved with
``save_pretrained`` (sharded at 500MB). Each contender runs in its own subprocess (its peak
RSS is its own), round-robin over rounds, files read warm:

- ``hf_from_pretrained``: ``AutoModelForCausalLM.from_pretrained(folder, dtype=bfloat16)``;
- ``hf_from_pretrained_read``: the same, then every weight summed once: ``from_pretrained``
  maps the files lazily, so its weights are in memory only once touched;
- ``from_hf``: ``models.from_hf(folder)`` (the folder's dtype, bfloat16, read into memory);
- ``hf_save_pretrained``: the loaded torch model's ``save_pretrained`` (500MB shards);
- ``to_hf``: ``models.to_hf`` of the params ``from_hf`` gave (500MB shards).

Memory: peak RSS above the subprocess's RSS after its imports, as a ratio to the params'
bytes; for a save, the params it writes are loaded first and counted (the peak is reset
after the load, so the load's own peak does not count). Writes
``bench/results/hf_io.json`` and ``.md``. Run under the shared lock:
``flock /tmp/cl-heavy.lock .venv/bin/python bench/hf_io.py [--rounds 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAMES = ["hf_from_pretrained", "hf_from_pretrained_read", "from_hf", "hf_save_pretrained", "to_hf"]
SHARD = "500MB"


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def make_folder(folder: Path) -> int:
    import torch
    import transformers

    config = transformers.LlamaConfig(
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=10,
        num_attention_heads=16,
        num_key_value_heads=4,
        vocab_size=32000,
        max_position_embeddings=2048,
    )
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder, max_shard_size=SHARD)
    return sum(p.numel() * p.element_size() for p in model.parameters())


def child(name: str, folder: Path, out: Path) -> dict:
    import jax
    import torch
    import transformers

    from composed_lifts import models

    before = _rss()
    _reset_peak()
    start = time.perf_counter()
    if name == "hf_from_pretrained":
        transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)
    elif name == "hf_from_pretrained_read":
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)
        with torch.no_grad():
            for p in model.parameters():
                p.sum()
    elif name == "from_hf":
        _, params = models.from_hf(folder)
        jax.block_until_ready(params)
    elif name == "hf_save_pretrained":
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)
        _reset_peak()
        start = time.perf_counter()
        model.save_pretrained(out, max_shard_size=SHARD)
    elif name == "to_hf":
        model, params = models.from_hf(folder)
        jax.block_until_ready(params)
        _reset_peak()
        start = time.perf_counter()
        models.to_hf(params, model.config, out, max_shard_size=SHARD)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_above_start": _peak_rss() - before}


def _warm(folder: Path) -> None:
    for p in folder.iterdir():
        with open(p, "rb") as f:
            while f.read(64 << 20):
                pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", nargs=3)
    args = parser.parse_args()
    if args.child:
        name, folder, out = args.child
        print(json.dumps(child(name, Path(folder), Path(out))))
        return
    runs: dict[str, list[dict]] = {n: [] for n in NAMES}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        folder = Path(tmp) / "llama"
        nbytes = make_folder(folder)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
        env["JAX_PLATFORMS"] = "cpu"
        for _ in range(args.rounds):
            for name in random.sample(NAMES, len(NAMES)):
                _warm(folder)
                out = Path(tmp) / f"out-{name}"
                cmd = [sys.executable, __file__, "--child", name, str(folder), str(out)]
                got = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
                runs[name].append(json.loads(got.stdout.strip().splitlines()[-1]))
                print(name, runs[name][-1], flush=True)
    rows = {}
    for name, got in runs.items():
        rows[name] = {
            "median_s": statistics.median(r["seconds"] for r in got),
            "min_s": min(r["seconds"] for r in got),
            "peak_above_start": max(r["peak_above_start"] for r in got),
            "x_params": max(r["peak_above_start"] for r in got) / nbytes,
        }
    load_avg = os.getloadavg()[0]
    result = {"params_bytes": nbytes, "rounds": args.rounds, "rows": rows, "load": load_avg}
    (HERE / "results" / "hf_io.json").write_text(json.dumps(result, indent=2) + "\n")
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        "# Hugging Face folders: from_hf / to_hf against transformers",
        "",
        f"{when}, {os.cpu_count()} cores, load average {load_avg:.1f} at the end; random Llama "
        f"(hidden 2048, 10 layers, vocab 32000), bfloat16, {nbytes / 1e9:.2f} GB of params, "
        f"{SHARD} shards; {args.rounds} rounds round-robin, each in its own subprocess; "
        "files read warm; medians.",
        "",
        "| operation | median | min | vs transformers (medians) | peak RSS above start | x params |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    base = {
        "from_hf": "hf_from_pretrained",
        "to_hf": "hf_save_pretrained",
        "hf_from_pretrained": "hf_from_pretrained",
        "hf_from_pretrained_read": "hf_from_pretrained",
        "hf_save_pretrained": "hf_save_pretrained",
    }
    for name, r in rows.items():
        ratio = r["median_s"] / rows[base[name]]["median_s"]
        lines.append(
            f"| {name} | {r['median_s']:.3f} s | {r['min_s']:.3f} s | {ratio:.2f}x | "
            f"{r['peak_above_start'] / 1e9:.2f} GB | {r['x_params']:.2f}x |"
        )
    lines += [
        "",
        "Targets: from_hf and to_hf peak memory <= 1.2x params; from_hf no slower "
        "than from_pretrained.",
        "",
    ]
    (HERE / "results" / "hf_io.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
