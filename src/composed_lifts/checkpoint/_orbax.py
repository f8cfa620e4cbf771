"""Orbax checkpoints that record their layout in ``custom_metadata``.

Orbax stores the tree as it is (stacked or unrolled, as the params are); restoring uses
explicit target shapes read from the checkpoint's own metadata (never ``strict=False``),
then converts in memory to the target's layout through the same per-layer key space as
safetensors files. Orbax writes into a temporary folder and renames it on commit; an
existing checkpoint is moved aside only once the new one is complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

import jax
import numpy as np

from .. import __version__
from .._atomic import fsync_folder
from .._keymap import path_str
from ..errors import CheckpointFormatError, KeyMapError, OutputFileError
from ._placement import place_like, placement_of
from ._record import LAYOUT_KEY, Form, KeyMapName, Layout

__all__ = ["load_orbax", "orbax_layout", "save_orbax"]


def _checkpointer():
    import orbax.checkpoint as ocp  # type: ignore[import-untyped]  # orbax ships no py.typed

    return ocp.StandardCheckpointer()


def _with_subtree(tree, path: str, value):
    parts = [p for p in path.split("/") if p]
    if not parts:
        return value
    return {**tree, parts[0]: _with_subtree(tree[parts[0]], "/".join(parts[1:]), value)}


def _in_form(params, stacks, records):
    """The tree with each stack in its record's form and layer axis (Orbax stores trees)."""
    from ._record import subtree, unrolled_layers

    for stack, record in zip(stacks, records):
        node = subtree(params, stack.path)
        n = unrolled_layers(node)
        if record.form is Form.UNROLLED and n is None:
            index = (slice(None),) * stack.layer_axis
            node = {
                f"layers_{i}": jax.tree_util.tree_map(
                    lambda a, i=i, index=index: np.asarray(a)[index + (i,)], node
                )
                for i in range(record.num_layers)
            }
        elif record.form is Form.STACKED and n is not None:
            layers = [node[f"layers_{i}"] for i in range(n)]
            node = jax.tree_util.tree_map(
                lambda *a, k=record.layer_axis: np.stack([np.asarray(x) for x in a], axis=k),
                *layers,
            )
        elif record.form is Form.STACKED and record.layer_axis != stack.layer_axis:
            node = jax.tree_util.tree_map(
                lambda a, j=stack.layer_axis, k=record.layer_axis: np.moveaxis(np.asarray(a), j, k),
                node,
            )
        params = _with_subtree(params, stack.path, node)
    return params


def save_orbax(path: str, params, stacks, records, keymap: KeyMapName) -> None:
    params = _in_form(params, stacks, records)
    if keymap is not KeyMapName.NATIVE:
        raise KeyMapError("orbax", keymap=f"keymap={keymap}")
    target = os.path.abspath(path)
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise OutputFileError(f"checkpoint {target!r}", "no_folder", folder=folder)
    layout = Layout(records, keymap, f"composed-lifts {__version__}")
    work = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.{os.getpid()}.", dir=folder)
    fresh = os.path.join(work, "new")
    try:
        ckptr = _checkpointer()
        ckptr.save(  # jax.Arrays as they are: each device writes its own shards
            fresh,
            jax.tree_util.tree_map(_host_unless_jax, params),
            custom_metadata={LAYOUT_KEY: layout.to_json()},
        )
        ckptr.wait_until_finished()
        ckptr.close()
        old = os.path.join(work, "old")
        if os.path.exists(target):
            os.replace(target, old)  # kept until the new one is in place
        os.replace(fresh, target)
        fsync_folder(folder)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(work)


def _metadata(path: str):
    path = os.path.abspath(path)  # Orbax reads a relative path as no checkpoint at all
    try:
        meta = _checkpointer().metadata(path)
        why = None if getattr(meta.item_metadata, "tree", None) is not None else "no saved tree"
    except Exception as err:  # orbax raises FileNotFoundError, ValueError, ...
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
    if why is not None:
        raise CheckpointFormatError(
            f"checkpoint {path!r}", f"is not an Orbax checkpoint, or is damaged: {why}"
        )
    return meta


def orbax_layout(path: str) -> Layout | None:
    text = (_metadata(path).custom_metadata or {}).get(LAYOUT_KEY)
    return None if text is None else Layout.from_json(text, path)


def _disk_key(path: str, layout: Layout | None) -> str:
    """Our per-layer key for a leaf of the restored tree (``layers_3`` -> ``3``)."""
    parts = path.split("/")
    for record in layout.stacks if layout else ():
        head = [p for p in record.path.split("/") if p]
        if record.form is Form.UNROLLED and parts[: len(head)] == head and len(parts) > len(head):
            if parts[len(head)].startswith("layers_"):
                parts[len(head)] = parts[len(head)][len("layers_") :]
    return ".".join(parts)


def _host_unless_jax(a):
    return a if isinstance(a, jax.Array) else np.asarray(a)


def _direct_targets(tree, like):
    """The target's abstract leaves, with their shardings, when ``like`` has the saved tree's
    exact structure, shapes and dtypes and every leaf of it carries a sharding; else None."""
    saved = jax.tree_util.tree_flatten(tree, is_leaf=_is_meta)
    try:
        target = jax.tree_util.tree_flatten(like)
    except Exception:  # an NNX module or another non-pytree target
        return None
    if saved[1] != target[1]:
        return None
    leaves = []
    for m, t in zip(saved[0], target[0]):
        sharding = placement_of(t)
        if sharding is None or tuple(m.shape) != tuple(np.shape(t)) or m.dtype != t.dtype:
            return None
        leaves.append(jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=sharding))
    return jax.tree_util.tree_unflatten(saved[1], leaves)


def _is_meta(m) -> bool:
    return hasattr(m, "shape") and hasattr(m, "dtype")


def load_orbax(path: str, like, *, keymap=None, layer_axis=None):
    from ._load import load_from

    meta = _metadata(path)
    text = (meta.custom_metadata or {}).get(LAYOUT_KEY)
    layout = None if text is None else Layout.from_json(text, path)
    tree = meta.item_metadata.tree
    direct = None if like is None else _direct_targets(tree, like)
    if direct is not None:  # the target's layout: each device reads its own part, placed
        return _restore(path, direct)
    # Explicit shardings always (one device, then converted on the host): Orbax refuses
    # a topology other than the saved one without them, and never strict=False.
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = jax.tree_util.tree_map(
        lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=one),
        tree,
        is_leaf=_is_meta,
    )
    restored = _restore(path, abstract)
    if like is None:
        return restored
    arrays = {
        _disk_key(path_str(p), layout): np.asarray(leaf)
        for p, leaf in jax.tree_util.tree_flatten_with_path(restored)[0]
    }
    del restored
    disk = {key: (a.shape, a.dtype) for key, a in arrays.items()}

    def read_unit(key, layer, axis):
        return arrays[key] if layer is None else np.take(arrays[key], layer, axis=axis)

    loaded = load_from(disk, layout, read_unit, None, like, keymap=keymap, layer_axis=layer_axis)
    return place_like(loaded, like)


def _restore(path: str, abstract):
    path = os.path.abspath(path)
    ckptr = _checkpointer()
    try:
        restored = ckptr.restore(path, abstract)
    except Exception as err:
        raise CheckpointFormatError(
            f"checkpoint {path!r}", f"could not be restored: {str(err).splitlines()[0]}"
        ) from None
    finally:
        ckptr.close()
    return restored
