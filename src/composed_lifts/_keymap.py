"""Declarative key maps: stacked param trees <-> flat state dicts with string keys.

A :class:`KeyMap` is a tuple of rules from *tree paths* (our params, ``/``-joined,
e.g. ``"params/Dense_0/kernel"``) to *key templates* (e.g.
``"model.layers.{i}.mlp.up_proj.weight"``). In a path pattern ``{name}`` matches one
segment and ``{*name}`` one or more (written into keys with ``.`` between
segments); the key template reuses those names. ``{i}`` is the layer index:

- a rule whose key has ``{i}`` and whose path has not maps a *stacked* leaf, one key
  per layer along ``KeyMap.layer_axis`` (0, or 1 for an ensemble's ``(B, N, ...)``);
- a rule with ``{i}`` in both (``"layers_{i}/{*rest}"``) maps an unrolled leaf;
- a rule without ``{i}`` maps one leaf to one key (embeddings, a head).

Each rule carries ``ops``, applied in order to one layer's array on its way to the
file and undone in reverse on the way back: :class:`Transpose`, :class:`Reshape`,
:class:`Cast`. A :class:`Fused` rule joins several of our leaves into one file
tensor along an axis (GPT-2's ``c_attn`` holds q, k and v) and splits it back.
Rules are tried in order; the first whose path matches a leaf wins, and every leaf
must be matched. ``ignore`` lists key globs a file may hold that no rule reads.

The Linen ``Dense`` kernel ``(D, H, hd)`` of an attention projection against a
PyTorch ``(H*hd, D)`` weight: flatten the heads, then transpose.

>>> import numpy as np
>>> from composed_lifts import KeyMap, Reshape, Rule, Transpose, from_state_dict, to_state_dict
>>> q = np.arange(2 * 4 * 2 * 3, dtype=np.float32).reshape(2, 4, 2, 3)  # N=2 layers, D=4, H=2, hd=3
>>> params = {"attn": {"q": q}, "embed": np.ones((5, 4), np.float32)}
>>> keymap = KeyMap((
...     Rule("attn/q", "layers.{i}.q_proj.weight", (Reshape((4, 6)), Transpose())),
...     Rule("{*rest}", "{rest}.weight"),
... ))
>>> state = to_state_dict(params, keymap)
>>> {k: v.shape for k, v in state.items()}
{'layers.0.q_proj.weight': (6, 4), 'layers.1.q_proj.weight': (6, 4), 'embed.weight': (5, 4)}
>>> back = from_state_dict(state, keymap, like=params)   # like: concrete or jax.eval_shape
>>> bool((back["attn"]["q"] == q).all())
True

Streaming: :func:`read_state` takes ``read(key) -> array`` (a ``safe_open`` handle's
``get_tensor``, a dict's ``__getitem__``) and fills one preallocated stacked array
per leaf, one layer at a time; :func:`iter_state_dict` yields ``(key, array)``
one at a time for a streamed writer; :func:`state_dict_specs` gives each key's
shape and dtype without touching data (to check a file, or to write a header).
:func:`torch_linear_keymap` is the ready map for PyTorch's ``nn.Linear``
convention. Conversions only move, reshape and transpose, so round trips are
exact (``==``) when every :class:`Cast` widens.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from ._arguments import describe_value
from ._layout._stack import as_stacks, path_str
from .errors import (
    ArgumentTypeError,
    CheckpointMismatchError,
    KeyMapError,
    MissingKeyError,
    StackLayoutError,
)

__all__ = [
    "Cast",
    "Fused",
    "KeyMap",
    "Reshape",
    "Rule",
    "PlanEntry",
    "PlanPart",
    "Transpose",
    "file_tensor",
    "assign",
    "check_source",
    "contiguous",
    "from_state_dict",
    "iter_state_dict",
    "leaves_with_paths",
    "path_str",
    "plan_entries",
    "read_state",
    "state_dict_specs",
    "to_state_dict",
    "torch_linear_keymap",
]


# ---------------------------------------------------------------- ops (ours -> file)


@dataclasses.dataclass(frozen=True)
class Transpose:
    """Permute axes on the way to the file (``None``: reverse them, PyTorch's ``(out, in)``)."""

    axes: tuple[int, ...] | None = None

    def _axes(self, ndim: int) -> tuple[int, ...]:
        return tuple(range(ndim))[::-1] if self.axes is None else tuple(self.axes)

    def shape(self, shape: tuple) -> tuple:
        return tuple(shape[a] for a in self._axes(len(shape)))

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.transpose(x, self._axes(x.ndim))

    def inverse(self, y: np.ndarray, shape: tuple) -> np.ndarray:
        return np.transpose(y, np.argsort(self._axes(len(shape))))


@dataclasses.dataclass(frozen=True)
class Reshape:
    """Reshape on the way to the file (one entry may be ``-1``); the way back restores our shape."""

    to: tuple[int, ...]

    def shape(self, shape: tuple) -> tuple:
        size = int(np.prod(shape, dtype=np.int64))
        known = int(np.prod([d for d in self.to if d != -1], dtype=np.int64))
        out = tuple(size // known if d == -1 and known else d for d in self.to)
        if int(np.prod(out, dtype=np.int64)) != size:
            raise KeyMapError("reshape", to=self.to, shape=tuple(shape), size=size)
        return out

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(self.to)

    def inverse(self, y: np.ndarray, shape: tuple) -> np.ndarray:
        return y.reshape(shape)


@dataclasses.dataclass(frozen=True)
class Cast:
    """Store as ``dtype`` (a NumPy or ``ml_dtypes`` name); the way back casts to our dtype."""

    dtype: str

    def shape(self, shape: tuple) -> tuple:
        return shape

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x.astype(_dtype(self.dtype))

    def inverse(self, y: np.ndarray, shape: tuple) -> np.ndarray:
        return y  # the caller casts to the target's dtype


Op = Transpose | Reshape | Cast


def _dtype(name) -> np.dtype:
    import ml_dtypes  # noqa: F401  (registers bfloat16 with NumPy)

    return np.dtype(getattr(ml_dtypes, str(name), name))


# ---------------------------------------------------------------- rules


_PLACEHOLDER = re.compile(r"\{(\*?)(\w+)\}")


def _pattern(path: str) -> re.Pattern:
    out, end = [], 0
    for m in _PLACEHOLDER.finditer(path):
        out.append(re.escape(path[end : m.start()]))
        star, name = m.groups()
        out.append(
            rf"(?P<{name}>\d+)"
            if name == "i"
            else rf"(?P<{name}>[^/]+{'(?:/[^/]+)*' if star else ''})"
        )
        end = m.end()
    out.append(re.escape(path[end:]))
    return re.compile("".join(out))


def _fill(template: str, captures: Mapping[str, str]) -> str:
    try:
        return template.format(**{k: v.replace("/", ".") for k, v in captures.items()})
    except KeyError as err:
        raise KeyMapError("template", template=template, name=err.args[0]) from None


@dataclasses.dataclass(frozen=True)
class Rule:
    """Our leaf at ``path`` <-> the file tensor ``key`` (see the module docstring)."""

    path: str
    key: str
    ops: tuple[Op, ...] = ()


@dataclasses.dataclass(frozen=True)
class Fused:
    """Several of our leaves (``parts``: rules whose keys are ignored) joined along ``axis``
    of one file tensor ``key``; each part's ``ops`` run before the join."""

    key: str
    parts: tuple[Rule, ...]
    axis: int = 0


@dataclasses.dataclass(frozen=True)
class KeyMap:
    """Rules tried in order, the layer axis of stacked leaves, and key globs to ignore."""

    rules: tuple[Rule | Fused, ...]
    layer_axis: int = 0
    ignore: tuple[str, ...] = ()

    def ignores(self, key: str) -> bool:
        return any(fnmatch.fnmatchcase(key, pattern) for pattern in self.ignore)


def torch_linear_keymap(stacks=("",), *, layer_axis: int = 0) -> KeyMap:
    """PyTorch's convention: ``Dense`` ``kernel`` ``(in, out)`` -> ``weight`` ``(out, in)``,
    ``bias`` as is, ``LayerNorm`` ``scale`` and ``Embed`` ``embedding`` -> ``weight``.

    Leaves under each of ``stacks`` (``Stack`` values or ``/``-joined paths; ``""``: the whole
    tree) are stacked and get one key per layer, ``{stack}.{i}.{rest}``; an unrolled
    ``layers_{i}`` subtree there maps to the same keys.
    """
    rules: list[Rule] = []
    for stack in as_stacks(stacks):
        head = f"{stack.path}/" if stack.path else ""
        key = stack.layer_key("{i}")
        for where in (f"{stack.layer_path('{i}')}/", head):
            rules += [
                Rule(f"{where}{{*m}}/kernel", f"{key}{{m}}.weight", (Transpose(),)),
                Rule(f"{where}{{*m}}/bias", f"{key}{{m}}.bias"),
                Rule(f"{where}{{*m}}/scale", f"{key}{{m}}.weight"),
            ]
    rules += [
        Rule("{*m}/kernel", "{m}.weight", (Transpose(),)),
        Rule("{*m}/embedding", "{m}.weight"),
        Rule("{*m}/scale", "{m}.weight"),
        Rule("{*m}", "{m}"),
    ]
    return KeyMap(tuple(rules), layer_axis=layer_axis)


# ---------------------------------------------------------------- the plan


@dataclasses.dataclass(frozen=True)
class PlanPart:
    path: str  # our leaf
    shape: tuple  # one layer's shape (the leaf's shape when not stacked)
    dtype: np.dtype
    ops: tuple[Op, ...]
    stacked: bool
    num_layers: int  # 1 when not stacked

    def file_shapes(self) -> list[tuple]:
        shapes = [self.shape]
        for op in self.ops:
            shapes.append(op.shape(shapes[-1]))
        return shapes

    def file_dtype(self) -> np.dtype:
        casts = [op for op in self.ops if isinstance(op, Cast)]
        return _dtype(casts[-1].dtype) if casts else self.dtype


@dataclasses.dataclass(frozen=True)
class PlanEntry:
    """The plan of a key map over a tree: one file tensor per layer (``key`` has ``{i}`` when ``stacked``) and the leaves it holds."""

    key: str
    parts: tuple[PlanPart, ...]
    axis: int | None  # join axis of a Fused tensor, None for a plain rule

    @property
    def stacked(self) -> bool:
        return self.parts[0].stacked

    @property
    def num_layers(self) -> int:
        return self.parts[0].num_layers

    def keys(self) -> list[str]:
        return (
            [self.key.format(i=i) for i in range(self.num_layers)] if self.stacked else [self.key]
        )

    def file_spec(self) -> tuple[tuple, np.dtype]:
        shapes = [p.file_shapes()[-1] for p in self.parts]
        if self.axis is None:
            return shapes[0], self.parts[0].file_dtype()
        for part, shape in zip(self.parts, shapes):
            rest = [d for a, d in enumerate(shape) if a != self.axis]
            if len(shape) != len(shapes[0]) or rest != [
                d for a, d in enumerate(shapes[0]) if a != self.axis
            ]:
                raise KeyMapError(
                    "fused_shapes",
                    key=self.key,
                    part=part.path,
                    shape=shape,
                    first=self.parts[0].path,
                    first_shape=shapes[0],
                    axis=self.axis,
                )
        joined = list(shapes[0])
        joined[self.axis] = sum(s[self.axis] for s in shapes)
        return tuple(joined), self.parts[0].file_dtype()


def leaves_with_paths(tree) -> list[tuple[str, Any]]:
    """``[(path, leaf)]`` of ``tree`` in flattening order, paths ``/``-joined."""
    return [(path_str(p), leaf) for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def plan_entries(tree, keymap: KeyMap) -> list[PlanEntry]:
    """The file tensors ``keymap`` makes of ``tree`` (concrete or abstract): each rule matched
    to its leaves, shapes checked, in the tree's order."""
    if not isinstance(keymap, KeyMap):
        raise ArgumentTypeError("keymap", "a KeyMap", describe_value(keymap))
    patterns = [
        [_pattern(r.path)] if isinstance(r, Rule) else [_pattern(p.path) for p in r.parts]
        for r in keymap.rules
    ]
    leaves = dict(leaves_with_paths(tree))
    entries: dict[str, PlanEntry] = {}
    for path in leaves:
        for rule, pats in zip(keymap.rules, patterns):
            found = next(((j, m) for j, pat in enumerate(pats) if (m := pat.fullmatch(path))), None)
            if found is None:
                continue
            j, match = found
            captures = match.groupdict()
            template = rule.key
            stacked = "{i}" in template and "i" not in captures
            key = (
                _fill(template.replace("{i}", "{{i}}"), captures)
                if stacked
                else _fill(template, captures)
            )
            if key in entries:
                if isinstance(rule, Fused) and entries[key].axis is not None:
                    break  # a sibling of a fused group already planned
                raise KeyMapError(
                    "collision", key=key, first=entries[key].parts[0].path, second=path
                )
            rules = rule.parts if isinstance(rule, Fused) else (rule,)
            parts = []
            for k, part in enumerate(rules):
                part_path = path if k == j else _fill(part.path, captures)
                if part_path not in leaves:
                    raise KeyMapError("fused_missing", leaf=path, key=key, part=part_path)
                parts.append(_part(part_path, leaves[part_path], part.ops, stacked, keymap, key))
            entry = PlanEntry(key, tuple(parts), rule.axis if isinstance(rule, Fused) else None)
            entry.file_spec()  # checks every Reshape against the leaf's shape
            entries[key] = entry
            break
        else:
            raise KeyMapError("unmatched", leaf=path)
    return list(entries.values())


def _part(path, leaf, ops, stacked, keymap, key) -> PlanPart:
    shape, dtype = tuple(np.shape(leaf)), np.dtype(leaf.dtype)
    if not stacked:
        return PlanPart(path, shape, dtype, tuple(ops), False, 1)
    axis = keymap.layer_axis
    if len(shape) <= axis:
        raise StackLayoutError(
            "no_layer_axis",
            leaf=path,
            shape=shape,
            axis=axis,
            argument=f"KeyMap(layer_axis=...) (or map key {key!r} with a rule without {{i}})",
        )
    return PlanPart(path, shape[:axis] + shape[axis + 1 :], dtype, tuple(ops), True, shape[axis])


# ---------------------------------------------------------------- conversions


def _bits(x: np.ndarray) -> np.ndarray:
    """``x`` viewed as unsigned integers of its item size: a strided copy of an ``ml_dtypes``
    array (bfloat16) runs through a slow generic loop, of its bits through NumPy's own."""
    size = x.dtype.itemsize
    if x.dtype.kind != "V" or x.dtype.fields is not None or size not in (1, 2, 4, 8):
        return x  # NumPy's own dtypes copy fast already
    return x.view(f"u{size}")


_TILE = 256


def assign(dest: np.ndarray, src: np.ndarray) -> None:
    """``dest[...] = src``, as a copy of bits when the dtypes are the same, in 256 x 256
    tiles when one side is a transposed matrix (measured 2.4x faster than NumPy's own
    strided copy of a 5632 x 2048 matrix: each tile stays in cache)."""
    if dest.dtype != src.dtype or dest.shape != src.shape:
        dest[...] = src
        return
    dest, src = _bits(dest), _bits(src)
    if dest.ndim != 2 or (dest.flags.c_contiguous and src.flags.c_contiguous):
        np.copyto(dest, src)
        return
    rows, cols = dest.shape
    for r in range(0, rows, _TILE):
        for c in range(0, cols, _TILE):
            dest[r : r + _TILE, c : c + _TILE] = src[r : r + _TILE, c : c + _TILE]


def contiguous(x: np.ndarray) -> np.ndarray:
    """``np.ascontiguousarray(x)``, copying bits (see :func:`assign`)."""
    if x.flags.c_contiguous:
        return x
    out = np.empty(x.shape, x.dtype)
    assign(out, x)
    return out


def _layer(leaf, part: PlanPart, axis: int, i: int) -> np.ndarray:
    leaf = np.asarray(leaf)
    return leaf[(slice(None),) * axis + (i,)] if part.stacked else leaf


def file_tensor(
    entry: PlanEntry, arrays: Mapping[str, Any], axis: int, i: int, take=_layer
) -> np.ndarray:
    """File tensor ``entry`` (its layer ``i`` when stacked) from ``arrays``, ``{path: leaf}``;
    ``take(leaf, part, axis, i)`` gives one part's layer as a NumPy array."""
    pieces = []
    for part in entry.parts:
        x = take(arrays[part.path], part, axis, i)
        for op in part.ops:
            x = op.forward(x)
        pieces.append(x)
    if entry.axis is not None:
        return np.concatenate(pieces, axis=entry.axis)
    return contiguous(pieces[0])  # writers such as safetensors' save_file need C order


def iter_state_dict(tree, keymap: KeyMap) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(key, array)`` one file tensor at a time (a layer of a stacked leaf each)."""
    arrays = dict(leaves_with_paths(tree))
    for entry in plan_entries(tree, keymap):
        for i, key in enumerate(entry.keys()):
            yield key, file_tensor(entry, arrays, keymap.layer_axis, i)


def to_state_dict(tree, keymap: KeyMap) -> dict[str, np.ndarray]:
    """The flat state dict ``{key: array}`` of ``tree`` under ``keymap`` (NumPy arrays)."""
    return dict(iter_state_dict(tree, keymap))


def state_dict_specs(like, keymap: KeyMap) -> dict[str, tuple[tuple, np.dtype]]:
    """``{key: (shape, dtype)}`` of the state dict of ``like`` (concrete or abstract), no data."""
    return {key: (shape, dtype) for key, shape, dtype, _ in plan_keys(like, keymap)}


def plan_keys(like, keymap: KeyMap) -> Iterator[tuple[str, tuple, np.dtype, str]]:
    """``(key, shape, dtype, params)`` for every key, ``params`` naming the leaves it holds."""
    for entry in plan_entries(like, keymap):
        shape, dtype = entry.file_spec()
        params = ", ".join(p.path for p in entry.parts)
        for key in entry.keys():
            yield key, shape, dtype, params


def read_state(
    read: Callable[[str], Any],
    keymap: KeyMap,
    like,
    *,
    keys=None,
    spec: Callable[[str], tuple] | None = None,
    read_into: Callable[[str, np.ndarray], None] | None = None,
    read_stacked: Callable[[list[str], np.ndarray, int], bool] | None = None,
    empty: Callable[[tuple, np.dtype], np.ndarray] = np.empty,
    read_view_into: Callable[[str, np.ndarray], None] | None = None,
) -> Any:
    """A tree shaped as ``like`` whose leaves are NumPy arrays read through ``read(key)``.

    Each stacked leaf is allocated once and filled one layer at a time, so at most one
    file tensor is held beside the result. Every tensor's shape and dtype is checked
    against ``like`` before it is written. ``keys``, the keys the source holds, turns
    on the check that no key is left unread (except ``keymap.ignore`` globs).
    ``spec(key) -> (shape, dtype)`` checks every key before any data is read; with it,
    ``read_into(key, dest)`` may fill a contiguous destination in place (no ops, no cast),
    and ``read_stacked(keys, dest, layer_axis)`` a whole stacked leaf at once (returning
    False when it cannot: then the leaf is read layer by layer). ``empty(shape, dtype)``
    allocates each result leaf. ``read_view_into(key, view)`` fills a strided view of the
    result (a layer seen through the rule's transposes) in place, for rules whose ops are
    all :class:`Transpose`: no temporary copy of the tensor.
    """
    entries = plan_entries(like, keymap)
    check_source(entries, keymap, keys, spec)
    if spec is None:
        read_into = None
    out = {
        part.path: empty(_stacked_shape(part, keymap.layer_axis), part.dtype)
        for entry in entries
        for part in entry.parts
    }
    for entry in entries:
        shape, dtype = entry.file_spec()
        direct = read_into is not None and entry.axis is None and not entry.parts[0].ops
        whole = out[entry.parts[0].path]
        if direct and entry.stacked and read_stacked is not None and whole.dtype == dtype:
            if read_stacked(entry.keys(), whole, keymap.layer_axis):
                continue
        for i, key in enumerate(entry.keys()):
            part = entry.parts[0]
            dest = out[part.path]
            if part.stacked:
                dest = dest[(slice(None),) * keymap.layer_axis + (i,)]
            if direct and read_into is not None and dest.flags.c_contiguous and dest.dtype == dtype:
                read_into(key, dest)
                continue
            if read_view_into is not None and spec is not None and _transposes(entry):
                view = dest
                for op in part.ops:
                    view = op.forward(view)
                read_view_into(key, view)
                continue
            x = _checked(read, key, shape, dtype, entry)
            pieces = [x] if entry.axis is None else _split(x, entry.parts, entry.axis)
            for part, piece in zip(entry.parts, pieces):
                shapes = part.file_shapes()
                for op, before in zip(reversed(part.ops), reversed(shapes[:-1])):
                    piece = op.inverse(piece, before)
                dest = out[part.path]
                if part.stacked:
                    assign(dest[(slice(None),) * keymap.layer_axis + (i,)], piece)
                else:
                    assign(dest, piece)
    treedef = jax.tree_util.tree_structure(like)
    return jax.tree_util.tree_unflatten(treedef, [out[p] for p, _ in leaves_with_paths(like)])


def check_source(
    entries: Sequence[PlanEntry],
    keymap: KeyMap,
    keys=None,
    spec: Callable[[str], tuple] | None = None,
) -> None:
    """Before any data is read: every key the plan wants is among ``keys`` and no other
    (but ``keymap.ignore`` globs), and ``spec(key) -> (shape, dtype)`` is what it wants."""
    if keys is not None:
        wanted = {k for e in entries for k in e.keys()}
        missing = sorted(wanted - set(keys))
        if missing:
            raise MissingKeyError(missing[0], _owner(entries, missing[0]), len(missing))
        extra = sorted(k for k in set(keys) - wanted if not keymap.ignores(k))
        if extra:
            raise KeyMapError("unread", count=len(extra), first=extra[0])
    if spec is not None:
        for entry in entries:
            want_shape, want_dtype = entry.file_spec()
            for key in entry.keys():
                got_shape, got_dtype = spec(key)
                _check_spec(key, got_shape, got_dtype, want_shape, want_dtype, entry)


def _transposes(entry: PlanEntry) -> bool:
    """One leaf whose ops only permute axes: the file tensor is a view of the leaf's layer."""
    return entry.axis is None and all(isinstance(op, Transpose) for op in entry.parts[0].ops)


def from_state_dict(state: Mapping[str, Any], keymap: KeyMap, like) -> Any:
    """The inverse of :func:`to_state_dict`: a tree shaped as ``like`` (every key must be read)."""
    return read_state(state.__getitem__, keymap, like, keys=list(state))


def _stacked_shape(part: PlanPart, axis: int) -> tuple:
    if not part.stacked:
        return part.shape
    return part.shape[:axis] + (part.num_layers,) + part.shape[axis:]


def _owner(entries, key) -> str:
    for entry in entries:
        if key in entry.keys():
            return ", ".join(p.path for p in entry.parts)
    return "?"


def _checked(read, key, shape, dtype, entry) -> np.ndarray:
    try:
        x = read(key)
    except KeyError:
        raise MissingKeyError(key, ", ".join(p.path for p in entry.parts), 1) from None
    x = np.asarray(x)
    _check_spec(key, x.shape, x.dtype, shape, dtype, entry)
    return x


def _check_spec(key, got_shape, got_dtype, shape, dtype, entry) -> None:
    if tuple(got_shape) != tuple(shape) or np.dtype(got_dtype) != dtype:
        raise CheckpointMismatchError(
            ", ".join(p.path for p in entry.parts),
            f"{np.dtype(got_dtype)}{tuple(got_shape)}",
            f"{dtype}{tuple(shape)}",
            key=key,
        )


def _split(x: np.ndarray, parts: Sequence[PlanPart], axis: int) -> list[np.ndarray]:
    sizes = [p.file_shapes()[-1][axis] for p in parts]
    return np.split(x, np.cumsum(sizes)[:-1], axis=axis)
