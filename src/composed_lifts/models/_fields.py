"""A family's ``config.json`` fields as a table: each one read and checked, fixed, or ignored.

Every field a family's config may hold is in its table, as one of

- :class:`Read`: implemented; its value is checked (type and range, the field named in a
  :class:`~composed_lifts.errors.ConfigValueError`) and goes into our config;
- :class:`Fixed`: changes the numbers, and only the listed values are implemented (any
  other is refused with :class:`~composed_lifts.errors.UnsupportedConfigError`); a missing
  field means transformers' default, which is one of them;
- :class:`Ignored`: known not to change the numbers (token ids of the tokenizer, dtype,
  ``use_cache`` ...).

A field in no table is refused by name: it may change the numbers in a way we do not know.
:func:`read_fields` applies a table to a ``config.json`` dict.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from ..errors import ConfigValueError, UnsupportedConfigError

__all__ = [
    "COMMON_IGNORED",
    "Fixed",
    "Ignored",
    "Read",
    "boolean",
    "choice",
    "integer",
    "optional",
    "read_fields",
    "real",
    "shown",
    "token_ids",
]

_REQUIRED = object()


def shown(value: Any) -> str:
    """``value`` as an error message shows it (``repr``, shortened)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# A check takes (field, value) and returns the value to keep, or raises ConfigValueError.
Check = Callable[[str, Any], Any]


def integer(minimum: int = 1, maximum: int = 2**62) -> Check:
    """An int in ``[minimum, maximum]``; a bool or a float (``32.5``, even ``32.0``) is refused."""

    def check(field: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigValueError(field, shown(value), f"an integer >= {minimum}")
        if not minimum <= value <= maximum:
            raise ConfigValueError(field, shown(value), f"an integer in [{minimum}, {maximum}]")
        return value

    return check


def real(*, positive: bool = True, keep_int: bool = False) -> Check:
    """A finite number, ``> 0`` when ``positive``; an int is taken as a float unless
    ``keep_int`` (for fields ``transformers`` types as int and writes back as such)."""

    def check(field: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigValueError(field, shown(value), "a number")
        value = value if keep_int and isinstance(value, int) else float(value)
        if not math.isfinite(value) or (positive and value <= 0):
            raise ConfigValueError(field, shown(value), "a finite number > 0")
        return value

    return check


def boolean() -> Check:
    def check(field: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ConfigValueError(field, shown(value), "true or false")
        return value

    return check


def choice(*values: Any) -> Check:
    def check(field: str, value: Any) -> Any:
        if isinstance(value, bool) or value not in values:
            raise ConfigValueError(field, shown(value), " or ".join(map(repr, values)))
        return value

    return check


def optional(inner: Check) -> Check:
    """``null`` (kept as ``None``) or a value ``inner`` accepts."""

    def check(field: str, value: Any) -> Any:
        return None if value is None else inner(field, value)

    return check


def token_ids() -> Check:
    """``null``, a token id, or a list of them (kept as a tuple)."""
    one = integer(minimum=0)

    def check(field: str, value: Any) -> int | tuple[int, ...] | None:
        if value is None:
            return None
        if isinstance(value, list):
            return tuple(one(f"{field}[{i}]", v) for i, v in enumerate(value))
        return one(field, value)

    return check


@dataclasses.dataclass(frozen=True)
class Read:
    """An implemented field: checked by ``check``, ``default`` when missing (none: required)."""

    name: str
    check: Check
    default: Any = _REQUIRED


@dataclasses.dataclass(frozen=True)
class Fixed:
    """A field whose only implemented values are ``allowed``."""

    name: str
    allowed: tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class Ignored:
    """A field known not to change the numbers."""

    name: str


Entry = Read | Fixed | Ignored

# Fields of every transformers config that do not change a causal LM's numbers: bookkeeping,
# the tokenizer's special ids (read only for generate's defaults), dtype (from_hf's dtype=
# decides), training-only settings (dropout, init), classification-head labels.
COMMON_IGNORED = (
    "_name_or_path",
    "transformers_version",
    "dtype",
    "torch_dtype",
    "use_cache",
    "output_hidden_states",
    "output_attentions",
    "return_dict",
    "chunk_size_feed_forward",
    "is_encoder_decoder",
    "id2label",
    "label2id",
    "num_labels",
    "problem_type",
    "initializer_range",
    "pad_token_id",
    "tokenizer_class",
    "attention_dropout",
)


def read_fields(hf: dict, table: tuple[Entry, ...]) -> dict[str, Any]:
    """The checked values of ``table``'s :class:`Read` fields in ``hf``, by name.

    Refuses a field in no table (``UnsupportedConfigError``), a :class:`Fixed` field's
    other values (the same) and an invalid value (``ConfigValueError``), each by name.
    """
    known = {*COMMON_IGNORED, *(entry.name for entry in table)}
    for name in hf:
        if name not in known:
            raise UnsupportedConfigError(
                name, hf[name], "absent: composed_lifts.models does not know this field"
            )
    for entry in table:  # what is not implemented first: it refuses the model outright
        if isinstance(entry, Fixed) and entry.name in hf:
            if not _among(hf[entry.name], entry.allowed):
                raise UnsupportedConfigError(
                    entry.name, hf[entry.name], " or ".join(map(repr, entry.allowed))
                )
    values = {}
    for entry in table:
        if not isinstance(entry, Read):
            continue
        if entry.name in hf:
            values[entry.name] = entry.check(entry.name, hf[entry.name])
        elif entry.default is _REQUIRED:
            raise ConfigValueError(entry.name, "(missing)", "a value in config.json")
        else:
            values[entry.name] = entry.default
    return values


def _among(value: Any, allowed: tuple) -> bool:
    """``value in allowed`` with ``True != 1`` (JSON's booleans are not numbers)."""
    return any(type(value) is type(a) and value == a or value is a for a in allowed)
