"""The layout a checkpoint records: for every stack in the tree its
:class:`~composed_lifts.layout.Stack` (path, number of layers, form, layer axis, ensemble
size) and dtypes, plus the key map used and the library's version. It travels as one JSON
string in the file's metadata.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Sequence

import jax
import numpy as np

from .._keymap import KeyMap, Rule, torch_linear_keymap
from ..errors import CheckpointFormatError, StackLayoutError
from ..layout import Form, Stack, as_stacks, find_stacks, layer_name, path_str, subtree

__all__ = ["Form", "KeyMapName", "Layout", "Stack", "StackRecord", "keymap_for", "record_stacks"]

LAYOUT_KEY = "composed_lifts.layout"
CHECKSUMS_KEY = "composed_lifts.xxh3_64"
HF_CONFIG_KEY = "composed_lifts.hf_config"  # the config.json of a model converted from a folder
FORMAT_VERSION = 1


class KeyMapName(enum.Enum):
    """The key maps a checkpoint can record: our tree paths, or PyTorch ``nn.Linear`` names."""

    NATIVE = "native"
    TORCH = "torch"


@dataclasses.dataclass(frozen=True)
class StackRecord(Stack):
    """A stack as a checkpoint records it: every field of the :class:`~composed_lifts.layout.Stack`
    measured (for an unrolled file, ``layer_axis`` is where the layers were), and its dtypes."""

    num_layers: int = 1
    form: Form = Form.STACKED
    dtypes: tuple[str, ...] = ()


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


def record_stacks(tree, stacks: Sequence[Stack], form: Form | None) -> tuple[StackRecord, ...]:
    """The record of each stack as found in ``tree`` (stored in ``form``, default: as found)."""
    records = []
    for found in find_stacks(tree, stacks):
        if found.form is Form.UNROLLED:
            _check_layers_alike(found.path, subtree(tree, found.path), int(found.num_layers or 0))
        leaves = jax.tree_util.tree_leaves(subtree(tree, found.path))
        dtypes = tuple(sorted({np.dtype(leaf.dtype).name for leaf in leaves}))
        fields = {f.name: getattr(found, f.name) for f in dataclasses.fields(Stack)}
        records.append(StackRecord(**{**fields, "form": form or found.form}, dtypes=dtypes))
    return tuple(records)


def _leaf_specs(tree) -> dict[str, str]:
    return {
        path_str(p): f"{np.dtype(leaf.dtype).name}{tuple(np.shape(leaf))}"
        for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def _check_layers_alike(path: str, node, n: int) -> None:
    """Every layer of an unrolled stack has layer 0's leaves, shapes and dtypes, or a
    :class:`StackLayoutError` names the layers and the leaves that differ."""
    first = _leaf_specs(node[layer_name(0)])
    for i in range(1, n):
        other = _leaf_specs(node[layer_name(i)])
        if other == first:
            continue
        diffs = [f"lacks {k!r}" for k in first if k not in other]
        diffs += [f"has {k!r}, which {layer_name(0)} lacks" for k in other if k not in first]
        diffs += [
            f"has {k!r} as {other[k]} where {layer_name(0)} has {first[k]}"
            for k in first
            if k in other and other[k] != first[k]
        ]
        more = f" (and {len(diffs) - 4} more)" if len(diffs) > 4 else ""
        raise StackLayoutError(
            "layers_differ",
            stack=path,
            layer=layer_name(i),
            differences=f"{'; '.join(diffs[:4])}{more}",
        )


def keymap_for(name: KeyMapName, stacks, layer_axis: int) -> KeyMap:
    """The key map from a tree with ``stacks`` (``Stack`` values or paths; stacked at
    ``layer_axis``, or unrolled as ``layers_{i}``) to per-layer keys ``{stack}.{i}.{rest}``."""
    stacks = as_stacks(tuple(stacks))
    if name is KeyMapName.TORCH:
        return torch_linear_keymap(stacks, layer_axis=layer_axis)
    rules = []
    for stack in stacks:
        head = f"{stack.path}/" if stack.path else ""
        rules += [
            Rule(f"{stack.layer_path('{i}')}/{{*rest}}", f"{stack.layer_key('{i}')}{{rest}}"),
            Rule(f"{head}{{*rest}}", f"{stack.layer_key('{i}')}{{rest}}"),
        ]
    rules.append(Rule("{*rest}", "{rest}"))
    return KeyMap(tuple(rules), layer_axis=layer_axis)
