"""Where the layer axis sits, and whether a stack is shared by a batch or one per example, for
stacks nested anywhere in a tree.

``layer_axis_to(tree, k)`` moves each stacked leaf's layer axis from 0 to ``k`` (MaxText's
``param_scan_axis: 1``) and ``layer_axis_from(tree, k)`` moves it back;
``shared_to_ensemble(tree, size)`` gives every one of ``size`` examples its own copy of a
shared stack (``(N, ...)`` -> ``(B, N, ...)``) and ``ensemble_to_shared`` collapses an
ensemble whose members are all identical. ``stacks`` names the stacks (``Stack`` values or
``/``-joined paths, ``""`` for the whole tree); other leaves pass through untouched. Arrays
are only moved or copied, so round trips are ``==``.

>>> import numpy as np
>>> tree = {"embed": np.zeros((7, 2)), "stack": {"w": np.arange(24.0).reshape(4, 3, 2)}}
>>> moved = layer_axis_to(tree, 1, stacks=("stack",))
>>> moved["stack"]["w"].shape, moved["embed"].shape
((3, 4, 2), (7, 2))
>>> bool((layer_axis_from(moved, 1, stacks=("stack",))["stack"]["w"] == tree["stack"]["w"]).all())
True
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from .._arguments import check_integer
from ..errors import MembersDifferError, StackLayoutError
from ._stack import as_stacks, path_str

__all__ = [
    "ensemble_to_shared",
    "layer_axis_from",
    "layer_axis_to",
    "map_stacked_leaves",
    "move_layer_axis",
    "shared_to_ensemble",
]


def _xp(leaf):
    return np if isinstance(leaf, np.ndarray) else jax.numpy


def map_stacked_leaves(fn, tree: Any, stacks: Any = ("",)) -> Any:
    """``fn(path, leaf)`` on every leaf inside one of ``stacks``; other leaves unchanged."""
    stacks = as_stacks(stacks)
    found = []

    def visit(path, leaf):
        name = path_str(path)
        if not any(s.contains(name) for s in stacks):
            return leaf
        found.append(name)
        return fn(name, leaf)

    out = jax.tree_util.tree_map_with_path(visit, tree)
    if not found:
        raise StackLayoutError("empty", where=f"stacks={tuple(s.path for s in stacks)!r}")
    return out


def move_layer_axis(tree: Any, source: int, destination: int, *, stacks: Any = ("",)) -> Any:
    """Move every stacked leaf's layer axis from ``source`` to ``destination``."""
    source = check_integer("source", source, minimum=0)
    destination = check_integer("destination", destination, minimum=0)

    def move(name, leaf):
        if np.ndim(leaf) <= max(source, destination):
            raise StackLayoutError(
                "no_layer_axis",
                leaf=name,
                shape=np.shape(leaf),
                axis=max(source, destination),
                argument="position=",
            )
        return _xp(leaf).moveaxis(leaf, source, destination)

    return map_stacked_leaves(move, tree, stacks)


def layer_axis_to(tree: Any, position: int, *, stacks: Any = ("",)) -> Any:
    """Move every stacked leaf's layer axis from 0 to ``position``."""
    position = check_integer("position", position, minimum=0)
    return move_layer_axis(tree, 0, position, stacks=stacks)


def layer_axis_from(tree: Any, position: int, *, stacks: Any = ("",)) -> Any:
    """Move every stacked leaf's layer axis from ``position`` back to 0 (inverse of :func:`layer_axis_to`)."""
    position = check_integer("position", position, minimum=0)
    return move_layer_axis(tree, position, 0, stacks=stacks)


def shared_to_ensemble(tree: Any, size: int, *, stacks: Any = ("",)) -> Any:
    """Give each of ``size`` examples its own copy of the shared stacks: ``(N, ...)`` -> ``(B, N, ...)``."""
    size = check_integer("size", size, minimum=1)

    def broadcast(name, leaf):
        return _xp(leaf).repeat(leaf[None], size, axis=0)

    return map_stacked_leaves(broadcast, tree, stacks)


def ensemble_to_shared(tree: Any, *, stacks: Any = ("",)) -> Any:
    """Drop the ensemble axis ``(B, N, ...)`` -> ``(N, ...)`` when every member is identical.

    Raises :class:`~composed_lifts.errors.MembersDifferError` naming the first leaf and
    member that differ (NaNs compare by bit pattern, so a NaN member equals itself).
    """

    def collapse(name, leaf):
        if np.ndim(leaf) < 1 or np.shape(leaf)[0] < 1:
            raise StackLayoutError("no_ensemble_axis", leaf=name, shape=np.shape(leaf))
        host = np.asarray(leaf)
        first = host[0]
        bits = (
            first.view(np.uint8)
            if first.dtype.itemsize == 1
            else first.view(f"u{first.dtype.itemsize}")
        )
        for b in range(1, host.shape[0]):
            if not np.array_equal(host[b].view(bits.dtype), bits):
                raise MembersDifferError(name, b)
        return leaf[0]

    return map_stacked_leaves(collapse, tree, stacks)
