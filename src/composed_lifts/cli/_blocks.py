"""``--block MODULE:CLASS`` and ``--field NAME=VALUE``: a user's Linen block on the command line.

Shared by ``composed-lifts inspect`` and ``composed-lifts tune``.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import os
import sys
import traceback

import flax.linen as nn

from ..doctor import field_names
from ..errors import ArgumentTypeError
from ._errors import BlockImportError

__all__ = ["blame", "block_fields", "load_block"]

_LOADED: dict[str, str] = {}  # source file of each module loaded by --block -> the --block text


def _where(err: BaseException) -> str:
    frames = traceback.extract_tb(err.__traceback__)
    if isinstance(err, SyntaxError) and err.filename:
        return f" ({err.filename}:{err.lineno})"
    return f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def load_block(text: str) -> type[nn.Module]:
    """Import ``module:Class`` (the current folder is importable, as with ``python -m``)."""
    module_name, sep, class_name = text.rpartition(":")
    if not sep or not module_name or not class_name:
        raise BlockImportError(text, "--block must be MODULE:CLASS, e.g. mypkg.blocks:Residual")
    if "/" in module_name or os.sep in module_name or module_name.endswith(".py"):
        stem = os.path.splitext(os.path.basename(module_name))[0]
        raise BlockImportError(
            text,
            f"{module_name!r} is a path; --block takes a module name: run from the folder that "
            f"holds the file (or put it on PYTHONPATH) and pass {stem}:{class_name}",
        )
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
    except Exception as err:  # a syntax error in it, or an exception at import
        raise BlockImportError(
            text,
            f"importing module {module_name!r} raised {type(err).__name__}: {err}{_where(err)}",
        ) from None
    source = getattr(module, "__file__", None)
    if source:
        _LOADED[os.path.realpath(source)] = text
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
    names = set(field_names(cls))
    if "features" in fields and "features" in names:
        raise ArgumentTypeError(
            "--field",
            "a field other than features",
            f"features={fields['features']!r}",
            "give features with --features, e.g. --features 16",
        )
    if "features" in names:
        fields.setdefault("features", args.features)
    unknown = sorted(set(fields) - names)
    if unknown:
        raise ArgumentTypeError(
            "--field",
            f"a field of {cls.__name__} ({sorted(names)})",
            f"{unknown[0]!r}: {cls.__name__} has no such field",
        )
    return fields


def blame(err: BaseException) -> str | None:
    """If ``err`` was raised inside a module loaded by ``--block``, say so (else ``None``)."""
    seen = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        for frame in reversed(traceback.extract_tb(e.__traceback__)):
            text = _LOADED.get(os.path.realpath(frame.filename))
            if text is not None:
                return (
                    f"--block {text}: your block raised {type(err).__name__}: "
                    f"{str(err).strip().splitlines()[0] if str(err).strip() else ''} "
                    f"({frame.filename}:{frame.lineno}); fix the block or its --field values"
                )
        e = e.__cause__ or e.__context__
    return None
