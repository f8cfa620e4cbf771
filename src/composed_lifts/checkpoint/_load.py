"""``load``: whatever layout is on disk, converted to the target's, streamed and checked.

The format handler (:func:`~composed_lifts.checkpoint._format.format_for`) reads the
bytes; ``_state.py`` maps them into the target's layout.
"""

from __future__ import annotations

import os

from .._keymap import KeyMap
from ..layout import as_stacks
from ._format import format_for
from ._record import Layout

__all__ = ["load", "read_layout"]


def read_layout(path: str | os.PathLike) -> Layout | None:
    """The layout a checkpoint records (None for a file that records none)."""
    path = os.fspath(path)
    return format_for(path).describe(path).layout


def load(
    path: str | os.PathLike,
    like=None,
    *,
    keymap: KeyMap | None = None,
    layer_axis: int | None = None,
    saved_as=None,
):
    """Load a checkpoint into the layout of ``like``.

    ``like`` is the target: concrete params, an abstract tree (``jax.eval_shape`` of the
    model's init), or an NNX stack (a new stack with the loaded params is returned). A
    stacked checkpoint loads into an unrolled target and back; the target's stacks have
    their layer axis at ``layer_axis`` (default 0, or 1 for an ensemble's ``(B, N, ...)``).
    Leaves come back as NumPy arrays, except where ``like``'s leaf carries a sharding (a
    ``jax.Array``, or ``jax.ShapeDtypeStruct(..., sharding=...)``): those come back placed
    with it, so a checkpoint saved on one mesh restores onto another (an Orbax checkpoint
    already in the target's layout is then read by each device for its own part). Without
    ``like``, the tree as saved. A file that records no layout (a plain Orbax or
    safetensors checkpoint from another tool) needs ``saved_as``, the scanned stacks it
    holds (``Stack(path, layer_axis)`` or a sequence of them; e.g. MaxText's
    ``Stack("params/decoder/layers", layer_axis=1)``), or an explicit ``keymap``. Shapes,
    dtypes and layer counts are checked against ``like`` before any data is read, each
    tensor's checksum as it is read; the target is never modified.
    """
    path = os.fspath(path)
    if saved_as is not None:
        saved_as = as_stacks(saved_as)
    return format_for(path).restore(
        path, like, keymap=keymap, layer_axis=layer_axis, saved_as=saved_as
    )
