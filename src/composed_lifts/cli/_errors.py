"""The command line's own errors: each names its flags (``--block``, ``--force``,
``--allow-nonfinite``) or its environment (``COMPOSED_LIFTS_CACHE``, standard output).

They subclass :class:`composed_lifts.errors.ComposedLiftsError` and a builtin, as the library's do.
"""

from __future__ import annotations

from ..errors import ComposedLiftsError

__all__ = [
    "BlockImportError",
    "CacheFolderError",
    "MemoryEstimateError",
    "NonFiniteResultError",
    "StandardOutputError",
]


class BlockImportError(ComposedLiftsError, ValueError):
    """A block named as ``module:Class`` that cannot be imported, or is not a Linen module class.

    Run from the folder that holds the module (or put it on ``PYTHONPATH``) and name a
    subclass of ``flax.linen.Module``.
    """

    def __init__(self, text: str, problem: str):
        self.text, self.problem = text, problem
        super().__init__(f"--block {text!r}: {problem}")


class MemoryEstimateError(ComposedLiftsError, MemoryError):
    """A run would need more memory than the machine has available.

    Estimated before anything is allocated. Reduce ``--batch``, ``--features`` or
    ``--layers`` (or the input), or pass ``--force`` to try anyway.

    Attributes: ``what`` (the work), ``need`` and ``available`` (bytes), ``flags`` (what to
    reduce).
    """

    def __init__(self, what: str, need: int, available: int, flags: str):
        self.what, self.need, self.available, self.flags = what, need, available, flags
        super().__init__(
            f"{what} needs about {need / 1e9:.3g} GB of memory but {available / 1e9:.3g} GB is "
            f"available; reduce {flags}, or pass --force to try anyway"
        )


class NonFiniteResultError(ComposedLiftsError, ValueError):
    """A finite input gave NaN or infinity (a value overflowed float32 inside the stack).

    The result is not printed or written; scale the input down, or pass
    ``--allow-nonfinite`` to write it with NaN and infinities as JSON strings.

    Attributes: ``count`` of ``size`` values are not finite; ``layer``, the first layer
    (from 0) whose output is not finite (``None`` if each layer alone stays finite), of
    ``num_layers``.
    """

    def __init__(self, count: int, size: int, layer: int | None, num_layers: int):
        self.count, self.size, self.layer, self.num_layers = count, size, layer, num_layers
        where = (
            f"layer {layer} (of {num_layers}, counting from 0) is the first whose output is "
            f"not finite"
            if layer is not None
            else "each layer alone stays finite"
        )
        super().__init__(
            f"the result holds {count} NaN or infinite value(s) of {size}, from a finite input: "
            f"{where} (float32 overflows above about 3.4e38); scale the input down, or pass "
            f"--allow-nonfinite to print and write it anyway (JSON gets the strings "
            f'"NaN", "Infinity", "-Infinity")'
        )


class CacheFolderError(ComposedLiftsError, PermissionError):
    """The compilation cache folder cannot be used, or is not the user's own: another user
    owns it or may write it.

    Anyone who can write the cache can make JAX load a program of their choosing.
    ``chmod 700`` the folder, choose another with ``COMPOSED_LIFTS_CACHE``, or
    set ``COMPOSED_LIFTS_CACHE=off``.

    Attributes: ``folder``, ``problem``, ``fix``.
    """

    def __init__(
        self,
        folder: str,
        problem: str,
        fix: str = "set COMPOSED_LIFTS_CACHE to another folder or to off",
    ):
        self.folder, self.problem, self.fix = folder, problem, fix
        super().__init__(
            f"COMPOSED_LIFTS_CACHE: the compilation cache folder {folder!r} {problem}; {fix}"
        )


class StandardOutputError(ComposedLiftsError, OSError):
    """Standard output is closed, so the report would be lost: refused before any work.

    Redirect it instead of closing it: ``>/dev/null`` to discard the report.

    Attributes: ``seen`` (how it is closed).
    """

    def __init__(self, seen: str):
        self.seen = seen
        super().__init__(
            f"standard output is closed ({seen}), so the report would be lost; redirect it "
            f"instead (>/dev/null to discard the report)"
        )
