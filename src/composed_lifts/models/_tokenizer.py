"""Text in and out through a folder's ``tokenizer.json`` (the ``tokenizers`` library), as ``transformers`` does.

``Tokenizer.from_folder(folder)`` reads ``tokenizer.json`` and, when present,
``tokenizer_config.json`` (special tokens, ``chat_template``) and
``chat_template.jinja`` (where ``transformers`` 5 saves the template).
``encode`` adds the special tokens the tokenizer's post-processor adds
(``tokenizer(text)`` in ``transformers``); ``decode`` keeps special tokens
(``transformers``' ``decode`` default, where ``tokenizers``' own default skips
them). ``apply_chat_template`` renders the template with jinja2 in the sandbox
``transformers`` uses (``trim_blocks``, ``lstrip_blocks``, ``loopcontrols``,
``tojson``, ``raise_exception``, ``strftime_now``) and encodes the text
without adding special tokens.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

from ..errors import InputFileError

__all__ = ["Tokenizer"]


def _token_text(value) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


class Tokenizer:
    """A folder's tokenizer: ``encode``, ``decode`` and ``apply_chat_template``."""

    def __init__(self, backend, config: dict, chat_template: str | None, folder: str = ""):
        self.backend = backend
        self.config = config
        self.chat_template = chat_template
        self.folder = folder

    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> Tokenizer:
        try:
            import tokenizers
        except ImportError:
            raise InputFileError(
                "text prompts",
                "need the tokenizers library, which is not installed",
                "pip install 'composed-lifts[text]' (tokenizers and jinja2)",
            ) from None
        folder = Path(folder)
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise InputFileError(
                f"folder {str(folder)!r}",
                "has no tokenizer.json, which text prompts need",
                "save the tokenizer there (tokenizer.save_pretrained(folder)) or give token ids",
            )
        try:
            backend = tokenizers.Tokenizer.from_file(str(path))
        except Exception as err:  # the Rust library raises plain Exceptions
            raise InputFileError(f"{str(path)!r}", f"cannot be read by tokenizers: {err}") from None
        config: dict = {}
        config_path = folder / "tokenizer_config.json"
        if config_path.is_file():
            try:
                config = json.loads(config_path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise InputFileError(f"{str(config_path)!r}", f"is not valid JSON: {err}") from None
        template = config.get("chat_template")
        jinja = folder / "chat_template.jinja"
        if jinja.is_file():
            template = jinja.read_text(encoding="utf-8")
        if not isinstance(template, str):
            template = None  # named templates (a list) are not supported
        return cls(backend, config, template, str(folder))

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        return list(self.backend.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids, *, skip_special_tokens: bool = False) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def special_tokens(self) -> dict[str, str]:
        names = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token")
        out = {}
        for name in names:
            text = _token_text(self.config.get(name))
            if text is not None:
                out[name] = text
        return out

    def render_chat(self, messages: list[dict], *, add_generation_prompt: bool = True) -> str:
        """The chat template applied to ``messages`` (text; see the module docstring)."""
        if self.chat_template is None:
            raise InputFileError(
                f"folder {self.folder!r}",
                "has no chat template (neither chat_template.jinja nor a chat_template in "
                "tokenizer_config.json)",
                "give the prompt as plain text, without --chat",
            )
        import jinja2
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):
            raise jinja2.exceptions.TemplateError(message)

        def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
            return json.dumps(
                x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                sort_keys=sort_keys,
            )  # fmt: skip

        def strftime_now(format):
            return datetime.datetime.now().strftime(format)

        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
        )
        env.filters["tojson"] = tojson
        env.globals.update(
            raise_exception=raise_exception, strftime_now=strftime_now, dict=dict,
            namespace=jinja2.utils.Namespace,
        )  # fmt: skip
        template = env.from_string(self.chat_template)
        return template.render(
            messages=messages,
            tools=None,
            documents=None,
            add_generation_prompt=add_generation_prompt,
            **self.special_tokens(),
        )

    def apply_chat_template(self, messages: list[dict], *, add_generation_prompt=True) -> list[int]:
        text = self.render_chat(messages, add_generation_prompt=add_generation_prompt)
        return self.encode(text, add_special_tokens=False)
