"""What one layer's variables ask of the lifts as written: partition names, other collections.

A block whose params carry ``nn.with_partitioning`` metadata can be moved by a lift only
when that lift names the new axis (``metadata_params={nn.PARTITION_NAME: ...}``); a block
that keeps variables outside ``params`` (``BatchNorm``'s ``batch_stats``) needs every lift
to say where they go. :func:`unlifted_variables` reads both facts from one layer's
variables evaluated abstractly, against the lifts the composition writes.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax

from ..layout import path_str
from ._inputs import BlockSpec, one_layer_init, per_example
from ._spec import Composition

__all__ = ["Unlifted", "unlifted_variables"]


@dataclasses.dataclass(frozen=True)
class Unlifted:
    """What the lifts as written cannot carry.

    Attributes:
      partitioned: ``(path, names)`` of the first param with partition names, when a
        lift gives params a new axis without naming it; else ``None``.
      unnamed_in: the lifts (``"nn.scan"``, ``"nn.vmap"``) that give params an unnamed axis.
      collections: ``(collection, first path)`` of every collection besides ``params``
        that some lift does not name.
    """

    partitioned: tuple[str, tuple] | None
    unnamed_in: tuple[str, ...]
    collections: tuple[tuple[str, str], ...]

    def __bool__(self) -> bool:
        return self.partitioned is not None or bool(self.collections)


def unlifted_variables(block: BlockSpec, composition: Composition, carry) -> Unlifted:
    """The variables of one layer of ``block`` on ``carry`` (batched) that the lifts of
    ``composition`` cannot carry (``jax.eval_shape``: nothing is computed)."""
    variables = jax.eval_shape(
        one_layer_init(block, composition), jax.random.PRNGKey(0), per_example(carry, composition)
    )
    lifts = composition.lifts()
    boxed = jax.tree_util.tree_flatten_with_path(
        variables.get("params", {}), is_leaf=lambda x: isinstance(x, nn.meta.AxisMetadata)
    )[0]
    named = [
        (path_str(p), tuple(getattr(leaf, "names", ())))
        for p, leaf in boxed
        if isinstance(leaf, nn.meta.AxisMetadata)
    ]
    unnamed_in = tuple(lifts.unnamed_param_axes())
    collections = []
    for name in sorted(c for c in variables if c != "params"):
        leaves = jax.tree_util.tree_flatten_with_path(variables[name])[0]
        if leaves and not lifts.lifted(name):
            collections.append((name, "/".join((name, path_str(leaves[0][0])))))
    return Unlifted(
        named[0] if named and unnamed_in else None,
        unnamed_in if named else (),
        tuple(collections),
    )
