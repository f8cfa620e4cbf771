"""``--block MODULE:CLASS`` and ``--field NAME=VALUE``: a user's Linen block on the command line.

Shared by ``composed-lifts inspect`` and ``composed-lifts tune``.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import os
import sys

import flax.linen as nn

from ..errors import ArgumentTypeError, BlockImportError

__all__ = ["block_fields", "load_block"]


def load_block(text: str) -> type[nn.Module]:
    """Import ``module:Class`` (the current folder is importable, as with ``python -m``)."""
    module_name, sep, class_name = text.partition(":")
    if not sep or not module_name or not class_name:
        raise BlockImportError(text, "--block must be MODULE:CLASS, e.g. mypkg.blocks:Residual")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise BlockImportError(
            text,
            f"cannot import module {module_name!r} ({err}); run from the folder that holds it "
            f"or put it on PYTHONPATH",
        ) from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise BlockImportError(text, f"module {module_name!r} has no attribute {class_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise BlockImportError(
            text, f"it is {cls!r}, not a Linen module class (a subclass of flax.linen.Module)"
        )
    return cls


def block_fields(cls: type[nn.Module], args: argparse.Namespace) -> dict:
    """The block's fields from ``--field NAME=VALUE`` (Python literals), ``features`` from ``--features``."""
    fields = {}
    for item in args.field:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            raise ArgumentTypeError("--field", "NAME=VALUE", repr(item), "e.g. --field hidden=16")
        try:
            fields[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            fields[name] = value
    names = {f for f in getattr(cls, "__dataclass_fields__", {})}
    if "features" in names:
        fields.setdefault("features", args.features)
    unknown = sorted(set(fields) - names)
    if unknown:
        raise ArgumentTypeError(
            "--field",
            f"a field of {cls.__name__} ({sorted(names - {'parent', 'name'})})",
            f"{unknown[0]!r}: {cls.__name__} has no such field",
        )
    return fields
