"""One way to name a block: a Linen module class plus the values of its fields.

``field_values`` is the one reader of a module's fields (what the stacks pass on
to a fresh copy of the block, what the doctor prints); :class:`BlockSpec` is
a block named that way (``Block(features=8)``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn

__all__ = ["BlockSpec", "block_name", "field_values"]


def field_values(module: nn.Module, cls: type[nn.Module] | None = None) -> dict[str, Any]:
    """The values ``module`` holds for the dataclass fields of ``cls`` (default its own class),
    without Flax's ``parent`` and ``name``."""
    cls = type(module) if cls is None else cls
    return {
        f.name: getattr(module, f.name)
        for f in dataclasses.fields(cls)
        if f.init and f.name not in ("parent", "name")
    }


def block_name(text: str) -> str:
    """``Block`` from ``Block(features=8)`` (a :meth:`BlockSpec.text`)."""
    return text.split("(", 1)[0]


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """A Linen block class and the field values to build it with."""

    cls: type[nn.Module]
    fields: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, module: nn.Module) -> BlockSpec:
        """The spec of a module instance (``Block(features=8)``)."""
        return cls(type(module), tuple(field_values(module).items()))

    @property
    def name(self) -> str:
        return self.cls.__name__

    def make(self) -> nn.Module:
        """A fresh, unbound instance."""
        return self.cls(**dict(self.fields), parent=None)

    def text(self) -> str:
        """``Block(features=8)``."""
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in self.fields)})"
