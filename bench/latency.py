"""Steady-state forward latency of every form at three sizes, against the matmul peak.

For each size, every form is built and called once (that first call includes
compiling; its time is kept as ``first_call_s``), its output is checked against
the NumPy float64 reference, and then all forms are timed round-robin: each
round times every form once (averaging enough calls to fill ``sample_s``), in
a shuffled order. Ratios of medians within one size are the figures that count.

The physical limit is the forward's flops divided by the best matmul rate this
machine reaches: JAX, PyTorch and NumPy each multiply two 1024x1024 float32
matrices, timed in the same rounds as the forms (so drift hits them alike); the
fastest median is the peak, and ``limit_s = flops / peak``.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from _timing import calibrate, round_robin, summarize
from peers import FORMS, Unavailable, load, make_problem

__all__ = ["SIZES", "measure_size"]

SIZES = {
    "small": (8, 4, 64),
    "medium": (64, 16, 256),
    "large": (256, 32, 1024),
}
PEAK_N = 1024
RTOL = 1e-3  # float32 against the float64 reference, relative to the output's scale


def _check(out, ref) -> float:
    out = np.asarray(out, dtype=np.float64)
    return float(np.abs(out - ref).max() / max(1.0, float(np.abs(ref).max())))


def measure_size(size: str, *, rounds: int, sample_s: float, skip=(), tick=lambda msg: None):
    """Build, check and time every form at ``SIZES[size]``; return a dict of rows."""
    B, N, F = SIZES[size]
    problem = make_problem(B, N, F)
    ref = problem.reference()
    rows, fns, inner = {}, {}, {}
    for name in FORMS:
        module = load(name)
        row = {"name": module.NAME, "group": module.GROUP}
        rows[name] = row
        tick(f"{size}: build {name}")
        if name in skip:
            row["skipped"] = skip[name]
            continue
        try:
            start = time.perf_counter()
            fn = module.build(problem)
            out = fn()
            row["first_call_s"] = time.perf_counter() - start
        except Unavailable as err:
            row["skipped"] = str(err)
            continue
        if module.SAME_PARAMS:
            row["rel_error"] = _check(out, ref)
            if not row["rel_error"] < RTOL:
                row["skipped"] = f"wrong result (relative error {row['rel_error']:.2e})"
                continue
        fns[name] = fn
        # slow forms (the seed's recipe) are sampled once per round
        inner[name] = calibrate(fn, sample_s)
    trivial = jax.jit(lambda v: v)
    small_input = jnp.zeros((B, F), jnp.float32)
    trivial(small_input).block_until_ready()
    fns["trivial_jit"] = lambda: trivial(small_input).block_until_ready()
    inner["trivial_jit"] = calibrate(fns["trivial_jit"], sample_s)
    rows["trivial_jit"] = {"name": "a trivial jitted call (identity)", "group": "limit"}
    for name, fn in _peak_fns().items():
        fns[name] = fn
        inner[name] = calibrate(fn, sample_s)
        lib = name.removeprefix("peak_")
        rows[name] = {"name": f"{PEAK_N}x{PEAK_N} matmul, {lib}", "group": "limit"}
    samples = round_robin(
        fns, rounds=rounds, inner=inner, on_round=lambda r: tick(f"{size}: round {r + 1}/{rounds}")
    )
    for name, s in samples.items():
        rows[name].update(summarize(s), inner=inner[name])
    peaks = {k: 2 * PEAK_N**3 / rows[k]["median_s"] / 1e9 for k in rows if k.startswith("peak_")}
    best = max(peaks, key=peaks.get)
    for k, gflops in peaks.items():
        rows[k]["gflops"] = gflops
    return {
        "B": B,
        "N": N,
        "F": F,
        "flops": problem.flops,
        "rows": rows,
        "peak_gflops": peaks[best],
        "peak_by": best.removeprefix("peak_"),
        "limit_s": problem.flops / (peaks[best] * 1e9),
    }


def _peak_fns(n: int = PEAK_N) -> dict:
    """An (n, n) @ (n, n) float32 matmul in JAX, PyTorch and NumPy: the machine's matmul rate."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    dot = jax.jit(jnp.dot)
    ja, jb = jax.device_put((a, b))
    fns = {"peak_jax": lambda: dot(ja, jb).block_until_ready(), "peak_numpy": lambda: a @ b}
    try:
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        fns["peak_torch"] = lambda: torch.mm(ta, tb)
    except ImportError:
        pass
    for fn in fns.values():
        fn()
    return fns
