"""Our safetensors file: one handler (save, restore, describe), streamed and checked.

The file holds each stack either *stacked* (one tensor per leaf, the layer axis where
the layout says) or *unrolled* (one tensor per layer, keys ``{stack}.{i}.{rest}``, our
names or PyTorch's); either is written from a stacked or an unrolled tree, one tensor
(per layer where the layout allows) at a time, so no copy of the model is made. Reading
goes through the per-layer key space (``_state.py``) into the target's layout.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence

import numpy as np

from .. import __version__
from .._keymap import file_tensor, leaves_with_paths, plan_entries
from ..errors import CheckpointFormatError, StackLayoutError
from ..layout import layer_tree, subtree, unrolled_count
from ._info import CheckpointInfo, TensorInfo
from ._placement import place_like
from ._record import (
    HF_CONFIG_KEY,
    LAYOUT_KEY,
    Form,
    KeyMapName,
    Layout,
    Stack,
    keymap_for,
)
from ._safetensors import DiskTensor, SafetensorsFile, write_safetensors
from ._state import as_saved, declared_layout, layout_problems, load_from

__all__ = ["SAFETENSORS", "SafetensorsFormat"]


def _one_layer(entry, arrays, layer_axis: int, i: int) -> Iterator[np.ndarray]:
    """The producer of one file tensor of the unrolled form: layer ``i`` of ``entry``."""
    yield file_tensor(entry, arrays, layer_axis, i)


def _stacked_tensors(tree, stacks: Sequence[Stack], records, disk_axis: int) -> list[DiskTensor]:
    """Tensors of the stacked form: each stack leaf once, layer axis at ``disk_axis``."""
    tensors = []
    taken: set[str] = set()
    for stack, record in zip(stacks, records):
        node = subtree(tree, stack.path)
        n = unrolled_count(node)
        for path, leaf in leaves_with_paths(layer_tree(node)):
            full = "/".join(x for x in (stack.path, path) if x)
            if n is not None:
                layers = [
                    np.asarray(subtree(tree, f"{stack.layer_path(i)}/{path}")) for i in range(n)
                ]
                shape, dtype = layers[0].shape, layers[0].dtype
                taken.update(f"{stack.layer_path(i)}/{path}" for i in range(n))
            else:
                src = stack.layer_axis
                shape = np.shape(leaf)[:src] + np.shape(leaf)[src + 1 :]
                dtype = np.dtype(leaf.dtype)
                layers = None
                taken.add(full)
            disk_shape = shape[:disk_axis] + (record.num_layers,) + shape[disk_axis:]
            if len(disk_shape) <= disk_axis:
                raise StackLayoutError(
                    "no_layer_axis", leaf=full, shape=shape, axis=disk_axis, argument="layer_axis="
                )
            tensors.append(
                DiskTensor(
                    full.replace("/", "."),
                    disk_shape,
                    np.dtype(dtype),
                    disk_axis,
                    _producer(leaf, layers, stack.layer_axis, disk_axis),
                )
            )
    for path, leaf in leaves_with_paths(tree):
        if path not in taken and not any(s.contains(path) for s in stacks):
            tensors.append(_whole(path.replace("/", "."), leaf))
    return tensors


def _producer(leaf, layers, src: int, dst: int):
    def produce():
        if layers is not None:  # an unrolled tree
            if dst == 0:
                yield from layers
            else:
                yield np.stack(layers, axis=dst)
        elif dst == 0:  # one layer per write (a 1 GB write() was measured 2x slower)
            for i in range(np.shape(leaf)[src]):
                yield np.asarray(leaf)[(slice(None),) * src + (i,)]
        else:
            yield np.ascontiguousarray(np.moveaxis(np.asarray(leaf), src, dst))

    return produce


def _whole(key: str, leaf) -> DiskTensor:
    return DiskTensor(
        key, tuple(np.shape(leaf)), np.dtype(leaf.dtype), None, lambda: iter([np.asarray(leaf)])
    )


def _one_axis(records) -> int:
    axes = {r.layer_axis for r in records}
    if not axes:  # no stacks: every leaf is stored whole
        return 0
    if len(axes) > 1:
        raise StackLayoutError("axes_differ", axes=sorted(axes))
    return axes.pop()


def _unrolled_tensors(tree, stacks: Sequence[Stack], keymap_name: KeyMapName) -> list[DiskTensor]:
    axis = _one_axis(stacks)
    keymap = keymap_for(keymap_name, stacks, axis)
    arrays = dict(leaves_with_paths(tree))
    tensors = []
    for entry in plan_entries(tree, keymap):
        shape, dtype = entry.file_spec()
        for i, key in enumerate(entry.keys()):
            tensors.append(
                DiskTensor(
                    key,
                    shape,
                    dtype,
                    None,
                    functools.partial(_one_layer, entry, arrays, keymap.layer_axis, i),
                )
            )
    return tensors


def _file_layout(f: SafetensorsFile) -> Layout | None:
    text = f.metadata.get(LAYOUT_KEY)
    return None if text is None else Layout.from_json(text, f.path)


def recorded_config(metadata, where: str) -> dict | None:
    """The Hugging Face config a checkpoint of ours recorded (converted from a folder)."""
    text = metadata.get(HF_CONFIG_KEY)
    if text is None:
        return None
    try:
        config = json.loads(text)
    except ValueError:
        config = None
    if not isinstance(config, dict):
        raise CheckpointFormatError(where, "has a damaged Hugging Face config record")
    return config


class SafetensorsFormat:
    """A ``.safetensors`` file written by :func:`save` (or a plain one, with ``keymap=`` or
    ``saved_as=``)."""

    name = "safetensors"

    def save(
        self,
        path: str,
        params,
        *,
        stacks: Sequence[Stack],
        records,
        keymap: KeyMapName,
        progress=None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        layout = Layout(records, keymap, f"composed-lifts {__version__}")
        chosen = records[0].form if records else Form.STACKED
        if chosen is Form.STACKED:
            tensors = _stacked_tensors(params, stacks, records, _one_axis(records))
        else:
            tensors = _unrolled_tensors(params, stacks, keymap)
        header = {
            **(metadata or {}),
            LAYOUT_KEY: layout.to_json(),
            "format": "pt" if keymap is KeyMapName.TORCH else "np",
        }
        write_safetensors(path, tensors, header, progress=progress)

    def restore(self, path: str, like, *, keymap=None, layer_axis=None, saved_as=None):
        with SafetensorsFile(path) as f:
            where = f"checkpoint {path!r}"
            disk = {key: f.spec(key) for key in f.tensors}
            layout = _file_layout(f)
            if saved_as is not None:
                layout = _declared(layout, saved_as, disk, where)
            if like is None:
                if layout is not None:
                    _refuse_problems(layout, disk, where)
                return as_saved(disk, layout, f.read)
            tree = load_from(
                disk,
                layout,
                f.read,
                f.read_into,
                like,
                keymap=keymap,
                layer_axis=layer_axis,
                read_whole_into=f.read_stacked_into,
                where=where,
            )
            return place_like(tree, like)

    def describe(self, path: str) -> CheckpointInfo:
        with SafetensorsFile(path) as f:
            layout = _file_layout(f)
            disk = {key: f.spec(key) for key in f.tensors}
            config = recorded_config(f.metadata, f"checkpoint {path!r}")
            tensors = tuple(
                TensorInfo(key, shape, dtype.name) for key, (dtype, shape, _) in f.tensors.items()
            )
        problems = tuple(layout_problems(layout, disk)) if layout is not None else ()
        return CheckpointInfo(path, self.name, tensors, layout, problems, config=config)


def _declared(layout: Layout | None, saved_as, disk, where: str) -> Layout:
    if layout is not None:
        raise CheckpointFormatError(
            where,
            "records its own layout, so saved_as= (for files that record none) does not apply",
            "drop saved_as=",
        )
    return declared_layout(saved_as, disk, where)


def _refuse_problems(layout: Layout, disk, where: str) -> None:
    problems = layout_problems(layout, disk)
    if problems:
        raise CheckpointFormatError(where, problems[0], "the layout record was damaged")


SAFETENSORS = SafetensorsFormat()
