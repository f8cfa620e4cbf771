"""Timing by round-robin: every contender timed once per round, in turn, in one process.

Absolute times drift by tens of percent on a shared machine, so the figures that
matter are ratios of measurements taken round-robin: a slow spell hits every
contender alike. Used by :func:`composed_lifts.tune_stack` and by ``bench/``.
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Callable, Hashable, Mapping
from typing import TypeVar

K = TypeVar("K", bound=Hashable)

__all__ = ["calibrate", "round_robin", "time_call"]


def time_call(fn: Callable[[], object], inner: int = 1) -> float:
    """Seconds per call of ``fn`` (which must block until ready), averaged over ``inner`` calls."""
    start = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - start) / inner


def round_robin(
    fns: Mapping[K, Callable[[], object]],
    *,
    rounds: int,
    inner: Mapping[K, int] | int = 1,
    on_round: Callable[[int], None] | None = None,
    shuffle: bool = True,
) -> dict[K, list[float]]:
    """Time every ``fns[name]`` once per round, in turn; return seconds per call, one per round.

    ``inner[name]`` calls are timed together and averaged (for calls too short to
    time one by one). The order within a round is shuffled (seeded) so that no
    contender always follows the same neighbour. Garbage collection is off while timing.
    """
    if isinstance(inner, int):
        inner = {name: inner for name in fns}
    samples: dict[K, list[float]] = {name: [] for name in fns}
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
