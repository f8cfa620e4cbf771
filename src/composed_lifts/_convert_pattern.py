"""Exact conversions between a pattern stack's scanned params and the unrolled layers.

``unstack_pattern_params(tree, pattern)`` gives ``{"layers_0": ..., "layers_{N-1}":
...}``, each layer's params named by its *true* index (layer ``i`` is the kind
``pattern.kind(i)``); ``stack_pattern_params(layers, pattern)`` inverts it into the
``repeats`` / ``remainder`` tree (see :mod:`composed_lifts._pattern`). Both only
slice and stack arrays, so round trips are exact (``==``). ``axis=1`` for an
ensemble's ``(B, R, ...)``. They act on plain (unboxed) trees.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ._arguments import check_integer
from ._pattern import LayerPattern, kind_key, layer_key
from .errors import ArgumentTypeError, LayoutMismatchError

__all__ = ["stack_pattern_params", "unstack_pattern_params"]


def _require(pattern: Any) -> LayerPattern:
    if not isinstance(pattern, LayerPattern):
        raise ArgumentTypeError("pattern", "a LayerPattern", repr(pattern))
    return pattern


def _same_keys(where: str, tree: Any, want: list[str], fix: str) -> None:
    if not isinstance(tree, Mapping):
        raise LayoutMismatchError(
            "leaf", where, "this pattern", fix, seen=repr(tree), expected=f"the keys {want}"
        )
    if set(tree) != set(want):
        raise LayoutMismatchError(
            "keys",
            f"the keys of {where}",
            f"the keys this pattern makes {want}",
            fix,
            missing=sorted(set(want) - set(tree)),
            unexpected=sorted(set(tree) - set(want)),
        )


def unstack_pattern_params(tree: Any, pattern: LayerPattern, *, axis: int = 0) -> dict[str, Any]:
    """Split a pattern stack's params into ``{"layers_i": params of true layer i}``.

    >>> import jax.numpy as jnp
    >>> from composed_lifts import LayerPattern
    >>> pattern = LayerPattern(period=("a", "b"), num_layers=5)       # a b a b a
    >>> tree = {"repeats": {"kind_0": {"w": jnp.array([0.0, 2.0])},
    ...                     "kind_1": {"w": jnp.array([1.0, 3.0])}},
    ...         "remainder": {"kind_0": {"w": jnp.array([4.0])}}}
    >>> layers = unstack_pattern_params(tree, pattern)
    >>> [float(layers[f"layers_{i}"]["w"]) for i in range(5)]
    [0.0, 1.0, 2.0, 3.0, 4.0]
    >>> back = stack_pattern_params(layers, pattern)
    >>> bool((back["remainder"]["kind_0"]["w"] == tree["remainder"]["kind_0"]["w"]).all())
    True
    """
    pattern = _require(pattern)
    axis = check_integer("axis", axis, minimum=0)
    parts = pattern.parts()
    fix = "were these params made by a pattern stack of another pattern or num_layers?"
    _same_keys("tree", tree, [part for part, _, _ in parts], fix)
    for part, length, count in parts:
        _same_keys(f"tree[{part!r}]", tree[part], [kind_key(j) for j in range(count)], fix)
        for j in range(count):
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree[part][kind_key(j)])[0]:
                shape = jnp.shape(leaf)
                if len(shape) <= axis or shape[axis] != length:
                    raise LayoutMismatchError(
                        "leaf",
                        f"{part}/{kind_key(j)}{jax.tree_util.keystr(path)}",
                        f"this part of {length} layers",
                        fix,
                        seen=f"of shape {shape}",
                        expected=f"{length} on axis {axis}",
                    )
    index = (slice(None),) * axis
    layers = {}
    for i in range(pattern.num_layers):
        part, key, step = pattern.where(i)
        layers[layer_key(i)] = jax.tree_util.tree_map(
            lambda a, step=step: a[index + (step,)], tree[part][key]
        )
    return layers


def stack_pattern_params(layers: Mapping[str, Any], pattern: LayerPattern, *, axis: int = 0) -> Any:
    """Stack ``{"layers_i": ...}`` (true layer indices) into a pattern stack's params.

    The inverse of :func:`unstack_pattern_params`: the layers of one position of
    the period must have the same tree structure, shapes and dtypes.
    """
    pattern = _require(pattern)
    axis = check_integer("axis", axis, minimum=0)
    names = [layer_key(i) for i in range(pattern.num_layers)]
    reference = f"the {pattern.num_layers} layers of this pattern" + (
        f" {names[0]} ... {names[-1]}" if names else ""
    )
    fix = "make them with unstack_pattern_params"
    if not isinstance(layers, Mapping):
        raise LayoutMismatchError(
            "leaf", "layers", reference, fix, seen=repr(layers), expected="a dict of them"
        )
    if set(layers) != set(names):
        raise LayoutMismatchError(
            "keys",
            "the keys of layers",
            reference,
            fix,
            missing=sorted(set(names) - set(layers)),
            unexpected=sorted(set(layers) - set(names)),
        )
    tree: dict[str, Any] = {}
    for part, length, count in pattern.parts():
        first = pattern.first_layer(part)
        tree[part] = {}
        for j in range(count):
            which = [first + step * pattern.size + j for step in range(length)]
            trees = [layers[layer_key(i)] for i in which]
            _check_alike(which, trees)
            tree[part][kind_key(j)] = jax.tree_util.tree_map(
                lambda *a: jnp.stack(a, axis=axis), *trees
            )
    return tree


def _check_alike(which: list[int], trees: list) -> None:
    """The layers of one position have one structure, shape and dtype (the first's)."""
    first_def = jax.tree_util.tree_structure(trees[0])
    first = jax.tree_util.tree_flatten_with_path(trees[0])[0]
    for i, tree in zip(which[1:], trees[1:]):
        if jax.tree_util.tree_structure(tree) != first_def:  # type: ignore[operator]
            raise LayoutMismatchError(
                "structure",
                layer_key(i),
                f"{layer_key(which[0])}, of the same kind,",
                "layers of one kind must match to be stacked",
                seen=jax.tree_util.tree_structure(tree),
                expected=first_def,
            )
        for (path, a), b in zip(first, jax.tree_util.tree_leaves(tree)):
            if jnp.shape(a) != jnp.shape(b) or jnp.result_type(a) != jnp.result_type(b):
                raise LayoutMismatchError(
                    "leaf",
                    f"{layer_key(i)}{jax.tree_util.keystr(path)}",
                    f"{layer_key(which[0])}{jax.tree_util.keystr(path)}, of the same kind,",
                    "layers of one kind must match to be stacked",
                    seen=f"{jnp.result_type(b)}{jnp.shape(b)}",
                    expected=f"{jnp.result_type(a)}{jnp.shape(a)}",
                )
