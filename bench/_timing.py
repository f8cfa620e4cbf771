"""Timing helpers for the benchmarks: the machine record, and the round-robin timer that
``composed_lifts.tune_stack`` uses too (one implementation, in ``composed_lifts._timing``).

Absolute times drift by tens of percent on the shared 2-core machines these
benchmarks run on, so every figure that matters is a ratio of two measurements
taken *round-robin in one process*: each round times every contender once, in
turn, so a slow spell hits all of them alike.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import statistics

from composed_lifts._timing import calibrate, round_robin, time_call

__all__ = ["calibrate", "machine_info", "round_robin", "summarize", "time_call"]

_PACKAGES = (
    "jax",
    "jaxlib",
    "flax",
    "numpy",
    "dm-haiku",
    "equinox",
    "torch",
    "optax",
    "composed-lifts",
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
        "env": {
            k: os.environ.get(k)
            for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "XLA_FLAGS", "OMP_NUM_THREADS")
        },
        "note": "shared machine: other developers ran tests concurrently, so absolute times "
        "drift; only ratios measured round-robin in one process are meaningful",
    }


def summarize(samples: list[float]) -> dict:
    """Median, min and count of a list of seconds."""
    return {
        "median_s": statistics.median(samples),
        "min_s": min(samples),
        "n": len(samples),
    }
