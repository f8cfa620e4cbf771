"""Process start to result of ``composed-lifts run``, against bare scripts, in fresh processes.

Each contender is a new Python process, timed from spawn to exit, round-robin:

- ``bare imports``: a script doing only the recipe's imports
  (``import jax, flax.linen, numpy``), the floor any Flax program pays;
- ``bare recipe``: that script plus the seed's recipe, jitted, at the CLI's default shape;
- ``cli``: ``composed-lifts run --format json`` (default example, B=4, N=4, F=8)
  with its persistent compilation cache off (``COMPOSED_LIFTS_CACHE=off``): it compiles;
- ``cli, warm persistent cache``: the same with the cache in a fresh directory
  that an untimed earlier run filled (``COMPOSED_LIFTS_CACHE``; also
  ``JAX_COMPILATION_CACHE_DIR`` for CLIs that predate that variable).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile
import time

from _timing import summarize

__all__ = ["measure"]

BARE_IMPORTS = "import jax, flax.linen as nn, numpy as np\n"
BARE_RECIPE = (
    BARE_IMPORTS
    + """
class Block(nn.Module):
    features: int
    @nn.compact
    def __call__(self, x, _):
        return nn.relu(nn.Dense(self.features)(x)), None
model = nn.vmap(nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True},
                        length=4),
                in_axes=0, out_axes=0, variable_axes={"params": None},
                split_rngs={"params": False})(features=8)
x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
@jax.jit
def forward(seed, x):
    return model.apply(model.init(jax.random.PRNGKey(seed), x, None), x, None)[0].reshape(-1)
print(np.asarray(forward(0, x)).tolist())
"""
)


def _cli() -> list[str]:
    script = pathlib.Path(sys.executable).with_name("composed-lifts")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "composed_lifts"]


def _run(cmd, env) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def measure(*, rounds: int, warm_all: bool = True, tick=lambda msg: None) -> dict:
    """Seconds from spawn to exit per contender, round-robin over ``rounds``.

    Before timing, the cached CLI runs once to fill its cache; with ``warm_all``
    every contender also runs once untimed (to warm the OS file cache).
    """
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("JAX_COMPILATION_CACHE") and k != "COMPOSED_LIFTS_CACHE"
    }
    with tempfile.TemporaryDirectory(prefix="jax-cache-") as cache:
        cold = dict(base, COMPOSED_LIFTS_CACHE="off")
        cached = dict(
            base,
            COMPOSED_LIFTS_CACHE=cache,
            JAX_COMPILATION_CACHE_DIR=cache,
            JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
            JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1",
        )
        contenders = {
            "bare_imports": (
                "bare imports (jax, flax.linen, numpy)",
                [sys.executable, "-c", BARE_IMPORTS],
                base,
            ),
            "bare_recipe": (
                "bare script: imports + jitted recipe",
                [sys.executable, "-c", BARE_RECIPE],
                base,
            ),
            "cli": ("composed-lifts run, cache off", _cli() + ["run", "--format", "json"], cold),
            "cli_cached": (
                "composed-lifts run, warm persistent cache",
                _cli() + ["run", "--format", "json"],
                cached,
            ),
        }
        for key, (_, cmd, env) in contenders.items():
            if warm_all or key == "cli_cached":
                _run(cmd, env)
        entries = len(list(pathlib.Path(cache).iterdir()))
        samples = {k: [] for k in contenders}
        for r in range(rounds):
            for key, (_, cmd, env) in contenders.items():
                tick(f"cli start: {key} ({r + 1}/{rounds})")
                samples[key].append(_run(cmd, env))
    rows = {k: {"name": contenders[k][0], **summarize(s)} for k, s in samples.items()}
    return {"rows": rows, "cache_entries": entries}
