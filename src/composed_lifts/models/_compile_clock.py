"""Seconds JAX spends tracing, lowering and compiling, measured by its own monitoring events."""

from __future__ import annotations

import threading

import jax.monitoring

__all__ = ["CompileClock"]

_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_active: threading.local = threading.local()
_registered = False


def _listen(event: str, duration_secs: float, **kwargs: str | int) -> None:
    for clock in getattr(_active, "clocks", ()):
        if event in _EVENTS:
            clock.seconds += duration_secs


class CompileClock:
    """``with clock:`` adds to ``clock.seconds`` the compile events of this thread meanwhile."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self) -> CompileClock:
        global _registered
        if not _registered:
            jax.monitoring.register_event_duration_secs_listener(_listen)
            _registered = True
        _active.clocks = (*getattr(_active, "clocks", ()), self)
        return self

    def __exit__(self, *exc) -> None:
        _active.clocks = tuple(c for c in _active.clocks if c is not self)
