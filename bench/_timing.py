"""Timing helpers shared by the benchmarks: round-robin measurement and the machine record.

Absolute times drift by tens of percent on the shared 2-core machines these
benchmarks run on, so every figure that matters is a ratio of two measurements
taken *round-robin in one process*: each round times every contender once, in
turn, so a slow spell hits all of them alike.
"""

from __future__ import annotations

import datetime
import gc
import importlib.metadata
import os
import platform
import random
import statistics
import time
from collections.abc import Callable, Mapping

__all__ = ["calibrate", "machine_info", "round_robin", "summarize", "time_call"]

_PACKAGES = (
    "jax", "jaxlib", "flax", "numpy", "dm-haiku", "equinox", "torch", "optax", "composed-lifts",
)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict:
    """Date, machine and library versions, to store beside every result."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                               "XLA_FLAGS", "OMP_NUM_THREADS")},
        "note": "shared machine: other developers ran tests concurrently, so absolute times "
                "drift; only ratios measured round-robin in one process are meaningful",
    }


def time_call(fn: Callable[[], object], inner: int = 1) -> float:
    """Seconds per call of ``fn`` (which must block until ready), averaged over ``inner`` calls."""
    start = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - start) / inner


def round_robin(
    fns: Mapping[str, Callable[[], object]],
    *,
    rounds: int,
    inner: Mapping[str, int] | int = 1,
    on_round: Callable[[int], None] | None = None,
    shuffle: bool = True,
) -> dict[str, list[float]]:
    """Time every ``fns[name]`` once per round, in turn; return seconds per call, one per round.

    ``inner[name]`` calls are timed together and averaged (for calls too short to
    time one by one). The order within a round is shuffled (seeded) so that no
    contender always follows the same neighbour. Garbage collection is off while timing.
    """
    if isinstance(inner, int):
        inner = {name: inner for name in fns}
    samples: dict[str, list[float]] = {name: [] for name in fns}
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        order = list(fns)
        rng = random.Random(0)
        for r in range(rounds):
            if shuffle:
                rng.shuffle(order)
            for name in order:
                samples[name].append(time_call(fns[name], inner.get(name, 1)))
            if on_round is not None:
                on_round(r)
            gc.collect()
    finally:
        if gc_was_on:
            gc.enable()
    return samples


def calibrate(fn: Callable[[], object], target_s: float = 0.02, cap: int = 10_000) -> int:
    """How many calls of ``fn`` take about ``target_s`` (at least 1)."""
    t = time_call(fn)
    if t >= target_s:
        return 1
    t = min(t, time_call(fn))
    return max(1, min(cap, int(target_s / max(t, 1e-7))))


def summarize(samples: list[float]) -> dict:
    """Median, min and count of a list of seconds."""
    return {
        "median_s": statistics.median(samples),
        "min_s": min(samples),
        "n": len(samples),
    }
