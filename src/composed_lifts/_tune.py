"""``tune_stack``: measure scan vs unroll factors vs remat policies, recommend the fastest that fits.

For a Linen block and the shapes it will run at, every candidate
``StackOptions(unroll=u, remat=r)``, on CPU also with each dot backend (XLA's
default YNNPACK dots, or Eigen's through ``jax.jit(..., compiler_options=...)``,
which bench/ found 25-35% faster at mid-sized matmuls and slower at small
ones), is built with :func:`linen_stack`, its
training step (``jax.value_and_grad`` of the mean squared final carry) or its
forward is compiled, and the candidates are then timed round-robin, so that a
slow spell on a shared machine hits all of them alike. Peak scratch memory is
XLA's own account of each compiled program
(``compiled.memory_analysis().temp_size_in_bytes``), exact and free of drift.
The recommendation is the fastest candidate whose scratch fits the budget.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ._arguments import check_integer
from ._options import Remat, StackOptions, require_options
from ._stack_linen import linen_stack
from ._timing import calibrate, round_robin
from .errors import ArgumentRangeError, ArgumentTypeError

__all__ = ["DOT_BACKENDS", "TuneReport", "TuneResult", "default_unrolls", "tune_stack"]

# ``compiler_options`` for ``jax.jit`` per CPU dot backend: one program's choice,
# unlike XLA_FLAGS, which is process-wide and read once.
DOT_BACKENDS = {
    "default": None,
    "eigen": {"xla_cpu_experimental_ynn_fusion_type": ""},
}


@dataclasses.dataclass(frozen=True)
class TuneResult:
    """What one candidate measured: its options, compile seconds, step seconds, scratch bytes."""

    options: StackOptions
    dots: str
    compile_s: float
    step_s: float
    step_min_s: float
    temp_bytes: int
    fits: bool

    def as_dict(self) -> dict:
        return {
            "unroll": self.options.unroll,
            "remat": self.options.remat.name,
            "dots": self.dots,
            "compiler_options": self.compiler_options,
            "compile_s": self.compile_s,
            "step_s": self.step_s,
            "step_min_s": self.step_min_s,
            "temp_bytes": self.temp_bytes,
            "fits": self.fits,
        }

    @property
    def compiler_options(self) -> dict | None:
        """What to pass as ``jax.jit(..., compiler_options=...)`` for this candidate's dots."""
        return DOT_BACKENDS[self.dots]


@dataclasses.dataclass(frozen=True)
class TuneReport:
    """Every candidate's measurements (fastest first) and the recommendation.

    ``best`` is the fastest candidate within the memory budget, or ``None`` when
    none fits; ``baseline`` is the plain scan (``unroll=1``, no remat) for ratios.
    """

    results: tuple[TuneResult, ...]
    best: TuneResult | None
    baseline: TuneResult | None
    memory_budget_bytes: int | None
    train: bool

    def as_dict(self) -> dict:
        return {
            "train": self.train,
            "memory_budget_bytes": self.memory_budget_bytes,
            "best": None if self.best is None else self.best.as_dict(),
            "results": [r.as_dict() for r in self.results],
        }


def default_unrolls(num_layers: int) -> tuple[int, ...]:
    """Unroll factors worth trying: 1, 2, 4, 8 (those below N) and N itself (fully unrolled)."""
    return tuple(sorted({u for u in (1, 2, 4, 8) if u < num_layers} | {max(num_layers, 1)}))


def _program(model: nn.Module, train: bool) -> Callable:
    def forward(variables, x):
        return model.apply(variables, x)[0]

    if not train:
        return forward

    def loss(variables, x):
        return jnp.mean(jnp.square(forward(variables, x)))

    return jax.value_and_grad(loss)


def _check_args(options, unrolls, remats, memory_budget_bytes, rounds):
    require_options(options)
    unrolls = tuple(check_integer("unrolls[i]", u, minimum=1) for u in unrolls)
    if not unrolls:
        raise ArgumentRangeError("unrolls", "at least one unroll factor", "()", "e.g. (1, 2, 4)")
    remats = tuple(remats)
    for r in remats:
        if not isinstance(r, Remat):
            raise ArgumentTypeError("remats", "Remat members", repr(r), "e.g. Remat.FULL")
    if not remats:
        raise ArgumentRangeError("remats", "at least one policy", "()", "e.g. (Remat.NONE,)")
    if memory_budget_bytes is not None:
        check_integer("memory_budget_bytes", memory_budget_bytes, minimum=0)
    check_integer("rounds", rounds, minimum=1)
    return unrolls, remats


def tune_stack(
    block: type[nn.Module],
    block_fields: dict,
    carry: jax.Array,
    options: StackOptions,
    *,
    unrolls: Sequence[int] | None = None,
    remats: Sequence[Remat] = tuple(Remat),
    dots: Sequence[str] | None = None,
    memory_budget_bytes: int | None = None,
    train: bool = True,
    rounds: int = 5,
    min_sample_s: float = 0.02,
    on_progress: Callable[[str], None] | None = None,
) -> TuneReport:
    """Measure every ``(unroll, remat)`` candidate of ``linen_stack(block, options)``; pick one.

    ``carry`` is an example input (``(B, ...)`` for a batched stack); ``options``
    gives everything but ``unroll`` and ``remat``, which are searched over
    ``unrolls`` (default :func:`default_unrolls`) and ``remats``. With ``train``
    the measured program is a gradient step, else the forward. ``dots`` names
    the dot backends to try (keys of :data:`DOT_BACKENDS`; default: both on CPU,
    ``("default",)`` elsewhere).

    >>> import jax.numpy as jnp
    >>> from composed_lifts import Block, Remat, StackOptions
    >>> report = tune_stack(Block, {"features": 4}, jnp.ones((2, 4)), StackOptions(num_layers=2),
    ...                     unrolls=(1, 2), remats=(Remat.NONE, Remat.FULL), dots=("default",),
    ...                     rounds=1)
    >>> sorted((r.options.unroll, r.options.remat.name) for r in report.results)
    [(1, 'FULL'), (1, 'NONE'), (2, 'FULL'), (2, 'NONE')]
    >>> report.best in report.results
    True
    """
    if unrolls is None and isinstance(options, StackOptions):
        unrolls = default_unrolls(options.num_layers)
    unrolls, remats = _check_args(options, unrolls or (), remats, memory_budget_bytes, rounds)
    if dots is None:
        dots = tuple(DOT_BACKENDS) if jax.default_backend() == "cpu" else ("default",)
    dots = tuple(dots)
    for d in dots:
        if d not in DOT_BACKENDS:
            raise ArgumentRangeError("dots", f"entries of {tuple(DOT_BACKENDS)}", repr(d))
    if not dots:
        raise ArgumentRangeError("dots", f"at least one of {tuple(DOT_BACKENDS)}", "()")
    say = on_progress or (lambda msg: None)
    candidates = [
        (dataclasses.replace(options, unroll=u, remat=r), d)
        for u in unrolls
        for r in remats
        for d in dots
    ]
    compiled: dict[tuple[StackOptions, str], tuple] = {}
    compile_seconds: dict[tuple[StackOptions, str], float] = {}
    temp_bytes: dict[tuple[StackOptions, str], int] = {}
    for opts, d in candidates:
        say(f"compile unroll={opts.unroll} remat={opts.remat.name} dots={d}")
        model = linen_stack(block, opts)(**block_fields)
        variables = model.init(jax.random.PRNGKey(0), carry)
        start = time.perf_counter()
        jitted = jax.jit(_program(model, train), compiler_options=DOT_BACKENDS[d])
        program = jitted.trace(variables, carry).lower().compile()
        compile_s = time.perf_counter() - start
        temp = int(program.memory_analysis().temp_size_in_bytes)
        jax.block_until_ready(program(variables, carry))
        compiled[opts, d] = (program, variables)
        compile_seconds[opts, d], temp_bytes[opts, d] = compile_s, temp

    def call(program, variables):
        return lambda: jax.block_until_ready(program(variables, carry))

    calls = {key: call(*compiled[key]) for key in compiled}
    inner = {key: calibrate(fn, min_sample_s) for key, fn in calls.items()}
    samples = round_robin(
        calls,
        rounds=rounds,
        inner=inner,
        on_round=lambda r: say(f"timed round {r + 1}/{rounds}"),
    )
    results = [
        TuneResult(
            options=opts,
            dots=d,
            compile_s=compile_seconds[opts, d],
            step_s=statistics.median(samples[opts, d]),
            step_min_s=min(samples[opts, d]),
            temp_bytes=temp_bytes[opts, d],
            fits=memory_budget_bytes is None or temp_bytes[opts, d] <= memory_budget_bytes,
        )
        for opts, d in compiled
    ]
    results.sort(key=lambda res: res.step_s)
    best = next((res for res in results if res.fits), None)
    baseline = next(
        (
            res
            for res in results
            if res.options.unroll == 1 and res.options.remat is Remat.NONE and res.dots == dots[0]
        ),
        None,
    )
    return TuneReport(tuple(results), best, baseline, memory_budget_bytes, train)
