"""The registered model families: one module per family under ``models/_families/``.

Each module there defines ``FAMILY``, a :class:`~._family.Family`; adding a family
is adding a module (and its tests). :func:`family_for` picks the family of a
``config.json`` dict, :func:`family_of` the family of one of our configs;
:func:`config_from_hf` and :func:`config_to_hf` go through them.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from ..errors import ArgumentTypeError, ConfigValueError, UnsupportedConfigError
from . import _families
from ._family import Family
from ._fields import read_fields, shown

__all__ = ["config_from_hf", "config_to_hf", "families", "family_for", "family_of"]


@functools.cache
def families() -> dict[str, Family]:
    """Every registered family, by ``model_type``."""
    found = {}
    for info in sorted(pkgutil.iter_modules(_families.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{_families.__name__}.{info.name}")
        family = module.FAMILY
        found[family.model_type] = family
    return found


def family_for(hf: dict) -> Family:
    """The family of a ``config.json`` dict (its ``model_type`` and ``architectures``)."""
    known = families()
    model_type = hf.get("model_type")
    if not isinstance(model_type, str) or model_type not in known:
        raise UnsupportedConfigError(
            "model_type", model_type, " or ".join(repr(name) for name in sorted(known))
        )
    family = known[model_type]
    architectures = hf.get("architectures")
    if architectures is not None and architectures != [family.architecture]:
        raise UnsupportedConfigError("architectures", architectures, f"[{family.architecture!r}]")
    return family


def family_of(config) -> Family:
    """The family whose config class ``config`` is an instance of."""
    for family in families().values():
        if type(config) is family.config_class:
            return family
    names = ", ".join(f.config_class.__name__ for f in families().values())
    raise ArgumentTypeError(
        "config",
        f"a model config ({names})",
        type(config).__name__,
        "pass e.g. model.config, or config_from_hf(json.load(open('config.json')))",
    )


def config_from_hf(hf: dict):
    """Our config for a Hugging Face ``config.json`` dict; every field checked by name.

    A field this family does not implement (or does not know) is refused with
    :class:`~composed_lifts.errors.UnsupportedConfigError`, a value of the wrong type or
    range with :class:`~composed_lifts.errors.ConfigValueError`.
    """
    if not isinstance(hf, dict):
        raise ConfigValueError("(the whole file)", shown(hf), "a JSON object")
    family = family_for(hf)
    rest = {k: v for k, v in hf.items() if k not in ("model_type", "architectures")}
    return family.from_fields(read_fields(rest, family.fields), rest)


def config_to_hf(config) -> dict:
    """The ``config.json`` dict for ``config`` (``transformers`` fills in its other defaults)."""
    family = family_of(config)
    return {
        "architectures": [family.architecture],
        "model_type": family.model_type,
        **family.to_hf(config),
    }
