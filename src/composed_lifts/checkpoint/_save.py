"""``save``: params to a checkpoint that records its layout, streamed and atomic.

The arguments are checked and the layout recorded here; the bytes are the format
handler's (:func:`~composed_lifts.checkpoint._format.format_for` picks it from the path).
"""

from __future__ import annotations

import os
import sys

from .._arguments import describe_value
from ..errors import ArgumentTypeError, KeyMapError
from ..layout import as_stacks
from ._format import format_for
from ._record import HF_CONFIG_KEY, Form, KeyMapName, record_stacks

__all__ = ["save"]


def save(
    path: str | os.PathLike,
    params,
    *,
    stacks=("",),
    form: Form | None = None,
    layer_axis: int | None = None,
    keymap: KeyMapName = KeyMapName.NATIVE,
    progress=None,
    hf_config: dict | None = None,
) -> None:
    """Save ``params`` to ``path`` with its layout recorded.

    ``stacks`` names where the tree's stacks are (``Stack(path, layer_axis, ensemble)`` or
    a ``/``-joined path; ``""`` is the whole tree); a stack given as ``layers_0 ...``
    subtrees is unrolled. The file stores them in ``form`` (default: as in the tree) with
    stacked tensors' layer axis at ``layer_axis`` (default: the tree's), under our key
    names or PyTorch's (``keymap=KeyMapName.TORCH``, unrolled only). A path ending in
    ``.safetensors`` is a safetensors file, any other path an Orbax checkpoint folder.
    An NNX stack is saved as the Linen stack's ``{"params": ...}``. The write is atomic
    (an Orbax folder replaces only an empty folder or a checkpoint of ours, in one exchange
    of names); a write that fails part way (full disk, ``ulimit -f``) raises
    :class:`~composed_lifts.errors.OutputWriteError` naming ``path``, the old one unchanged.
    ``progress(nbytes)`` is called after each tensor. ``hf_config``, a Hugging Face
    ``config.json`` dict, is recorded beside the layout (``composed-lifts convert`` keeps a
    folder's config so that ``--to hf`` can write the folder back).
    """
    path = os.fspath(path)
    nnx = sys.modules.get("flax.nnx")
    if nnx is not None and isinstance(params, nnx.Module):
        from .._convert_nnx import nnx_to_linen

        params = nnx_to_linen(params)
        if stacks == ("",):
            stacks = ("params",)
    if not isinstance(keymap, KeyMapName):
        raise ArgumentTypeError(
            "keymap", "a KeyMapName", describe_value(keymap), "e.g. KeyMapName.TORCH"
        )
    if hf_config is not None and not isinstance(hf_config, dict):
        raise ArgumentTypeError("hf_config", "a dict (a config.json)", describe_value(hf_config))
    stacks = as_stacks(stacks)
    records = record_stacks(params, stacks, form)
    chosen = records[0].form if records else Form.STACKED
    if keymap is KeyMapName.TORCH and chosen is Form.STACKED:
        raise KeyMapError(
            "per_layer",
            keymap="the PyTorch key map (keymap=KeyMapName.TORCH, --key-map torch)",
            unrolled="form=Form.UNROLLED (on the command line, --to unrolled)",
        )
    if chosen is Form.STACKED and layer_axis is not None:
        records = tuple(r.replace(layer_axis=layer_axis) for r in records)
    metadata = {}
    if hf_config is not None:
        import json

        metadata[HF_CONFIG_KEY] = json.dumps(hf_config, sort_keys=True)
    format_for(path, writing=True).save(
        path,
        params,
        stacks=stacks,
        records=records,
        keymap=keymap,
        progress=progress,
        metadata=metadata,
    )


def check_output(path: str | os.PathLike, flag: str = "checkpoint") -> None:
    """Refuse, before any work, a ``path`` that :func:`save` could not write: a missing or
    unwritable folder, a folder, FIFO or read-only file where a ``.safetensors`` file would
    go. ``flag`` names the argument in the message (``OUT``)."""
    from .._atomic import check_writable

    path = os.fspath(path)
    if path.endswith(".safetensors"):
        check_writable(path, flag)
        return
    from ._orbax import check_replaceable

    check_replaceable(path, flag)  # an Orbax folder, replaced whole, and only if ours
