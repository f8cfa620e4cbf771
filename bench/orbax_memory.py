"""Peak memory of our Orbax save/load (checksummed, verified) against Orbax's own, untimed.

A 269 MB float32 stack (N=16, F=2048); each contender in its own subprocess, its peak RSS
above its RSS after imports, as a ratio to the params' bytes; two rounds. Only memory is
measured (times belong to ``bench/checkpoint_io.py``, run under the shared lock), so this
runs anywhere in about a minute. Writes ``bench/results/orbax_memory.json``.
Run: ``PYTHONPATH=src .venv/bin/python bench/orbax_memory.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

N, F = 16, 2048
CONTENDERS = ("orbax_save", "save_orbax", "orbax_restore", "load_orbax")
HERE = Path(__file__).resolve().parent


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(name: str, folder: str) -> int:
    import jax
    import numpy as np
    import orbax.checkpoint as ocp

    from composed_lifts.checkpoint import load, save

    before = _rss()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak RSS (VmHWM) to the current RSS
    abstract = {
        "params": {
            "Dense_0": {
                "kernel": jax.ShapeDtypeStruct((N, F, F), np.float32),
                "bias": jax.ShapeDtypeStruct((N, F), np.float32),
            }
        }
    }
    if "save" in name:
        rng = np.random.default_rng(0)
        params = {
            "params": {
                "Dense_0": {
                    "kernel": rng.random((N, F, F), dtype=np.float32),
                    "bias": rng.random((N, F), dtype=np.float32),
                }
            }
        }
    if name == "orbax_save":
        target = os.path.join(folder, "raw")
        shutil.rmtree(target, ignore_errors=True)
        ckptr = ocp.StandardCheckpointer()
        ckptr.save(target, params)
        ckptr.wait_until_finished()
        ckptr.close()
    elif name == "save_orbax":
        save(os.path.join(folder, "ours"), params, stacks=["params"])
    elif name == "orbax_restore":
        ckptr = ocp.StandardCheckpointer()
        restored = ckptr.restore(os.path.join(folder, "raw"), abstract)
        np.asarray(restored["params"]["Dense_0"]["kernel"])
        ckptr.close()
    elif name == "load_orbax":
        load(os.path.join(folder, "ours"), like=abstract)
    with open("/proc/self/status") as f:
        peak = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    return peak - before


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps({"extra": child(sys.argv[2], sys.argv[3])}))
        return
    folder = tempfile.mkdtemp(prefix="orbax-memory-")
    nbytes = N * F * F * 4 + N * F * 4
    ratios: dict[str, list[float]] = {}
    try:
        for _ in range(2):
            for name in CONTENDERS:
                out = subprocess.run(
                    [sys.executable, __file__, "--child", name, folder],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if out.returncode:
                    raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
                extra = json.loads(out.stdout.strip().splitlines()[-1])["extra"]
                ratios.setdefault(name, []).append(round(extra / nbytes, 3))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    sys.path.insert(0, str(HERE))
    from _timing import machine_info

    record = {
        "machine": machine_info(),
        "model": {"N": N, "F": F, "dtype": "float32", "params_bytes": nbytes},
        "peak_rss_x_params": ratios,
    }
    (HERE / "results" / "orbax_memory.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(ratios))


if __name__ == "__main__":
    main()
