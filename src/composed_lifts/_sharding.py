"""A stack on many devices: a mesh, logical-axis rules, and params created on their shards.

The stack's description already names its axes: the batch (the vmap's axis,
``StackOptions.batch_axis_name``, default ``"batch"``), the layers (the scan's
axis, ``StackOptions.layer_axis_name``, default ``"layers"``), and whatever
feature names the block gives its params with ``nn.with_partitioning``.
:class:`ShardingRules` maps those logical names onto the axes of a
``jax.sharding.Mesh``; everything else is JAX's own SPMD partitioner:

- :func:`param_shardings` turns an abstract variables tree (``jax.eval_shape``
  of ``model.init``) into ``NamedSharding`` s;
- :func:`sharded_init` runs ``model.init`` under ``jax.jit`` with those
  ``out_shardings``, so every device creates only its own shard (the params are
  never whole on one device);
- :func:`shard_batch` splits the examples over the rules' batch mesh axis.

Params whose leaves carry no partitioning metadata (a plain ``nn.Dense``, the
seed's ``Block``) can still be placed: ``ShardingRules.param_axes`` names their
trailing (per-layer) axes by path, and the axes the lifts added in front
(``(layers, ...)`` for a shared stack, ``(batch, layers, ...)`` for an ensemble)
are named from the stack's options.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ._options import BatchMode, StackOptions, require_options
from .errors import (
    ArgumentRangeError,
    ArgumentTypeError,
    DeviceCountError,
    MeshAxisError,
    ShardingRuleError,
    UnevenBatchError,
)
from .layout import Stack, as_stacks

__all__ = [
    "ShardingRules",
    "device_mesh",
    "logical_specs",
    "param_shardings",
    "shard_batch",
    "sharded_init",
]


def device_mesh(axes: Mapping[str, int]) -> Mesh:
    """A mesh with the named axes and sizes, e.g. ``device_mesh({"data": 4, "model": 2})``.

    Shardings propagate automatically (``AxisType.Auto``, JAX's GSPMD partitioner).
    Refuses a mesh larger than the devices there are, saying how to get more on CPU.
    """
    if not isinstance(axes, Mapping) or not axes:
        raise ArgumentTypeError(
            "axes",
            "a non-empty mapping from mesh axis name to size",
            repr(axes),
            "e.g. device_mesh({'data': 8})",
        )
    for name, size in axes.items():
        if not isinstance(name, str) or isinstance(size, bool) or not isinstance(size, int):
            raise ArgumentTypeError(
                "axes",
                "a mapping from str names to int sizes",
                f"{name!r}: {size!r}",
                "e.g. device_mesh({'data': 8})",
            )
        if size < 1:
            raise ArgumentRangeError(f"axes[{name!r}]", ">= 1", size)
    want = int(np.prod(list(axes.values())))
    have = jax.device_count()
    if want > have:
        raise DeviceCountError(want, have, jax.default_backend())
    auto = (jax.sharding.AxisType.Auto,) * len(axes)
    devices = jax.devices()[:want]
    return jax.make_mesh(tuple(axes.values()), tuple(axes), axis_types=auto, devices=devices)


@dataclasses.dataclass(frozen=True)
class ShardingRules:
    """Where each logical axis of a stack goes on the mesh (``None``: replicated).

    Attributes:
      batch: mesh axis the examples are split over (data parallel); the vmap's axis
        and an ensemble's leading params axis.
      layers: mesh axis the layer axis is split over (stage-wise placement: device
        k holds layers ``k*N/d ... (k+1)*N/d - 1``).
      features: pairs ``(logical name, mesh axis or None)`` for the block's own names,
        e.g. ``(("mlp", "model"), ("embed", None))`` (Flax's logical axis rules).
      param_axes: pairs ``(path regex, logical names)`` naming the trailing axes of
        params that carry no ``nn.with_partitioning`` metadata, matched against
        ``jax.tree_util.keystr`` of the leaf's path with ``re.search``; the first match
        wins, e.g. ``((r"Dense_0.*kernel", ("embed", "mlp")),)``.

    >>> rules = ShardingRules(batch="data", features=(("mlp", "model"),))
    >>> rules.flax_rules()
    (('batch', 'data'), ('layers', None), ('mlp', 'model'))
    """

    batch: str | None = "data"
    layers: str | None = None
    features: tuple[tuple[str, str | None], ...] = ()
    param_axes: tuple[tuple[str, tuple[str | None, ...]], ...] = ()

    def __post_init__(self):
        for name in ("batch", "layers"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ArgumentTypeError(
                    f"ShardingRules.{name}", "a mesh axis name (str) or None", repr(value)
                )
        object.__setattr__(self, "features", _pairs("features", self.features))
        object.__setattr__(self, "param_axes", _pairs("param_axes", self.param_axes))

    def flax_rules(
        self, *, batch_axis_name: str = "batch", layer_axis_name: str | None = "layers"
    ) -> tuple[tuple[str, str | None], ...]:
        """The rules as Flax's ``(logical name, mesh axis)`` pairs."""
        rules: list[tuple[str, Any]] = [(batch_axis_name, self.batch)]
        if layer_axis_name is not None:
            rules.append((layer_axis_name, self.layers))
        rules.extend(self.features)
        return tuple(rules)

    def mesh_axes(self) -> set[str]:
        """Every mesh axis these rules use."""
        named = [self.batch, self.layers, *(axis for _, axis in self.features)]
        return {axis for axis in named if axis is not None}


def _pairs(name: str, value) -> tuple:
    if isinstance(value, Mapping):
        value = tuple(value.items())
    try:
        pairs = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in value)
    except (TypeError, ValueError):
        raise ArgumentTypeError(
            f"ShardingRules.{name}", "a sequence of (name, value) pairs", repr(value)
        ) from None
    for key, _ in pairs:
        if not isinstance(key, str):
            raise ArgumentTypeError(f"ShardingRules.{name} keys", "str", repr(key))
    return pairs


def _options(options: StackOptions | None) -> StackOptions:
    if options is None:
        return StackOptions(num_layers=1)
    return require_options(options)


def _in_stack(parts: list[str], stacks: tuple[Stack, ...]) -> bool:
    """Whether a leaf (its path's keys) lies in one of ``stacks``, named with or without the
    collection (``params``) in front."""
    paths = ("/".join(parts), "/".join(parts[1:]))
    return any(stack.contains(path) for stack in stacks for path in paths)


def logical_specs(
    abstract_variables,
    rules: ShardingRules,
    options: StackOptions | None = None,
    *,
    stacks: Sequence[Stack | str] | None = None,
):
    """Each param's logical ``PartitionSpec``: its metadata, else the lifts' axes + ``param_axes``.

    ``stacks`` names where the stacks are in a larger tree (:class:`~composed_lifts.layout.Stack`
    values or ``/``-joined paths, with or without the collection in front: ``("layers",)``
    for a model whose ``params/layers`` is a ``linen_stack``): leaves there get the lifts'
    leading axes, leaves elsewhere (embeddings, a head) only the names ``param_axes`` gives
    them. ``None`` (the default): the tree is one stack.
    """
    options = _options(options)
    found = as_stacks(stacks)
    boxed = nn.get_partition_spec(abstract_variables)
    unboxed = nn.meta.unbox(abstract_variables)
    stack_lead: tuple[str | None, ...] = (options.layer_axis_name,)
    if options.batch is BatchMode.ENSEMBLE:
        stack_lead = (options.batch_axis_name, *stack_lead)
    patterns = [(re.compile(pattern), axes) for pattern, axes in rules.param_axes]

    def spec(path, leaf_spec, leaf):
        if tuple(leaf_spec):  # the block named its axes (nn.with_partitioning)
            return leaf_spec
        parts = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
        lead = stack_lead if _in_stack(parts, found) else ()
        ndim = len(leaf.shape)
        where = jax.tree_util.keystr(path)
        if ndim < len(lead):
            return P()
        trailing: tuple[str | None, ...] = (None,) * (ndim - len(lead))
        for pattern, axes in patterns:
            if pattern.search(where):
                if len(axes) != ndim - len(lead):
                    raise ShardingRuleError(where, leaf.shape, pattern.pattern, axes, len(lead))
                trailing = tuple(axes)
                break
        return P(*lead, *trailing)

    is_spec = lambda x: isinstance(x, P)  # noqa: E731
    return jax.tree_util.tree_map_with_path(spec, boxed, unboxed, is_leaf=is_spec)


def param_shardings(
    abstract_variables,
    mesh: Mesh,
    rules: ShardingRules,
    options: StackOptions | None = None,
    *,
    stacks: Sequence[Stack | str] | None = None,
):
    """``NamedSharding`` for every leaf of ``abstract_variables`` (boxed or not), by ``rules``."""
    options = _options(options)
    check_mesh(mesh, rules)
    specs = logical_specs(abstract_variables, rules, options, stacks=stacks)
    flax_rules = rules.flax_rules(
        batch_axis_name=options.batch_axis_name, layer_axis_name=options.layer_axis_name
    )
    return nn.logical_to_mesh_sharding(specs, mesh, flax_rules)


def default_rules(mesh: Mesh, rules: ShardingRules | None, param_axes: tuple) -> ShardingRules:
    """``rules`` completed for a ready-made model: data parallel over the mesh's first axis
    when ``rules`` is None, and the model's own ``param_axes`` unless ``rules`` names them."""
    if rules is None:
        rules = ShardingRules(batch=mesh.axis_names[0])
    if not isinstance(rules, ShardingRules):
        raise ArgumentTypeError("rules", "a ShardingRules or None", repr(rules))
    if not rules.param_axes:
        rules = dataclasses.replace(rules, param_axes=param_axes)
    check_mesh(mesh, rules)
    return rules


def check_mesh(mesh, rules: ShardingRules) -> None:
    """Refuse a ``mesh`` that is not a Mesh, or lacks an axis the ``rules`` name."""
    if not isinstance(mesh, Mesh):
        raise ArgumentTypeError(
            "mesh", "a jax.sharding.Mesh", repr(mesh), "make one with device_mesh({'data': 8})"
        )
    missing = sorted(rules.mesh_axes() - set(mesh.axis_names))
    if missing:
        raise MeshAxisError(missing, dict(mesh.shape))


def sharded_init(
    model: nn.Module,
    mesh: Mesh,
    rules: ShardingRules,
    rngs,
    *args,
    options: StackOptions | None = None,
    stacks: Sequence[Stack | str] | None = None,
    **kwargs,
):
    """``model.init(rngs, *args, **kwargs)`` with every param created on its own shards.

    Traced once abstractly (``jax.eval_shape``), then run under ``jax.jit`` with the
    rules' ``out_shardings``: no device ever holds a whole param that the rules split.
    Returns the unboxed variables (``nn.meta.unbox``), each placed by the rules.
    """
    abstract = jax.eval_shape(model.init, rngs, *args, **kwargs)
    shardings = param_shardings(abstract, mesh, rules, options, stacks=stacks)

    def init(rngs, *args, **kwargs):
        return nn.meta.unbox(model.init(rngs, *args, **kwargs))

    return jax.jit(init, out_shardings=shardings)(rngs, *args, **kwargs)


def shard_batch(x, mesh: Mesh, rules: ShardingRules):
    """Place every leaf of ``x`` with its leading (example) axis split over ``rules.batch``."""
    check_mesh(mesh, rules)

    def place(a):
        if rules.batch is not None and np.ndim(a) and a.shape[0] % mesh.shape[rules.batch]:
            raise UnevenBatchError(
                a.shape[0], f"mesh axis {rules.batch!r}", mesh.shape[rules.batch]
            )
        spec = P(rules.batch) if np.ndim(a) else P()
        return jax.device_put(a, NamedSharding(mesh, spec))

    return jax.tree_util.tree_map(place, x)
