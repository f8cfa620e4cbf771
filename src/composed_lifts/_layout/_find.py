"""``find_stacks``: the stacks a tree holds, each measured: its form, N and ensemble size."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from ..errors import StackLayoutError
from ._stack import Form, Stack, as_stacks, layer_name, path_str, subtree, unrolled_count

__all__ = ["find_stack", "find_stacks", "layer_tree"]


def layer_tree(node: Any) -> Any:
    """One layer's subtree of a stack's node (``layers_0`` when unrolled, else the node)."""
    return node[layer_name(0)] if unrolled_count(node) is not None else node


def find_stack(tree: Any, stack: Stack) -> Stack:
    """``stack`` with its form, number of layers and ensemble size read from ``tree``.

    The subtree at ``stack.path`` is unrolled when its keys are exactly ``layers_0 ...
    layers_{N-1}``, else stacked with N on ``stack.layer_axis``; every leaf must agree on
    N (and on the members on axis 0 for an ensemble). Fields ``stack`` already gives
    must match the tree.
    """
    node = subtree(tree, stack.path)
    if not jax.tree_util.tree_leaves(node):
        raise StackLayoutError("empty", where=f"stack {stack.path!r}")
    unrolled = unrolled_count(node)
    form = Form.STACKED if unrolled is None else Form.UNROLLED
    ensemble = stack.ensemble_size is not None
    counts: dict[int, str] = {}
    sizes: dict[int, str] = {}
    for p, leaf in jax.tree_util.tree_flatten_with_path(layer_tree(node))[0]:
        shape = np.shape(leaf)
        name = "/".join(x for x in (stack.path, path_str(p)) if x)
        rank_needed = max(stack.layer_axis if unrolled is None else -1, 0 if ensemble else -1)
        if len(shape) <= rank_needed:
            raise StackLayoutError(
                "no_layer_axis",
                leaf=name,
                shape=shape,
                axis=stack.layer_axis,
                argument=f"Stack({stack.path!r}, layer_axis=...)",
            )
        if unrolled is None:
            counts.setdefault(shape[stack.layer_axis], name)
        if ensemble:
            sizes.setdefault(shape[0], name)
    for what, found in ((f"layers on axis {stack.layer_axis}", counts), ("members", sizes)):
        if len(found) > 1:
            raise StackLayoutError(
                "counts_differ",
                where=f"stack {stack.path!r}",
                what=what,
                counts={name: n for n, name in found.items()},
            )
    num = unrolled if unrolled is not None else next(iter(counts))
    size = next(iter(sizes)) if sizes else None
    found_stack = stack.replace(num_layers=int(num), form=form, ensemble_size=size)
    for field in ("num_layers", "form", "ensemble_size"):
        said, seen = getattr(stack, field), getattr(found_stack, field)
        if said is not None and said != seen:
            raise StackLayoutError(
                "field_differs", stack=stack.path, field=field, seen=seen, said=said
            )
    return found_stack


def find_stacks(tree: Any, stacks: Any = None) -> tuple[Stack, ...]:
    """Each of ``stacks`` (``Stack`` values or ``/``-joined paths; ``None``: the whole tree)
    measured in ``tree`` by :func:`find_stack`.

    >>> import numpy as np
    >>> tree = {"embed": np.zeros((5, 2)), "stack": {"w": np.zeros((4, 3, 2))}}
    >>> find_stacks(tree, ["stack"])
    (Stack(path='stack', layer_axis=0, ensemble_size=None, num_layers=4, form=<Form.STACKED: 'stacked'>),)
    """
    return tuple(find_stack(tree, s) for s in as_stacks(stacks))
