"""Orbax checkpoints that record their layout and checksums in ``custom_metadata``.

Orbax stores the tree as it is (stacked or unrolled, as the params are); restoring uses
explicit target shapes read from the checkpoint's own metadata (never ``strict=False``),
then converts in memory to the target's layout through the same per-layer key space as
safetensors files. Every saved shard carries an xxh3-64 checksum, verified after Orbax
reads it and before anything is returned (:mod:`._shard_checksums`). Orbax writes into a
hidden work folder beside the target; the finished checkpoint then takes the target's
place in one step (an exchange of names, :func:`~composed_lifts._atomic.replace_folder`),
so the path always holds a whole checkpoint, old or new; work folders of killed saves are
removed by the next save to the same path. An existing path that is not a checkpoint of
ours (a file, another tool's folder) is never replaced. Orbax is called inside
:mod:`._orbax_guard`: folders checked first, its warnings and threads kept quiet.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

import jax
import numpy as np

from .. import __version__
from .._atomic import remove_leftover_folders, replace_folder, work_folder_prefix
from ..errors import CheckpointFormatError, KeyMapError, OutputFileError, OutputWriteError
from ..layout import find_stack, layer_index, path_str, to_form
from ._orbax_guard import check_orbax_folder, is_our_checkpoint, quiet_orbax, write_failure
from ._placement import place_like, placement_of
from ._record import CHECKSUMS_KEY, LAYOUT_KEY, Form, KeyMapName, Layout
from ._shard_checksums import parse_checksums, tree_checksums, verify_checksums

__all__ = ["load_orbax", "orbax_layout", "save_orbax"]


def _checkpointer():
    import orbax.checkpoint as ocp  # type: ignore[import-untyped]  # orbax ships no py.typed

    return ocp.StandardCheckpointer()


def _in_form(params, stacks, records):
    """The tree with each stack in its record's form and layer axis (Orbax stores trees)."""
    for stack, record in zip(stacks, records):
        params = to_form(params, find_stack(params, stack), record)
    return params


def save_orbax(path: str, params, stacks, records, keymap: KeyMapName, metadata=None) -> None:
    if keymap is not KeyMapName.NATIVE:
        raise KeyMapError("orbax", keymap=f"keymap={keymap}")
    target = check_replaceable(path)
    params = _in_form(params, stacks, records)
    folder = os.path.dirname(target)
    layout = Layout(records, keymap, f"composed-lifts {__version__}")
    tree = jax.tree_util.tree_map(_host_unless_jax, params)
    metadata = {
        **(metadata or {}),
        LAYOUT_KEY: layout.to_json(),
        CHECKSUMS_KEY: tree_checksums(tree),
    }
    remove_leftover_folders(target)
    work = tempfile.mkdtemp(prefix=f"{work_folder_prefix(target)}{os.getpid()}.", dir=folder)
    fresh = os.path.join(work, "new")
    try:
        _write(target, fresh, tree, metadata)
        replace_folder(fresh, target, os.path.join(work, "old"))
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(work)


def _write(target: str, fresh: str, tree, metadata: dict) -> None:
    """Orbax writes ``tree`` to ``fresh`` (jax.Arrays as they are: each device its shards)."""
    with quiet_orbax() as caught:
        ckptr = _checkpointer()
        try:
            ckptr.save(fresh, tree, custom_metadata=metadata)
            ckptr.wait_until_finished()
        except Exception as err:
            reason = write_failure(err, caught)
            if reason is None:
                raise
            kept = (
                "the old checkpoint there is unchanged"
                if os.path.lexists(target)
                else ("nothing was left there")
            )
            raise OutputWriteError(f"checkpoint {target!r}", reason, kept) from None
        finally:
            ckptr.close()


def check_replaceable(path: str, flag: str = "checkpoint") -> str:
    """The absolute path of Orbax checkpoint folder ``path`` to write, checked before any work:
    its folder exists, and what is there now, if anything, is an empty folder or a whole
    checkpoint of ours (never a file, another tool's folder or a damaged checkpoint)."""
    target = os.path.realpath(path)
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise OutputFileError(f"{flag} {path!r}", "no_folder", folder=folder)
    if not os.path.lexists(target):
        return target
    if os.path.isdir(target):
        with contextlib.suppress(OSError):
            if not os.listdir(target):
                return target
        if is_our_checkpoint(target, LAYOUT_KEY):
            return target
        what = "a folder that is not a whole checkpoint written by composed-lifts"
    else:
        what = "a file, not a checkpoint folder"
    raise OutputFileError(f"{flag} {path!r}", "not_ours", what=what)


def _metadata(path: str):
    path = os.path.abspath(path)  # Orbax reads a relative path as no checkpoint at all
    check_orbax_folder(path)
    with quiet_orbax():
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


def _checksums(path: str, meta, tree):
    """The checkpoint's checksum record, checked against its tree (None: it records none,
    as checkpoints of other tools and of composed-lifts before 0.2 do)."""
    text = (meta.custom_metadata or {}).get(CHECKSUMS_KEY)
    if text is None:
        return None
    shapes = {
        path_str(p): tuple(m.shape)
        for p, m in jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_meta)[0]
    }
    return parse_checksums(text, os.path.abspath(path), shapes)


def orbax_layout(path: str) -> Layout | None:
    text = (_metadata(path).custom_metadata or {}).get(LAYOUT_KEY)
    return None if text is None else Layout.from_json(text, path)


def _disk_key(path: str, layout: Layout | None) -> str:
    """Our per-layer key for a leaf of the restored tree (``layers_3`` -> ``3``)."""
    parts = path.split("/")
    for record in layout.stacks if layout else ():
        head = [p for p in record.path.split("/") if p]
        if record.form is Form.UNROLLED and parts[: len(head)] == head and len(parts) > len(head):
            index = layer_index(parts[len(head)])
            if index is not None:
                parts[len(head)] = str(index)
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
    from ._state import load_from

    meta = _metadata(path)
    text = (meta.custom_metadata or {}).get(LAYOUT_KEY)
    layout = None if text is None else Layout.from_json(text, path)
    tree = meta.item_metadata.tree
    sums = _checksums(path, meta, tree)
    direct = None if like is None else _direct_targets(tree, like)
    if direct is not None:  # the target's layout: each device reads its own part, placed
        return _restore(path, direct, sums)
    # Explicit shardings always (one device, then converted on the host): Orbax refuses
    # a topology other than the saved one without them, and never strict=False.
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = jax.tree_util.tree_map(
        lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=one),
        tree,
        is_leaf=_is_meta,
    )
    restored = _restore(path, abstract, sums)
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

    loaded = load_from(
        disk,
        layout,
        read_unit,
        None,
        like,
        keymap=keymap,
        layer_axis=layer_axis,
        where=f"checkpoint {path!r}",
    )
    return place_like(loaded, like)


def _restore(path: str, abstract, sums):
    """Orbax's restore of ``abstract``, every shard's checksum verified (when recorded)."""
    path = os.path.abspath(path)
    with quiet_orbax():
        ckptr = _checkpointer()
        try:
            restored = ckptr.restore(path, abstract)
        except Exception as err:
            raise CheckpointFormatError(
                f"checkpoint {path!r}",
                f"could not be restored (is its array data missing or damaged?): "
                f"{(str(err).split(' See full TensorStore')[0].splitlines() or [type(err).__name__])[0]}",
            ) from None
        finally:
            ckptr.close()
    if sums is not None:
        verify_checksums(path, restored, sums)
    return restored
