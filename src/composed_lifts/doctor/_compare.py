"""``compare_lift_orders``: how ``nn.vmap(nn.scan(B))`` and ``nn.scan(nn.vmap(B))`` differ.

The seed says the reversed order is "structurally different". Whether a user
can see any difference depends on the block and on the lifts' settings, so
this module measures it instead of repeating it: it builds both orders with
the same per-lift settings, initialises both from the same key, and compares
the param trees (structure, shapes, values) and the outputs on a small random
input, once with each order's own init and once with the same params (the
vmap-of-scan params, their layer and batch axes swapped where the layouts
differ).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ._inputs import BlockSpec
from ._spec import Composition, LiftOrder, compose

__all__ = ["OrderComparison", "compare_lift_orders"]


@dataclasses.dataclass(frozen=True)
class OrderComparison:
    """The measured difference between the two lift orders for one block and one carry.

    Attributes:
      reversed_error: the error the reversed order raised (``None`` when it ran).
      same_structure: the two param trees have the same paths.
      axes_swapped: the layouts differ by the order of the layer and batch axes
        (``(B, N, ...)`` for vmap-of-scan, ``(N, B, ...)`` reversed).
      params_equal: the init values are equal (after swapping the axes), or ``None``.
      outputs_max_diff: max ``|y_vmap_of_scan - y_scan_of_vmap|``, each with its own init.
      same_params_max_diff: the same with the reversed order given the vmap-of-scan
        params (axes swapped), or ``None`` when the trees do not match.
    """

    reversed_error: str | None
    same_structure: bool
    axes_swapped: bool
    params_equal: bool | None
    outputs_max_diff: float | None
    same_params_max_diff: float | None

    @property
    def identical(self) -> bool:
        """Same params, same shapes, same values, same outputs: nothing a user can see differs."""
        return (
            self.reversed_error is None
            and self.same_structure
            and not self.axes_swapped
            and bool(self.params_equal)
            and self.outputs_max_diff == 0.0
        )

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _random_carry(carry, key):
    leaves, treedef = jax.tree_util.tree_flatten(carry)
    keys = jax.random.split(key, len(leaves))
    out = [
        jax.random.normal(k, s.shape, s.dtype)
        if jnp.issubdtype(s.dtype, jnp.floating)
        else jnp.zeros(s.shape, s.dtype)
        for k, s in zip(keys, leaves)
    ]
    return jax.tree_util.tree_unflatten(treedef, out)


def _max_diff(a, b) -> float:
    diffs = [
        float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)), initial=0.0))
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))
    ]
    return max(diffs, default=0.0)


def compare_lift_orders(
    block: BlockSpec, composition: Composition, carry, *, seed: int = 0
) -> OrderComparison:
    """Build both orders of ``composition`` for ``block`` and measure what differs.

    ``carry`` is the abstract batched carry; the input is drawn from ``seed``.
    Runs (and compiles) both models once: keep the shapes small.
    """
    kwargs = dict(block.fields)
    good = compose(block.cls, composition.with_order(LiftOrder.VMAP_OF_SCAN))(**kwargs)
    rev = compose(block.cls, composition.with_order(LiftOrder.SCAN_OF_VMAP))(**kwargs)
    key, data_key = jax.random.split(jax.random.PRNGKey(seed))
    try:
        good_shapes = jax.eval_shape(good.init, key, carry, None)
        rev_shapes = jax.eval_shape(rev.init, key, carry, None)
    except Exception as err:  # noqa: BLE001 - reported, not hidden: it is the finding
        return OrderComparison(f"{type(err).__name__}: {err}", False, False, None, None, None)
    same_structure = bool(
        jax.tree_util.tree_structure(good_shapes)  # type: ignore[operator]
        == jax.tree_util.tree_structure(rev_shapes)
    )
    both_add_axes = (
        composition.scan.variable_axis is not None and composition.vmap.variable_axis is not None
    )
    swap = same_structure and both_add_axes

    def to_reversed(variables):
        if not swap:
            return variables
        return {
            col: jax.tree_util.tree_map(lambda a: jnp.swapaxes(a, 0, 1), tree)
            if col == "params"
            else tree
            for col, tree in variables.items()
        }

    mapped_shapes = jax.eval_shape(to_reversed, good_shapes) if same_structure else None
    comparable = same_structure and jax.tree_util.tree_all(
        jax.tree_util.tree_map(lambda a, b: a.shape == b.shape, mapped_shapes, rev_shapes)
    )

    @jax.jit
    def run(key, x):
        p_good = good.init(key, x, None)
        p_rev = rev.init(key, x, None)
        y_good = good.apply(p_good, x, None)[0]
        y_rev = rev.apply(p_rev, x, None)[0]
        y_same = rev.apply(to_reversed(p_good), x, None)[0] if comparable else None
        return to_reversed(p_good) if comparable else None, p_rev, y_good, y_rev, y_same

    x = _random_carry(carry, data_key)
    try:
        p_good, p_rev, y_good, y_rev, y_same = run(key, x)
    except Exception as err:  # noqa: BLE001 - as above
        error = f"{type(err).__name__}: {err}"
        return OrderComparison(error, same_structure, swap, None, None, None)
    params_equal = None
    if comparable:
        params_equal = all(
            bool(np.array_equal(a, b))
            for a, b in zip(jax.tree_util.tree_leaves(p_good), jax.tree_util.tree_leaves(p_rev))
        )
    return OrderComparison(
        reversed_error=None,
        same_structure=same_structure,
        axes_swapped=swap,
        params_equal=params_equal,
        outputs_max_diff=_max_diff(y_good, y_rev),
        same_params_max_diff=_max_diff(y_good, y_same) if comparable else None,
    )
