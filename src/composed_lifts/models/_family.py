"""What a model family needs to meet Hugging Face, in one record.

One :class:`Family` per architecture, defined in its own module under
``models/_families/`` (found there by :mod:`._registry`): its config class,
how a ``config.json`` dict becomes that config and back, the Linen model, the
key map between our param paths and the file's tensor names, the sharding
table, and the table of config fields (implemented, fixed or ignored). Code
elsewhere asks the record; nothing branches on the config's type.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from .._keymap import KeyMap
from ._fields import Entry

__all__ = ["Family"]


@dataclasses.dataclass(frozen=True)
class Family:
    """A model family: ``model_type`` in ``config.json`` and everything that follows from it.

    Attributes:
      model_type: the ``config.json`` value that selects the family (``"gemma2"``).
      architecture: the one ``architectures`` entry we read and write (``"Gemma2ForCausalLM"``).
      config_class: our frozen config dataclass.
      from_fields: builds ``config_class`` from the checked values of ``fields``
        (and the raw dict, for fields whose meaning depends on others).
      to_hf: our config -> the ``config.json`` dict (without ``architectures``/``model_type``).
      model: the Linen model class, called as ``model(config, scan_layers=)``.
      keymap: our param paths <-> the file's tensor names.
      param_axes: logical names of each param's trailing axes, for ``ShardingRules``.
      fields: every field the config may hold (:mod:`._fields`).
      param_count: the number of params of the model of a config, computed from the config
        alone (before anything is allocated; tested equal to the model's).
    """

    model_type: str
    architecture: str
    config_class: type
    from_fields: Callable[[dict[str, Any], dict], Any]
    to_hf: Callable[[Any], dict]
    model: type
    keymap: KeyMap
    param_axes: tuple
    fields: tuple[Entry, ...]
    param_count: Callable[[Any], int]
