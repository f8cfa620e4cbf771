"""The layout a checkpoint records: for every stack in the tree its path, number of layers,
form (stacked or unrolled), layer axis, ensemble size and dtypes, plus the key map used
and the library's version. It travels as one JSON string in the file's metadata.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Mapping, Sequence

import numpy as np

from .._keymap import KeyMap, Rule, path_str, torch_linear_keymap
from ..errors import CheckpointFormatError, StackLayoutError

__all__ = ["Form", "KeyMapName", "Layout", "Stack", "StackRecord", "keymap_for", "record_stacks"]

LAYOUT_KEY = "composed_lifts.layout"
CHECKSUMS_KEY = "composed_lifts.xxh3_64"
FORMAT_VERSION = 1


class Form(enum.Enum):
    """How a stack's layers are stored: one tensor per leaf with a layer axis, or per layer."""

    STACKED = "stacked"
    UNROLLED = "unrolled"


class KeyMapName(enum.Enum):
    """The key maps a checkpoint can record: our tree paths, or PyTorch ``nn.Linear`` names."""

    NATIVE = "native"
    TORCH = "torch"


@dataclasses.dataclass(frozen=True)
class Stack:
    """Where a stack lies in a tree (``/``-joined ``path``, ``""`` for the whole tree) and
    where its layer axis is; ``ensemble``: axis 0 holds one stack per example."""

    path: str = ""
    layer_axis: int = 0
    ensemble: bool = False


@dataclasses.dataclass(frozen=True)
class StackRecord:
    path: str
    num_layers: int
    form: Form
    layer_axis: int  # the stacked tensors' layer axis (for an unrolled file: where it was)
    ensemble_size: int | None
    dtypes: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Layout:
    stacks: tuple[StackRecord, ...]
    keymap: KeyMapName
    library: str

    def to_json(self) -> str:
        def plain(r: StackRecord) -> dict:
            d = dataclasses.asdict(r)
            d["form"] = r.form.value
            d["dtypes"] = list(r.dtypes)
            return d

        return json.dumps(
            {
                "format_version": FORMAT_VERSION,
                "library": self.library,
                "keymap": self.keymap.value,
                "stacks": [plain(r) for r in self.stacks],
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str, where: str) -> Layout:
        try:
            data = json.loads(text)
            stacks = tuple(
                StackRecord(
                    path=str(s["path"]),
                    num_layers=int(s["num_layers"]),
                    form=Form(s["form"]),
                    layer_axis=int(s["layer_axis"]),
                    ensemble_size=None if s["ensemble_size"] is None else int(s["ensemble_size"]),
                    dtypes=tuple(s["dtypes"]),
                )
                for s in data["stacks"]
            )
            return cls(stacks, KeyMapName(data["keymap"]), str(data["library"]))
        except (ValueError, KeyError, TypeError) as err:
            raise CheckpointFormatError(
                f"checkpoint {where!r}",
                f"has an unreadable layout record ({err!r}): it was damaged or written by "
                f"another tool",
                "load it with an explicit keymap=",
            ) from None


def subtree(tree, path: str):
    node = tree
    for part in [p for p in path.split("/") if p]:
        if not isinstance(node, Mapping) or part not in node:
            raise StackLayoutError("not_found", stack=path, part=part)
        node = node[part]
    return node


def unrolled_layers(node) -> int | None:
    """N when ``node`` is ``{"layers_0": ..., "layers_{N-1}": ...}``, else None."""
    if not isinstance(node, Mapping) or not node:
        return None
    if set(node) == {f"layers_{i}" for i in range(len(node))}:
        return len(node)
    return None


def record_stacks(tree, stacks: Sequence[Stack], form: Form | None) -> tuple[StackRecord, ...]:
    """The record of each stack as found in ``tree`` (stored in ``form``, default: as found)."""
    import jax

    records = []
    for stack in stacks:
        node = subtree(tree, stack.path)
        leaves = jax.tree_util.tree_flatten_with_path(node)[0]
        if not leaves:
            raise StackLayoutError("empty", where=f"stack {stack.path!r}")
        dtypes = tuple(sorted({np.dtype(leaf.dtype).name for _, leaf in leaves}))
        unrolled = unrolled_layers(node)
        first = node["layers_0"] if unrolled is not None else node
        counts: dict[int, str] = {}
        sizes: dict[int, str] = {}
        for p, leaf in jax.tree_util.tree_flatten_with_path(first)[0]:
            shape = np.shape(leaf)
            name = "/".join(x for x in (stack.path, path_str(p)) if x)
            rank_needed = max(
                stack.layer_axis if unrolled is None else -1, 0 if stack.ensemble else -1
            )
            if len(shape) <= rank_needed:
                raise StackLayoutError(
                    "no_layer_axis",
                    leaf=name,
                    shape=shape,
                    axis=stack.layer_axis,
                    argument=f"Stack({stack.path!r}, layer_axis=...)",
                )
            if unrolled is None:
                counts.setdefault(shape[stack.layer_axis], name)
            if stack.ensemble:
                sizes.setdefault(shape[0], name)
        for what, found in ((f"layers on axis {stack.layer_axis}", counts), ("members", sizes)):
            if len(found) > 1:
                raise StackLayoutError(
                    "counts_differ",
                    where=f"stack {stack.path!r}",
                    what=what,
                    counts={name: n for n, name in found.items()},
                )
        num = unrolled if unrolled is not None else next(iter(counts))
        found_form = Form.UNROLLED if unrolled is not None else Form.STACKED
        size = next(iter(sizes)) if sizes else None
        records.append(
            StackRecord(stack.path, int(num), form or found_form, stack.layer_axis, size, dtypes)
        )
    return tuple(records)


def keymap_for(name: KeyMapName, paths: Sequence[str], layer_axis: int) -> KeyMap:
    """The key map from a tree with stacks at ``paths`` (stacked at ``layer_axis``, or
    unrolled as ``layers_{i}``) to per-layer keys ``{stack}.{i}.{rest}``."""
    if name is KeyMapName.TORCH:
        return torch_linear_keymap(tuple(paths), layer_axis=layer_axis)
    rules = []
    for path in paths:
        head = f"{path}/" if path else ""
        prefix = f"{path.replace('/', '.')}." if path else ""
        rules += [
            Rule(f"{head}layers_{{i}}/{{*rest}}", f"{prefix}{{i}}.{{rest}}"),
            Rule(f"{head}{{*rest}}", f"{prefix}{{i}}.{{rest}}"),
        ]
    rules.append(Rule("{*rest}", "{rest}"))
    return KeyMap(tuple(rules), layer_axis=layer_axis)
