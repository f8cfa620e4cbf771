"""A save killed at any moment leaves the previous checkpoint whole and loadable."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np

from composed_lifts.checkpoint import load, save

WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from composed_lifts.checkpoint import Form, save
    path = sys.argv[1]
    trees = [{"stack": {"w": np.full((8, 256, 1024), float(v), np.float32),
                        "b": np.full((8, 1024), float(v), np.float32)}} for v in (1, 2)]
    print("ready", flush=True)
    k = 0
    while True:
        save(path, trees[k % 2], form=(Form.STACKED, Form.UNROLLED)[k % 2])
        k += 1
        print(k, flush=True)
    """
)


def tree(v):
    return {
        "stack": {
            "w": np.full((8, 256, 1024), float(v), np.float32),
            "b": np.full((8, 1024), float(v), np.float32),
        }
    }


def test_kill_during_save_leaves_a_whole_checkpoint(tmp_path):
    path = tmp_path / "model.safetensors"
    save(path, tree(0))
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    rng = random.Random(0)
    seen = set()
    for _ in range(4):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.4))  # a save takes ~0.1 s: kills land at every phase
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        got = load(path, like=tree(0))  # checksums verified: whole, one of the three trees
        value = float(got["stack"]["w"][0, 0, 0])
        assert value in (0.0, 1.0, 2.0)
        for leaf in ("w", "b"):
            assert np.array_equal(got["stack"][leaf], tree(value)["stack"][leaf])
        seen.add(value)
        # only the final name and, from a killed save, temporary files beside it
        leftovers = [n for n in os.listdir(tmp_path) if n not in ("model.safetensors", "writer.py")]
        assert all(n.startswith(".model.safetensors.") and n.endswith(".tmp") for n in leftovers)
    assert seen, "no kill happened"
