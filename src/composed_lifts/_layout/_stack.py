"""The stack layout as one value, the per-layer names, and the one membership test.

A :class:`Stack` says where a stack of layers lies in a params tree (its ``/``-joined
``path``, ``""`` for the whole tree), how many layers it has, in which :class:`Form`
(``STACKED``: one array per leaf with a layer axis; ``UNROLLED``: one subtree per layer,
named ``layers_0 ... layers_{N-1}``), on which axis the layers sit, and how many ensemble
members axis 0 holds (``None``: one stack shared by every example). Fields left ``None``
are read from the tree by :func:`~composed_lifts.layout.find_stacks`.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping, Sequence
from typing import Any, Self

from .._arguments import check_integer, describe_value
from ..errors import ArgumentTypeError, StackLayoutError

__all__ = [
    "Form",
    "Stack",
    "as_stacks",
    "layer_index",
    "layer_name",
    "path_str",
    "subtree",
    "unrolled_count",
    "with_subtree",
]

_PREFIX = "layers_"
_NAME = re.compile(rf"{_PREFIX}(0|[1-9][0-9]*)")


class Form(enum.Enum):
    """How a stack's layers are held: one array per leaf with a layer axis, or one subtree per
    layer (``layers_0 ... layers_{N-1}``)."""

    STACKED = "stacked"
    UNROLLED = "unrolled"


def layer_name(i: int | str) -> str:
    """The name of layer ``i`` of an unrolled stack: ``layer_name(3) == "layers_3"``.

    ``layer_name("{i}")`` is the template ``"layers_{i}"`` that key maps match.
    """
    return f"{_PREFIX}{i}"


def layer_index(name: str) -> int | None:
    """The inverse of :func:`layer_name`: ``3`` for ``"layers_3"``, ``None`` for other names."""
    match = _NAME.fullmatch(name) if isinstance(name, str) else None
    return None if match is None else int(match.group(1))


def unrolled_count(node: Any) -> int | None:
    """N when ``node`` is exactly ``{"layers_0": ..., ..., "layers_{N-1}": ...}``, else None."""
    if not isinstance(node, Mapping) or not node:
        return None
    if {layer_index(k) if isinstance(k, str) else None for k in node} == set(range(len(node))):
        return len(node)
    return None


def path_str(path) -> str:
    """A JAX key path as our ``/``-joined tree path: ``('params', 'Dense_0', 'kernel')`` ->
    ``"params/Dense_0/kernel"``."""
    parts = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts)


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


@dataclasses.dataclass(frozen=True)
class Stack:
    """One stack of layers in a params tree (see the module docstring).

    Attributes:
      path: the ``/``-joined dict keys of the stack's subtree; ``""`` is the whole tree.
      layer_axis: the axis that holds the layers of a stacked leaf (1 after an
        ensemble's member axis); for an unrolled stack, where it goes when stacked.
      ensemble_size: how many members axis 0 holds (one stack per example), or
        ``None`` for a stack shared by every example.
      num_layers: N, or ``None`` to read it from the tree.
      form: :class:`Form`, or ``None`` to read it from the tree.

    >>> Stack("params/decoder", num_layers=4).contains("params/decoder/Dense_0/kernel")
    True
    >>> Stack("params/decoder").layer_path(2)
    'params/decoder/layers_2'
    """

    path: str = ""
    layer_axis: int = 0
    ensemble_size: int | None = None
    num_layers: int | None = None
    form: Form | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.path, str):
            raise ArgumentTypeError(
                "Stack.path", "a '/'-joined path (str)", describe_value(self.path)
            )
        check_integer("Stack.layer_axis", self.layer_axis, minimum=0)
        for name in ("ensemble_size", "num_layers"):
            if getattr(self, name) is not None:
                check_integer(f"Stack.{name}", getattr(self, name), minimum=1)
        if self.form is not None and not isinstance(self.form, Form):
            raise ArgumentTypeError(
                "Stack.form", "a Form (Form.STACKED or Form.UNROLLED) or None", repr(self.form)
            )

    def contains(self, path: str) -> bool:
        """Whether the leaf at ``path`` (``/``-joined) lies in this stack."""
        return self.path == "" or path == self.path or path.startswith(self.path + "/")

    def layer_path(self, i: int | str) -> str:
        """The path of layer ``i``'s subtree when the stack is unrolled."""
        return "/".join(_parts(self.path) + [layer_name(i)])

    def layer_key(self, i: int | str) -> str:
        """The head of layer ``i``'s keys in a flat state dict: ``"params.stack.3."`` for
        ``Stack("params/stack")`` (``"3."`` for the whole tree); ``"{i}"`` gives a template."""
        return ".".join(_parts(self.path) + [str(i), ""])

    def replace(self, **changes) -> Self:
        """This stack with ``changes`` (``stack.replace(form=Form.UNROLLED)``)."""
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        """``"stack 'params' (4 layers, stacked on axis 0, shared)"``: for messages and ``show``."""
        parts = []
        if self.num_layers is not None:
            parts.append(f"{self.num_layers} layers")
        if self.form is Form.UNROLLED:
            parts.append("unrolled")
        else:
            parts.append(f"{'stacked on ' if self.form else ''}axis {self.layer_axis}")
        parts.append(
            "shared" if self.ensemble_size is None else f"ensemble of {self.ensemble_size}"
        )
        return f"stack {self.path!r} ({', '.join(parts)})"


def as_stacks(stacks: Any) -> tuple[Stack, ...]:
    """``stacks`` as :class:`Stack` values: a ``Stack``, a ``/``-joined path, or a sequence of
    them; ``None`` is the whole tree (``(Stack(""),)``)."""
    if stacks is None:
        return (Stack(),)
    if isinstance(stacks, (str, Stack)):
        stacks = (stacks,)
    if not isinstance(stacks, Sequence):
        raise ArgumentTypeError(
            "stacks", "a sequence of Stack(...) or '/'-joined paths", describe_value(stacks)
        )
    out = []
    for s in stacks:
        if isinstance(s, str):
            s = Stack(s)
        if not isinstance(s, Stack):
            raise ArgumentTypeError(
                "stacks", "a sequence of Stack(...) or '/'-joined paths", describe_value(s)
            )
        out.append(s)
    return tuple(out)


def subtree(tree: Any, path: str) -> Any:
    """The node at ``path`` (``/``-joined dict keys; ``""``: the tree itself)."""
    node = tree
    for part in _parts(path):
        if not isinstance(node, Mapping) or part not in node:
            raise StackLayoutError("not_found", stack=path, part=part)
        node = node[part]
    return node


def with_subtree(tree: Any, path: str, value: Any) -> Any:
    """A copy of ``tree`` (its dicts along ``path``) with the node at ``path`` replaced."""
    parts = _parts(path)
    if not parts:
        return value
    return {**tree, parts[0]: with_subtree(tree[parts[0]], "/".join(parts[1:]), value)}
