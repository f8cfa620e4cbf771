"""Loaded params placed where the target's are: a target leaf that carries a sharding
(a ``jax.Array``, or a ``jax.ShapeDtypeStruct`` made with ``sharding=``) gets its loaded
leaf on those devices, split the same way; other leaves stay NumPy arrays.

This is how a checkpoint saved on one mesh is restored onto another (8 devices to 4,
data parallel to model parallel): build the target on the new mesh (``jax.eval_shape``
of the model's init, with ``param_shardings``), and ``load(path, like=target)``.
"""

from __future__ import annotations

import jax
import numpy as np

__all__ = ["place_like", "placement_of"]


def placement_of(leaf) -> jax.sharding.Sharding | None:
    """The sharding a target leaf asks for, or None (a NumPy array, a plain abstract leaf)."""
    sharding = getattr(leaf, "sharding", None)
    return sharding if isinstance(sharding, jax.sharding.Sharding) else None


def place_like(tree, like):
    """``tree`` with each leaf put where the matching leaf of ``like`` lives (if it says)."""
    try:
        targets, structure = jax.tree_util.tree_flatten(like)
    except Exception:  # an NNX module: its own arrays say where they live
        return tree
    if not any(placement_of(t) is not None for t in targets):
        return tree
    leaves = jax.tree_util.tree_leaves(tree)
    if len(leaves) != len(targets):
        return tree
    placed = [
        leaf if placement_of(t) is None else jax.device_put(np.asarray(leaf), placement_of(t))
        for leaf, t in zip(leaves, targets)
    ]
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(tree), placed)
