"""One exception class per failure mode.

Each class subclasses the builtin a user would catch (``ValueError`` or
``TypeError``) and :class:`ComposedLiftsError`, so callers can catch either.
Messages name the argument, the value seen, the value expected, and the fix.
"""

from __future__ import annotations

__all__ = [
    "ArgumentRangeError",
    "ArgumentTypeError",
    "BatchSizeError",
    "BlockImportError",
    "BlockOutputError",
    "CarryChangedError",
    "ComposedLiftsError",
    "ConfusedSplitError",
    "InputDtypeError",
    "InputFileError",
    "InputShapeError",
    "LayerInputsError",
    "LayoutMismatchError",
    "LayoutProbeError",
    "MissingRngError",
    "NonFiniteInputError",
    "SeedRangeError",
    "UnsplitRngError",
    "WidthMismatchError",
    # the command line and files (issue 12)
    "CacheFolderError",
    "MemoryEstimateError",
    "NonFiniteResultError",
    "OutputFileError",
    "ReadOnlyFileError",
    "StandardOutputError",
]


class ComposedLiftsError(Exception):
    """Base class of every error raised by composed_lifts on bad input."""


class ArgumentTypeError(ComposedLiftsError, TypeError):
    """An argument has the wrong Python type.

    >>> from composed_lifts import composed_lifts_forward
    >>> composed_lifts_forward(0, [[1.0]], num_layers=True, features=1)
    Traceback (most recent call last):
    ...
    composed_lifts._errors.ArgumentTypeError: num_layers must be an integer (int or numpy integer), got bool True...
    """


class ArgumentRangeError(ComposedLiftsError, ValueError):
    """An integer argument is outside its allowed range (``num_layers < 0``, ``features < 1``)."""


class SeedRangeError(ComposedLiftsError, ValueError):
    """A seed that a 32-bit PRNG key cannot hold.

    ``jax.random.PRNGKey(2**32)`` silently gives the same key as seed 0, and
    ``PRNGKey(-1)`` the same as ``PRNGKey(2**32 - 1)``; we refuse such seeds so
    that two different seeds never silently give the same answer.
    """


class InputShapeError(ComposedLiftsError, ValueError):
    """``x_batch`` does not have the expected rank (or is ragged)."""


class WidthMismatchError(ComposedLiftsError, ValueError):
    """The carry's width differs from ``features``: the scan's carry would change shape.

    >>> import numpy as np
    >>> from composed_lifts import composed_lifts_forward
    >>> composed_lifts_forward(0, np.ones((2, 5)), num_layers=3, features=4)
    Traceback (most recent call last):
    ...
    composed_lifts._errors.WidthMismatchError: x_batch.shape[-1] is 5 but features is 4...
    """


class InputDtypeError(ComposedLiftsError, TypeError):
    """``x_batch`` holds booleans, complex numbers, strings or objects instead of real numbers."""


class NonFiniteInputError(ComposedLiftsError, ValueError):
    """``x_batch`` holds NaN or infinity (pass ``check_finite=False`` to skip the check)."""


class InputFileError(ComposedLiftsError, ValueError):
    """An input file is missing, unreadable, corrupted, or of an unknown format."""


class CarryChangedError(ComposedLiftsError, ValueError):
    """A block returns a carry whose structure, shape or dtype differs from the carry it got.

    A scan needs the carry to keep its type from layer to layer.
    """


class BlockOutputError(ComposedLiftsError, TypeError):
    """A block's ``__call__`` returns something other than a ``(carry, y)`` pair."""


class LayerInputsError(ComposedLiftsError, ValueError):
    """Per-layer inputs ``xs`` whose layer axis is not ``num_layers`` long."""


class BatchSizeError(ComposedLiftsError, ValueError):
    """Leaves of the carry (or per-example inputs) disagree on the batch size."""


class MissingRngError(ComposedLiftsError, ValueError):
    """The block asks for an RNG stream (``self.make_rng("dropout")``) that the call does not provide."""


class ConfusedSplitError(ComposedLiftsError, ValueError):
    """A lift splits the params RNG but does not give params an axis to hold the split values.

    ``nn.vmap(..., variable_axes={"params": None}, split_rngs={"params": True})``
    initialises a different param per example and then has nowhere to put them:
    JAX fails deep inside the vmap with "got axis spec None but output was
    batched". ``composed_lifts.doctor`` refuses the composition before tracing.

    >>> from composed_lifts import Block
    >>> from composed_lifts.doctor import Composition, LiftParams, describe
    >>> bad = Composition(num_layers=2, vmap=LiftParams(variable_axis=None, split_rngs=True))
    >>> describe(Block(features=3), bad, carry=(4, 3))
    Traceback (most recent call last):
    ...
    composed_lifts._errors.ConfusedSplitError: the vmap's split_rngs={'params': True} ...
    """


class BlockImportError(ComposedLiftsError, ValueError):
    """A block named as ``module:Class`` that cannot be imported, or is not a Linen module class."""


class LayoutProbeError(ComposedLiftsError, ValueError):
    """Re-evaluating a stack with another number of layers or batch size changed its param tree.

    The doctor finds each axis's role by probing (evaluating again with N+1
    layers and B+2 examples); that needs the tree's structure and each leaf's
    rank to stay the same.
    """


class LayoutMismatchError(ComposedLiftsError, ValueError):
    """Param trees that a conversion expects to match differ in structure, shape or dtype."""


class UnsplitRngError(ComposedLiftsError, ValueError):
    """An NNX block keeps an RNG stream that was not split per layer (it keeps the ``rngs`` it got)."""


# --- the command line and files (issue 12) ---


class OutputFileError(ComposedLiftsError, OSError):
    """An output location that cannot be written: its folder is missing or not writable, it is a
    folder, its name is too long, or its suffix names no format we write.

    Checked before any work starts; pick another path or create the folder.
    """


class ReadOnlyFileError(ComposedLiftsError, PermissionError):
    """The output file exists and is read-only: we refuse to replace it.

    Make it writable (``chmod u+w FILE``) or write elsewhere.
    """


class MemoryEstimateError(ComposedLiftsError, MemoryError):
    """A run would need more memory than the machine has available.

    Reduce ``--batch``, ``--features`` or ``--layers`` (or the input), or pass
    ``--force`` to try anyway.
    """

    def __init__(self, what: str, need: int, available: int, flags: str):
        super().__init__(
            f"{what} needs about {need / 1e9:.3g} GB of memory but {available / 1e9:.3g} GB is "
            f"available; reduce {flags}, or pass --force to try anyway"
        )


class NonFiniteResultError(ComposedLiftsError, ValueError):
    """A finite input gave NaN or infinity (a value overflowed float32 inside the stack).

    The result is not printed or written; scale the input down, or pass
    ``--allow-nonfinite`` to write it with NaN and infinities as JSON strings.
    """


class CacheFolderError(ComposedLiftsError, PermissionError):
    """The compilation cache folder is not the user's own: another user owns it or may write it.

    Anyone who can write the cache can make JAX load a program of their choosing.
    ``chmod 700`` the folder, choose another with ``COMPOSED_LIFTS_CACHE``, or
    set ``COMPOSED_LIFTS_CACHE=off``.
    """


class StandardOutputError(ComposedLiftsError, OSError):
    """Standard output is closed, so the report would be lost: refused before any work.

    Redirect it instead of closing it: ``>/dev/null`` to discard the report.
    """

    def __init__(self):
        super().__init__(
            "standard output is closed; redirect it instead (>/dev/null to discard the report)"
        )
