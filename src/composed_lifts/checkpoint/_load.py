"""``load``: whatever layout is on disk, converted to the target's, streamed and checked.

Every file is read through one *per-layer key space*: a stacked tensor
``params.stack.Dense_0.kernel`` (layer axis k) offers ``params.stack.{i}.Dense_0.kernel``
for each layer i, the keys an unrolled file holds. The target's key map
(:func:`~composed_lifts.checkpoint._record.keymap_for`) names the same keys from the
target's paths, stacked at its own layer axis or unrolled, so one reader serves every
pair of layouts, and each stacked leaf is allocated once and filled layer by layer.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping

import jax
import numpy as np

from .._keymap import KeyMap, path_str, plan_keys, read_state
from ..errors import CheckpointFormatError, CheckpointMismatchError, StackLayoutError
from ._placement import place_like
from ._record import LAYOUT_KEY, Form, KeyMapName, Layout, keymap_for, subtree, unrolled_layers

__all__ = ["load", "read_layout"]

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
            head = f"{prefix}." if prefix else ""
            for i in range(record.num_layers):
                view[f"{head}{i}.{rest}"] = (key, i, record.layer_axis)
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
    n = unrolled_layers(node)
    leaves = jax.tree_util.tree_flatten_with_path(node["layers_0"] if n else node)[0]
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
        if n != record.num_layers:
            raise CheckpointMismatchError(
                "/".join(x for x in (record.path, leaf) if x),
                f"{record.num_layers} layers",
                f"{'no layer axis ' + str(axis) if n < 0 else str(n) + ' layers'} (shape {shape})",
                "a checkpoint loads only into a stack of as many layers",
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
):
    """The target-layout tree from any source of tensors (a file, a restored tree)."""
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
        )
        return linen_to_nnx(variables, like)
    if keymap is not None or layout is None:
        if keymap is None:
            raise CheckpointFormatError(
                "the checkpoint",
                "records no layout (a plain safetensors file?)",
                "pass keymap= (a KeyMap from the file's keys to the target's paths, e.g. "
                "torch_linear_keymap())",
            )
        view: dict[str, tuple[str, int | None, int]] = {key: (key, None, 0) for key in disk}
    else:
        view = per_layer_view(disk, layout)
        if layer_axis is None:
            layer_axis = 1 if any(r.ensemble_size for r in layout.stacks) else 0
        keymap = keymap_for(layout.keymap, [r.path for r in layout.stacks], layer_axis)
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
        read_whole_into(disk_key, dest, axis)
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
                parts[len(head)] = f"layers_{parts[len(head)]}"
                break
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = read_whole(key)
    return tree


def read_layout(path: str | os.PathLike) -> Layout | None:
    """The layout a checkpoint records (None for a plain safetensors file)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        from ._orbax import orbax_layout

        return orbax_layout(path)
    from ._safetensors import SafetensorsFile

    with SafetensorsFile(path) as f:
        return _file_layout(f)


def _file_layout(f) -> Layout | None:
    text = f.metadata.get(LAYOUT_KEY)
    return None if text is None else Layout.from_json(text, f.path)


def load(
    path: str | os.PathLike,
    like=None,
    *,
    keymap: KeyMap | None = None,
    layer_axis: int | None = None,
):
    """Load a checkpoint into the layout of ``like``.

    ``like`` is the target: concrete params, an abstract tree (``jax.eval_shape`` of the
    model's init), or an NNX stack (a new stack with the loaded params is returned). A
    stacked checkpoint loads into an unrolled target and back; the target's stacks have
    their layer axis at ``layer_axis`` (default 0, or 1 for an ensemble's ``(B, N, ...)``).
    Leaves come back as NumPy arrays, except where ``like``'s leaf carries a sharding (a
    ``jax.Array``, or ``jax.ShapeDtypeStruct(..., sharding=...)``): those come back placed
    with it, so a checkpoint saved on one mesh restores onto another (an Orbax checkpoint
    already in the target's layout is then read by each device for its own part). Without ``like``, the tree as saved. A file that
    records no layout needs ``keymap``. Shapes, dtypes and layer counts are checked
    against ``like`` before any data is read, each tensor's checksum as it is read;
    the target is never modified.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        from ._orbax import load_orbax

        return load_orbax(path, like, keymap=keymap, layer_axis=layer_axis)
    from ._safetensors import SafetensorsFile

    with SafetensorsFile(path) as f:
        layout = _file_layout(f)
        disk = {key: f.spec(key) for key in f.tensors}
        if like is None:
            tree = as_saved(disk, layout, f.read)
        else:
            tree = load_from(
                disk,
                layout,
                f.read,
                f.read_into,
                like,
                keymap=keymap,
                layer_axis=layer_axis,
                read_whole_into=f.read_stacked_into,
            )
        return place_like(tree, like)
