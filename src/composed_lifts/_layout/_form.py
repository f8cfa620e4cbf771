"""Changing a stack's form: ``unstack_params`` / ``stack_params`` for one stack's subtree, and
``to_form`` for stacks nested anywhere in a tree (form and layer axis at once).

Conversions only slice, stack and move axes, so round trips are exact (``==``). NumPy
leaves stay NumPy, JAX leaves stay JAX. They act on plain (unboxed) trees: apply
``flax.linen.meta.unbox`` to trees made with ``nn.with_partitioning`` first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._arguments import check_integer
from ..errors import ArgumentTypeError, LayoutMismatchError, StackLayoutError
from ._stack import Form, Stack, layer_name, subtree, unrolled_count, with_subtree

__all__ = ["stack_params", "to_form", "unstack_params"]


def _flat(tree):
    return jax.tree_util.tree_flatten_with_path(tree)[0]


def _xp(*leaves):
    return np if all(isinstance(a, (np.ndarray, np.generic)) for a in leaves) else jnp


def layer_names(layers: Mapping, num_layers: int) -> list[str]:
    """``["layers_0", ..., "layers_{N-1}"]``, checked to be exactly the keys of ``layers``."""
    names = [layer_name(i) for i in range(num_layers)]
    if set(layers) != set(names):
        raise LayoutMismatchError(
            "keys",
            "the keys of layers",
            f"the {num_layers} unrolled layers {names[0]} ... {names[-1]}",
            missing=sorted(set(names) - set(layers)),
            unexpected=sorted(set(layers) - set(names)),
            fix="make them with unstack_params",
        )
    return names


def unstack_params(tree: Any, *, axis: int = 0) -> dict[str, Any]:
    """Split a stacked tree along ``axis`` into ``{"layers_0": tree_0, ...}``.

    >>> import jax.numpy as jnp
    >>> stacked = {"Dense_0": {"kernel": jnp.arange(12.0).reshape(3, 2, 2)}}
    >>> layers = unstack_params(stacked)
    >>> sorted(layers), layers["layers_2"]["Dense_0"]["kernel"].tolist()
    (['layers_0', 'layers_1', 'layers_2'], [[8.0, 9.0], [10.0, 11.0]])
    >>> bool((stack_params(layers)["Dense_0"]["kernel"] == stacked["Dense_0"]["kernel"]).all())
    True
    """
    axis = check_integer("axis", axis, minimum=0)
    leaves = _flat(tree)
    if not leaves:
        raise StackLayoutError("empty", where="the tree given to unstack_params")
    sizes: dict[int, str] = {}
    for path, leaf in leaves:
        if jnp.ndim(leaf) <= axis:
            raise StackLayoutError(
                "no_layer_axis",
                leaf=jax.tree_util.keystr(path, simple=True, separator="/"),
                shape=jnp.shape(leaf),
                axis=axis,
                argument="axis=",
            )
        sizes.setdefault(jnp.shape(leaf)[axis], jax.tree_util.keystr(path))
    if len(sizes) > 1:
        raise StackLayoutError(
            "counts_differ",
            where="the tree given to unstack_params",
            what=f"layers on axis {axis}",
            counts={path: n for n, path in sizes.items()},
        )
    (num_layers,) = sizes
    index = (slice(None),) * axis
    return {
        layer_name(i): jax.tree_util.tree_map(lambda a, i=i: a[index + (i,)], tree)
        for i in range(num_layers)
    }


def stack_params(layers: Mapping[str, Any], *, axis: int = 0) -> Any:
    """Stack ``{"layers_0": tree_0, ...}`` into one tree with the layer axis at ``axis``.

    The inverse of :func:`unstack_params`: every layer must have the same tree
    structure, shapes and dtypes.
    """
    axis = check_integer("axis", axis, minimum=0)
    if not isinstance(layers, Mapping) or not layers:
        raise ArgumentTypeError(
            "layers", f"a non-empty mapping {{'{layer_name(0)}': tree, ...}}", repr(layers)
        )
    names = layer_names(layers, len(layers))
    trees = [layers[name] for name in names]
    first = jax.tree_util.tree_structure(trees[0])
    for name, tree in zip(names[1:], trees[1:]):
        if jax.tree_util.tree_structure(tree) != first:  # type: ignore[operator]
            raise LayoutMismatchError(
                "structure",
                name,
                names[0],
                seen=jax.tree_util.tree_structure(tree),
                expected=first,
                fix="every layer must have the same structure to be stacked",
            )
        for (path, a), b in zip(_flat(trees[0]), jax.tree_util.tree_leaves(tree)):
            if jnp.shape(a) != jnp.shape(b) or jnp.result_type(a) != jnp.result_type(b):
                raise LayoutMismatchError(
                    "leaf",
                    f"{name}{jax.tree_util.keystr(path)}",
                    f"{names[0]}{jax.tree_util.keystr(path)}",
                    seen=f"{jnp.result_type(b)}{jnp.shape(b)}",
                    expected=f"{jnp.result_type(a)}{jnp.shape(a)}",
                    fix="layers must match to be stacked",
                )
    return jax.tree_util.tree_map(lambda *ls: _xp(*ls).stack(ls, axis=axis), *trees)


def to_form(tree: Any, found: Stack, wanted: Stack) -> Any:
    """``tree`` with the stack ``found`` (as :func:`find_stack` measured it) in ``wanted``'s
    form and layer axis; the rest of the tree is untouched.

    >>> import numpy as np
    >>> from composed_lifts.layout import find_stack
    >>> tree = {"embed": np.zeros(2), "stack": {"w": np.arange(6.0).reshape(3, 2)}}
    >>> found = find_stack(tree, Stack("stack"))
    >>> sorted(to_form(tree, found, found.replace(form=Form.UNROLLED))["stack"])
    ['layers_0', 'layers_1', 'layers_2']
    """
    node = subtree(tree, found.path)
    unrolled = unrolled_count(node) is not None
    if unrolled is not (found.form is Form.UNROLLED):
        raise StackLayoutError(
            "form_differs",
            stack=found.path,
            seen="unrolled" if unrolled else "stacked",
            said=found.form,
        )
    if wanted.form is Form.UNROLLED and not unrolled:
        node = unstack_params(node, axis=found.layer_axis)
    elif wanted.form is not Form.UNROLLED and unrolled:
        node = stack_params(node, axis=wanted.layer_axis)
    elif not unrolled and wanted.layer_axis != found.layer_axis:
        node = jax.tree_util.tree_map(
            lambda a: _xp(a).moveaxis(a, found.layer_axis, wanted.layer_axis), node
        )
    else:
        return tree
    return with_subtree(tree, found.path, node)
