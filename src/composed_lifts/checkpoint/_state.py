"""The per-layer key space: any source of tensors (a file, a restored tree) into the target's layout.

Every file is read through one *per-layer key space*: a stacked tensor
``params.stack.Dense_0.kernel`` (layer axis k) offers ``params.stack.{i}.Dense_0.kernel``
for each layer i, the keys an unrolled file holds. The target's key map
(:func:`~composed_lifts.checkpoint._record.keymap_for`) names the same keys from the
target's paths, stacked at its own layer axis or unrolled, so one reader serves every
pair of layouts, and each stacked leaf is allocated once and filled layer by layer.
Format handlers give this module ``disk`` (``{key: (shape, dtype)}``, from headers) and
their readers; the layout a file records is checked against ``disk`` before it is used.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping

import jax
import numpy as np

from .._keymap import KeyMap, plan_keys, read_state
from ..errors import CheckpointFormatError, CheckpointMismatchError, StackLayoutError
from ..layout import layer_name, layer_tree, path_str, subtree, unrolled_count
from ._record import Form, KeyMapName, Layout, StackRecord, keymap_for

__all__ = ["as_saved", "declared_layout", "layout_problems", "load_from", "per_layer_view"]

Spec = tuple[tuple, np.dtype]


def per_layer_view(
    disk: Mapping[str, Spec], layout: Layout
) -> dict[str, tuple[str, int | None, int]]:
    """``{per-layer key: (disk key, layer or None, layer axis)}`` over a file's tensors."""
    view: dict[str, tuple[str, int | None, int]] = {}
    stacked = [r for r in layout.stacks if r.form is Form.STACKED]
    for key in disk:
        for record in stacked:
            prefix = record.path.replace("/", ".")
            if prefix and not key.startswith(prefix + "."):
                continue
            rest = key[len(prefix) + 1 :] if prefix else key
            for i in range(int(record.num_layers or 0)):
                view[record.layer_key(i) + rest] = (key, i, record.layer_axis)
            break
        else:
            view[key] = (key, None, 0)
    return view


def _layer_spec(disk: Mapping[str, Spec], unit) -> Spec:
    key, layer, axis = unit
    shape, dtype = disk[key]
    return (shape if layer is None else shape[:axis] + shape[axis + 1 :]), dtype


def _is_nnx(obj) -> bool:
    nnx = sys.modules.get("flax.nnx")
    return nnx is not None and isinstance(obj, nnx.Module)


def _target_layers(node, axis: int) -> tuple[int, str, tuple]:
    n = unrolled_count(node)
    leaves = jax.tree_util.tree_flatten_with_path(layer_tree(node))[0]
    path, leaf = leaves[0]
    shape = tuple(np.shape(leaf))
    if n is not None:
        return n, path_str(path), shape
    if len(shape) <= axis:
        return -1, path_str(path), shape
    return shape[axis], path_str(path), shape


def _check_layer_counts(layout: Layout, like, axis: int, disk: Mapping[str, Spec]) -> None:
    for record in layout.stacks:
        try:
            node = subtree(like, record.path)
        except StackLayoutError:
            raise CheckpointMismatchError(
                record.path,
                f"a stack of {record.num_layers} layers",
                "no such subtree",
                "load into the model the checkpoint was saved from",
            ) from None
        n, leaf, shape = _target_layers(node, axis)
        _check_members(record, "/".join(x for x in (record.path, leaf) if x), node, n, shape)
        if n != record.num_layers:
            raise CheckpointMismatchError(
                "/".join(x for x in (record.path, leaf) if x),
                f"{record.num_layers} layers",
                f"{'no layer axis ' + str(axis) if n < 0 else str(n) + ' layers'} (shape {shape})",
                "a checkpoint loads only into a stack of as many layers",
            )


def _check_members(record, param: str, node, n: int, shape: tuple) -> None:
    """An ensemble on disk loads only into an ensemble of as many members: say which it is."""
    size = record.ensemble_size
    if size is None or (len(shape) > 1 and shape[0] == size and n == record.num_layers):
        return
    other = unrolled_count(node) is None and len(shape) > 1 and n == record.num_layers
    raise CheckpointMismatchError(
        param,
        f"an ensemble of {size} members of {record.num_layers} layers each (one stack per example)",
        (
            f"an ensemble of {shape[0]} members (shape {shape})"
            if other
            else f"a stack shared by every example (shape {shape})"
        ),
        f"load it into an ensemble of {size} members (BatchMode.ENSEMBLE; layer_axis=1), or "
        f"load it as saved (like=None) and keep one member (jax.tree.map(lambda a: a[b], "
        f"tree)), or ensemble_to_shared(tree) when the members are identical",
    )


def load_from(
    disk: Mapping[str, Spec],
    layout: Layout | None,
    read_unit: Callable,
    read_unit_into: Callable | None,
    like,
    *,
    keymap: KeyMap | None = None,
    layer_axis: int | None = None,
    read_whole_into: Callable | None = None,
    where: str = "the checkpoint",
):
    """The target-layout tree from any source of tensors (a file, a restored tree);
    ``where`` names the source in errors (``checkpoint 'x'``)."""
    if layout is not None:
        problems = layout_problems(layout, disk)
        if problems:
            raise CheckpointFormatError(where, problems[0], "the layout record was damaged")
    if _is_nnx(like):
        from .._convert_nnx import linen_to_nnx, nnx_to_linen

        variables = load_from(
            disk,
            layout,
            read_unit,
            read_unit_into,
            nnx_to_linen(like),
            keymap=keymap,
            layer_axis=layer_axis,
            where=where,
        )
        return linen_to_nnx(variables, like)
    if keymap is not None or layout is None:
        if keymap is None:
            raise CheckpointFormatError(
                where,
                "records no layout (it was not written by composed-lifts)",
                "declare the layout it was saved in with saved_as=Stack(path, layer_axis), or "
                "pass keymap= (a KeyMap from its keys to the target's paths)",
            )
        view: dict[str, tuple[str, int | None, int]] = {key: (key, None, 0) for key in disk}
    else:
        view = per_layer_view(disk, layout)
        if layer_axis is None:
            layer_axis = 1 if any(r.ensemble_size for r in layout.stacks) else 0
        keymap = keymap_for(layout.keymap, layout.stacks, layer_axis)
        _check_layer_counts(layout, like, layer_axis, disk)
    for key, shape, dtype, params in plan_keys(like, keymap):
        if key in view:
            got_shape, got_dtype = _layer_spec(disk, view[key])
            if tuple(got_shape) != tuple(shape) or got_dtype != dtype:
                raise CheckpointMismatchError(
                    params,
                    f"{got_dtype}{tuple(got_shape)}",
                    f"{dtype}{tuple(shape)}",
                    "load into the model the checkpoint was saved from, or pass layer_axis=",
                    key=key,
                )

    def read(key):
        return read_unit(*view[key])

    def read_into(key, dest):
        disk_key, layer, axis = view[key]
        read_unit_into(disk_key, dest, layer, axis)

    def read_stacked(keys, dest, axis) -> bool:
        disk_key, _, disk_axis = view[keys[0]]
        if read_whole_into is None or disk_axis == 0 or disk[disk_key][0][disk_axis] != len(keys):
            return False  # at axis 0 each layer is contiguous on disk: read layer by layer
        if any(view[k] != (disk_key, i, disk_axis) for i, k in enumerate(keys)):
            return False
        read_whole_into(disk_key, dest, axis, disk_axis)
        return True

    return read_state(
        read,
        keymap,
        like,
        keys=list(view),
        spec=lambda key: _layer_spec(disk, view[key]),
        read_into=read_into if read_unit_into is not None else None,
        read_stacked=read_stacked,
    )


def as_saved(disk: Mapping[str, Spec], layout: Layout | None, read_whole: Callable) -> dict:
    """The tree as the file stores it: paths from the keys (``layers_{i}`` for an unrolled
    stack); a torch-named or plain file gives its flat ``{key: array}``."""
    if layout is None or layout.keymap is KeyMapName.TORCH:
        return {key: read_whole(key) for key in disk}
    prefixes = [(r.path.replace("/", "."), r) for r in layout.stacks if r.form is Form.UNROLLED]
    tree: dict = {}
    for key in disk:
        parts = key.split(".")
        for prefix, _ in prefixes:
            head = prefix.split(".") if prefix else []
            if parts[: len(head)] == head and len(parts) > len(head) and parts[len(head)].isdigit():
                parts[len(head)] = layer_name(parts[len(head)])
                break
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = read_whole(key)
    return tree


def _under(key: str, prefix: str) -> str | None:
    """The rest of ``key`` after stack prefix ``prefix`` (dotted), or None."""
    if not prefix:
        return key
    return key[len(prefix) + 1 :] if key.startswith(prefix + ".") else None


def layout_problems(layout: Layout, disk: Mapping[str, Spec]) -> list[str]:
    """How the layout record disagrees with the tensors' headers (empty when it agrees):
    every stacked tensor has the recorded number of layers on the recorded axis, an
    unrolled stack holds exactly layers 0 to N-1. Bounded by the headers, not the record."""
    problems = []
    for r in layout.stacks:
        prefix = r.path.replace("/", ".")
        name = f"stack {r.path or '(whole tree)'!r}"
        if r.num_layers < 0 or r.layer_axis < 0:
            problems.append(f"records {r.num_layers} layers on axis {r.layer_axis} for {name}")
            continue
        under = {k: rest for k in disk if (rest := _under(k, prefix)) is not None}
        if not under:
            problems.append(f"records {name}, but holds no tensor under it")
            continue
        if r.form is Form.STACKED:
            for key in under:
                shape = tuple(disk[key][0])
                if r.layer_axis >= len(shape):
                    problems.append(
                        f"records layer axis {r.layer_axis} for {name}, but tensor {key!r} has "
                        f"shape {shape}"
                    )
                    break
                if shape[r.layer_axis] != r.num_layers:
                    problems.append(
                        f"records {r.num_layers} layers for {name}, but tensor {key!r} holds "
                        f"{shape[r.layer_axis]} on axis {r.layer_axis} (shape {shape})"
                    )
                    break
        else:
            found = {rest.split(".", 1)[0] for rest in under.values()}
            want = {str(i) for i in range(min(r.num_layers, len(found) + 1))}
            if found != want or len(found) != r.num_layers:
                shown = sorted(found, key=lambda x: (len(x), x))[:5]
                problems.append(
                    f"records {r.num_layers} unrolled layers for {name}, but its tensors are "
                    f"numbered {', '.join(shown)}{' ...' if len(found) > 5 else ''}"
                )
    return problems


def declared_layout(stacks, disk: Mapping[str, Spec], where: str) -> Layout:
    """The layout of a file that records none, as the caller declares it (``saved_as=``):
    scanned stacks at those paths and layer axes, their number of layers read from the
    tensors' headers (every tensor of a stack must agree)."""
    records = []
    for stack in stacks:
        prefix = stack.path.replace("/", ".")
        shapes = {k: tuple(disk[k][0]) for k in disk if _under(k, prefix) is not None}
        if not shapes:
            raise CheckpointFormatError(
                where,
                f"holds no tensor under stack {stack.path!r} that saved_as= declares",
                "name the stacks by their '/'-joined paths in the file",
            )
        counts: dict[int, str] = {}
        sizes: dict[int, str] = {}
        for key, shape in shapes.items():
            if len(shape) <= stack.layer_axis:
                raise CheckpointFormatError(
                    where,
                    f"has tensor {key!r} of shape {shape}, with no layer axis {stack.layer_axis} "
                    f"that saved_as= declares",
                )
            counts.setdefault(shape[stack.layer_axis], key)
            if stack.ensemble_size:
                sizes.setdefault(shape[0], key)
        for what, found in ((f"layers on axis {stack.layer_axis}", counts), ("members", sizes)):
            if len(found) > 1:
                seen = ", ".join(f"{key!r} has {n}" for n, key in found.items())
                raise CheckpointFormatError(
                    where,
                    f"has tensors under stack {stack.path!r} that disagree on the number of "
                    f"{what}: {seen}",
                    "declare the axis that holds the layers",
                )
        dtypes = tuple(sorted({np.dtype(disk[k][1]).name for k in shapes}))
        records.append(
            StackRecord(
                path=stack.path,
                num_layers=int(next(iter(counts))),
                form=Form.STACKED,
                layer_axis=stack.layer_axis,
                ensemble_size=int(next(iter(sizes))) if sizes else None,
                dtypes=dtypes,
            )
        )
    return Layout(tuple(records), KeyMapName.NATIVE, "declared by saved_as=")
