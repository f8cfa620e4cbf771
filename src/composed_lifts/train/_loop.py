"""The training loop over :class:`Trainer` steps: batches by data position, checkpoints every K
steps, a stop on a non-finite loss, and a clean stop on request (SIGTERM) after a whole step.

``train_loop`` is the loop the command line runs, usable from Python as it is: the
trainer, its state, the data, and callbacks for progress and for a stop request.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from ._data import TokenWindows
from ._errors import NonFiniteLossError
from ._state_io import save_train_state
from ._step import Trainer, TrainState

__all__ = ["LoopResult", "train_loop"]


@dataclasses.dataclass(frozen=True)
class LoopResult:
    """How the loop ended: the state, the data position, and whether a stop was requested."""

    state: TrainState
    position: int
    stopped: bool


@contextlib.contextmanager
def _signals_held():
    """SIGTERM/SIGINT wait until a checkpoint is written (then arrive): a save is never cut."""
    held = {signal.SIGTERM, signal.SIGINT}
    try:
        before = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    except (ValueError, OSError):  # not the main thread: nothing to hold
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _global_batch(trainer: Trainer, ids: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    """The step's batch: as is on one process; this process's rows of it across processes."""
    if jax.process_count() == 1:
        return {"ids": ids, "mask": mask}
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    assert trainer.mesh is not None and trainer.rules is not None
    sharding = NamedSharding(trainer.mesh, P(trainer.rules.batch))
    per = len(ids) // jax.process_count()
    mine = slice(jax.process_index() * per, (jax.process_index() + 1) * per)
    return {
        name: jax.make_array_from_process_local_data(sharding, a[mine], a.shape)
        for name, a in (("ids", ids), ("mask", mask))
    }


def train_loop(
    trainer: Trainer,
    state: TrainState,
    data: TokenWindows,
    *,
    rows: int,
    position: int = 0,
    checkpoint: str | os.PathLike | None = None,
    save_every: int = 0,
    on_step: Callable[[int, dict], None] | None = None,
    stop_requested: Callable[[], bool] = lambda: False,
) -> LoopResult:
    """Run steps ``state.step + 1 .. trainer.options.steps`` on ``rows`` windows each.

    Saves the state to ``checkpoint`` every ``save_every`` steps, at the last step and when
    ``stop_requested()`` turns true (checked after each whole step; the loop then returns
    with ``stopped=True``). A non-finite loss raises :class:`NonFiniteLossError` naming the
    step, before anything of that step is saved.
    """
    steps = trainer.options.steps
    saved = os.fspath(checkpoint) if checkpoint and os.path.exists(checkpoint) else None

    def save(s: TrainState, p: int) -> None:
        nonlocal saved
        if checkpoint is not None:
            with _signals_held():
                save_train_state(checkpoint, s, data_position=p)
            saved = os.fspath(checkpoint)

    done = int(state.step)
    while done < steps:
        ids, mask = data.rows(position, rows)
        state, metrics = trainer.step(state, _global_batch(trainer, ids, mask))
        position += rows
        done += 1
        values = {k: float(v) for k, v in metrics.items()}
        if not math.isfinite(values["loss"]):
            raise NonFiniteLossError(done, values["loss"], saved)
        if on_step is not None:
            on_step(done, values)
        stop = stop_requested()
        if stop or done == steps or (save_every and done % save_every == 0):
            save(state, position)
        if stop and done < steps:
            return LoopResult(state, position, True)
    return LoopResult(state, position, False)
