"""Checkpoint I/O on a ~1 GB float32 stack (N=64, F=2048): our save/load against plain I/O.

Every contender runs in its own subprocess (so its peak RSS is its own), round-robin
over rounds so that a slow spell of the shared machine hits all alike:

- ``plain_write``: the params' bytes written to one file + fsync (the save baseline);
- ``save_scanned`` / ``save_unrolled``: ``checkpoint.save`` (header, xxh3 per layer,
  temp file, fsync, rename, folder fsync), stacked and per-layer;
- ``orbax_save``: Orbax's ``StandardCheckpointer`` on the same tree;
- ``save_orbax``: ``checkpoint.save`` to an Orbax folder (Orbax's save plus an xxh3-64 per
  shard, the work folder, the exchange of names);
- ``plain_read``: the scanned file's bytes read into one preallocated buffer (the load
  baseline);
- ``load_scanned`` / ``load_unrolled``: ``checkpoint.load`` into a stacked target
  (``like=jax.eval_shape``), checksums verified;
- ``load_axis1``: a file with the layer axis at 1 into the axis-0 target (a conversion);
- ``load_into_unrolled``: the scanned file into the unrolled target (a conversion);
- ``st_load_file_stack``: ``safetensors.numpy.load_file`` of the unrolled file, then
  ``stack_params`` (what loaders do today);
- ``orbax_restore``: Orbax's restore of the stacked tree;
- ``load_orbax``: ``checkpoint.load`` of that Orbax folder into the stacked target (the
  folder checked, every shard's checksum verified).

Files are read warm: the parent reads each file through the page cache just before the
load (baseline included).
Memory is the peak RSS above the subprocess's RSS after its imports, as a ratio to
the params' bytes: for a load it holds the result, for a save the params it writes. Writes ``bench/results/checkpoint_io.json`` and ``.md``.
Run: ``.venv/bin/python bench/checkpoint_io.py [--small] [--rounds 3]``; ``--only a,b --tag t``
runs those contenders (and the plain baselines) and writes ``checkpoint_io_t.*``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SAVES = ["plain_write", "save_scanned", "save_unrolled", "orbax_save", "save_orbax"]
LOADS = [
    "plain_read",
    "load_scanned",
    "load_unrolled",
    "load_axis1",
    "load_into_unrolled",
    "st_load_file_stack",
    "orbax_restore",
    "load_orbax",
]


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def make_params(n: int, f: int) -> dict:
    rng = np.random.default_rng(0)
    kernel = np.empty((n, f, f), np.float32)
    for i in range(n):
        kernel[i] = rng.random((f, f), dtype=np.float32)
    return {"params": {"Dense_0": {"kernel": kernel, "bias": rng.random((n, f), dtype=np.float32)}}}


def _abstract(n: int, f: int, unrolled: bool = False):
    import jax

    def one(shape):
        return jax.ShapeDtypeStruct(shape, np.float32)

    if unrolled:
        layer = {"Dense_0": {"kernel": one((f, f)), "bias": one((f,))}}
        return {"params": {f"layers_{i}": layer for i in range(n)}}
    return {"params": {"Dense_0": {"kernel": one((n, f, f)), "bias": one((n, f))}}}


def child(name: str, folder: Path, n: int, f: int) -> dict:
    """Run one contender; return its time and memory."""
    import jax  # noqa: F401  (imports before the baseline RSS and the clock)
    import ml_dtypes  # noqa: F401
    import orbax.checkpoint as ocp
    import safetensors  # noqa: F401
    from safetensors.numpy import load_file

    from composed_lifts import stack_params
    from composed_lifts.checkpoint import Form, load, save

    before = _rss()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets the peak RSS (VmHWM) to the current RSS
    params = make_params(n, f) if name in SAVES else None  # a save's memory includes them
    start = time.perf_counter()
    if name == "plain_write":
        with open(folder / "plain.bin", "wb") as out:
            for a in (params["params"]["Dense_0"]["bias"], params["params"]["Dense_0"]["kernel"]):
                out.write(memoryview(a.reshape(-1).view(np.uint8)))
            out.flush()
            os.fsync(out.fileno())
    elif name == "save_scanned":
        save(folder / "scanned.safetensors", params, stacks=["params"])
    elif name == "save_unrolled":
        save(folder / "unrolled.safetensors", params, stacks=["params"], form=Form.UNROLLED)
    elif name == "orbax_save":
        target = folder / "orbax"
        if target.exists():
            shutil.rmtree(target)
        ckptr = ocp.StandardCheckpointer()
        ckptr.save(target, params)
        ckptr.wait_until_finished()
        ckptr.close()
    elif name == "save_orbax":
        save(folder / "ours_orbax", params, stacks=["params"])
    elif name == "plain_read":
        size = os.path.getsize(folder / "scanned.safetensors")
        buf = np.empty(size, np.uint8)
        with open(folder / "scanned.safetensors", "rb", buffering=0) as fh:
            view = memoryview(buf)
            while len(view):
                view = view[fh.readinto(view) :]
    elif name == "load_scanned":
        load(folder / "scanned.safetensors", like=_abstract(n, f))
    elif name == "load_unrolled":
        load(folder / "unrolled.safetensors", like=_abstract(n, f))
    elif name == "load_axis1":
        load(folder / "axis1.safetensors", like=_abstract(n, f))
    elif name == "load_into_unrolled":
        load(folder / "scanned.safetensors", like=_abstract(n, f, unrolled=True))
    elif name == "st_load_file_stack":
        flat = load_file(str(folder / "unrolled.safetensors"))
        layers = {
            f"layers_{i}": {
                "Dense_0": {k: flat.pop(f"params.{i}.Dense_0.{k}") for k in ("kernel", "bias")}
            }
            for i in range(n)
        }
        stacked = stack_params(layers)
        stacked["Dense_0"]["kernel"].block_until_ready()
    elif name == "orbax_restore":
        ckptr = ocp.StandardCheckpointer()
        restored = ckptr.restore(folder / "orbax", _abstract(n, f))
        np.asarray(restored["params"]["Dense_0"]["kernel"])
        ckptr.close()
    elif name == "load_orbax":
        load(folder / "ours_orbax", like=_abstract(n, f))
    else:
        raise SystemExit(f"unknown contender {name}")
    seconds = time.perf_counter() - start
    peak = _peak_rss()
    return {"seconds": seconds, "rss_before": before, "peak_rss": peak}


READS = {
    "plain_read": "scanned.safetensors",
    "load_scanned": "scanned.safetensors",
    "load_unrolled": "unrolled.safetensors",
    "load_axis1": "axis1.safetensors",
    "load_into_unrolled": "scanned.safetensors",
    "st_load_file_stack": "unrolled.safetensors",
    "orbax_restore": "orbax",
    "load_orbax": "ours_orbax",
}


def warm(path: Path) -> None:
    """Read ``path`` (a file or a folder's files) through the page cache, 64 MB at a time."""
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    for file in files:
        with open(file, "rb", buffering=0) as fh:
            while fh.read(64 << 20):
                pass


def run_child(name: str, folder: Path, n: int, f: int) -> dict:
    if name in READS:
        warm(folder / READS[name])  # every load reads warm, from the page cache
    out = subprocess.run(
        [sys.executable, __file__, "--child", name, str(folder), str(n), str(f)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"{name} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def prepare(folder: Path, n: int, f: int) -> None:
    """The files the loads read: scanned, unrolled, layer axis 1, Orbax."""
    from composed_lifts.checkpoint import Form, Stack, save

    params = make_params(n, f)
    save(folder / "scanned.safetensors", params, stacks=["params"])
    shutil.copyfile(folder / "scanned.safetensors", folder / "plain.bin")  # saves all overwrite
    save(folder / "unrolled.safetensors", params, stacks=["params"], form=Form.UNROLLED)
    save(folder / "axis1.safetensors", params, stacks=[Stack("params")], layer_axis=1)
    import orbax.checkpoint as ocp

    ckptr = ocp.StandardCheckpointer()
    ckptr.save(folder / "orbax", params)
    ckptr.wait_until_finished()
    ckptr.close()
    save(folder / "ours_orbax", params, stacks=["params"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=4, metavar=("NAME", "DIR", "N", "F"))
    parser.add_argument("--small", action="store_true", help="N=8, F=256: check the script")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", help="comma-separated contenders (the plain ones are added)")
    parser.add_argument("--tag", default="", help="results file suffix for --only runs")
    args = parser.parse_args()
    if args.child:
        name, folder, n, f = args.child
        print(json.dumps(child(name, Path(folder), int(n), int(f))))
        return
    global SAVES, LOADS
    if args.only:
        chosen = set(args.only.split(",")) | {"plain_write", "plain_read"}
        SAVES = [name for name in SAVES if name in chosen]
        LOADS = [name for name in LOADS if name in chosen]
    n, f = (8, 256) if args.small else (64, 2048)
    nbytes = n * f * f * 4 + n * f * 4
    sys.path.insert(0, str(HERE))
    from _timing import machine_info

    folder = Path(tempfile.mkdtemp(prefix="checkpoint-io-"))  # outside the repository
    try:
        prepare(folder, n, f)
        samples: dict[str, list[dict]] = {name: [] for name in SAVES + LOADS}
        order = random.Random(0)
        for r in range(args.rounds):
            # each round: the saves, then the loads (reading what was just written), each
            # group in a new random order so that no contender always follows the same one
            for name in order.sample(SAVES, len(SAVES)) + order.sample(LOADS, len(LOADS)):
                samples[name].append(run_child(name, folder, n, f))
                print(f"round {r} {name}: {samples[name][-1]['seconds']:.3f} s", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    results = {}
    for name, runs in samples.items():
        seconds = statistics.median(s["seconds"] for s in runs)
        extra = statistics.median(s["peak_rss"] - s["rss_before"] for s in runs)
        results[name] = {
            "samples_s": [s["seconds"] for s in runs],
            "median_s": seconds,
            "min_s": min(s["seconds"] for s in runs),
            "peak_rss_above_start_bytes": extra,
            "memory_x_params": extra / nbytes,
        }
    for group, base in ((SAVES, "plain_write"), (LOADS, "plain_read")):
        for name in group:
            for stat in ("median", "min"):
                results[name][f"time_x_plain_{stat}"] = (
                    results[name][f"{stat}_s"] / results[base][f"{stat}_s"]
                )
    record = {
        "machine": machine_info(),
        "load_average": os.getloadavg(),
        "model": {"N": n, "F": f, "dtype": "float32", "params_bytes": nbytes},
        "rounds": args.rounds,
        "results": results,
        "targets": {"time_x_plain": 1.25, "memory_x_params": 1.2},
    }
    suffix = ("_small" if args.small else "") + (f"_{args.tag}" if args.tag else "")
    out = HERE / "results" / f"checkpoint_io{suffix}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "# Checkpoint I/O: our save/load vs plain I/O of the same bytes",
        "",
        f"{record['machine']['date']}, {record['machine']['nproc']} cores ({record['machine']['cpu']}), "
        f"load average {record['load_average'][0]:.1f} at the end; N={n}, F={f}, float32, "
        f"{nbytes / 1e9:.2f} GB of params; {args.rounds} rounds round-robin (saves, then loads, "
        f"each in a random order per round), each contender in its own subprocess; files read "
        f"warm (page cache); medians.",
        "",
        "| operation | median | x plain (medians) | min | x plain (mins) | peak RSS above start | x params |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in SAVES + LOADS:
        r = results[name]
        lines.append(
            f"| {name} | {r['median_s']:.3f} s | {r['time_x_plain_median']:.2f}x | "
            f"{r['min_s']:.3f} s | {r['time_x_plain_min']:.2f}x | "
            f"{r['peak_rss_above_start_bytes'] / 1e9:.2f} GB | {r['memory_x_params']:.2f}x |"
        )
    lines += ["", "Targets: load and save <= 1.25x plain; peak memory <= 1.2x params."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
