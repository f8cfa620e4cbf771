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
    # checkpoints and key maps
    "KeyMapError",
    "StackLayoutError",
    "TensorMismatchError",
    "CheckpointArgumentError",
    "MembersDifferError",
    "MissingKeyError",
    "CheckpointWriteError",
    "CheckpointFormatError",
    "ChecksumMismatchError",
    "CheckpointMismatchError",
    # models (Hugging Face interop)
    "UnsupportedConfigError",
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


# ---------------------------------------------------------------- checkpoints and key maps


class KeyMapError(ComposedLiftsError, ValueError):
    """A key map that does not fit the tree: a leaf no rule matches, two leaves on one key,
    a fused part missing, a Reshape that cannot hold a layer, or keys in a file that no
    rule reads. Add or fix the rule the message names.

    >>> import numpy as np
    >>> from composed_lifts import KeyMap, Rule, to_state_dict
    >>> to_state_dict({"a": np.ones(2), "b": np.ones(2)}, KeyMap((Rule("a", "x"),)))
    Traceback (most recent call last):
    ...
    composed_lifts._errors.KeyMapError: no rule of the key map matches leaf 'b'; ...

    Attributes: ``problem``, ``fix``.
    """

    def __init__(self, problem: str, fix: str = ""):
        self.problem, self.fix = problem, fix
        super().__init__(problem + (f"; {fix}" if fix else ""))


class StackLayoutError(ComposedLiftsError, ValueError):
    """A tree whose stacks do not have the layout named: no leaf under the stack paths, a
    leaf without the layer axis, leaves that disagree on the number of layers or members.
    Name the stacks by their ``/``-joined paths and give the axis that holds the layers.

    Attributes: ``problem``, ``fix``.
    """

    def __init__(self, problem: str, fix: str = ""):
        self.problem, self.fix = problem, fix
        super().__init__(problem + (f"; {fix}" if fix else ""))


class TensorMismatchError(ComposedLiftsError, ValueError):
    """A state-dict tensor whose shape or dtype does not fit the param its key maps to: the
    file is from another model, or the key map lacks a Reshape or Cast.

    Attributes: ``key``, ``params``, ``seen``, ``expected``.
    """

    def __init__(self, key: str, params: str, seen: str, expected: str):
        self.key, self.params, self.seen, self.expected = key, params, seen, expected
        super().__init__(
            f"key {key!r} holds {seen} but param {params} needs {expected} there; is the file "
            f"from another model, or does the key map need a Reshape/Cast?"
        )


class CheckpointArgumentError(ComposedLiftsError, TypeError):
    """An argument of ``save`` / ``load`` of the wrong type (``stacks=[3]``, ``keymap="x"``).

    Attributes: ``argument``, ``expected``, ``seen``.
    """

    def __init__(self, argument: str, expected: str, seen: str):
        self.argument, self.expected, self.seen = argument, expected, seen
        super().__init__(f"{argument} must be {expected}, got {seen}")


class MissingKeyError(ComposedLiftsError, KeyError):
    """A state dict or file lacks a key that the key map needs for a param."""

    def __init__(self, key: str, param: str, count: int):
        self.key, self.param, self.count = key, param, count
        more = f" ({count - 1} more missing)" if count > 1 else ""
        super().__init__(
            f"key {key!r}, needed for param {param}, is not in the source{more}; is the file "
            f"from another model, or does the key map name it differently?"
        )

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class MembersDifferError(ComposedLiftsError, ValueError):
    """An ensemble collapsed to one shared stack whose members are not all identical.

    ``ensemble_to_shared`` only drops the ensemble axis when nothing is lost; keep the
    ensemble, or pick one member with ``jax.tree.map(lambda a: a[b], tree)``.
    """

    def __init__(self, path: str, member: int):
        self.path, self.member = path, member
        super().__init__(
            f"ensemble member {member} differs from member 0 at leaf {path!r}; collapsing "
            f"would lose it: keep the ensemble, or pick one member explicitly"
        )


class CheckpointWriteError(ComposedLiftsError, OSError):
    """A checkpoint cannot be written where asked (no such folder, a folder in the way,
    no permission). Nothing on disk changed: write elsewhere or fix the path."""

    def __init__(self, path: str, why: str):
        self.path, self.why = path, why
        super().__init__(f"cannot write checkpoint {path!r}: {why}")

    def __str__(self) -> str:
        return str(self.args[0])


class CheckpointFormatError(ComposedLiftsError, ValueError):
    """A checkpoint file that is missing, truncated, corrupted in its header, or of another
    format. Nothing was loaded: check the path, or save the checkpoint again.

    >>> from composed_lifts.checkpoint import load
    >>> load("README.md")
    Traceback (most recent call last):
    ...
    composed_lifts._errors.CheckpointFormatError: checkpoint 'README.md' is not a safetensors file...

    Attributes: ``problem``.
    """

    def __init__(self, problem: str):
        self.problem = problem
        super().__init__(problem)


class ChecksumMismatchError(ComposedLiftsError, ValueError):
    """A tensor's bytes do not match the checksum recorded when it was saved: the file was
    corrupted on disk or in transit. Nothing was loaded; restore the file from a copy."""

    def __init__(self, path: str, key: str, want: str, got: str):
        self.path, self.key, self.want, self.got = path, key, want, got
        super().__init__(
            f"checkpoint {path!r}: tensor {key!r} has xxh3-64 checksum {got} but {want} was "
            f"recorded when it was saved; the file is corrupted, restore it from a copy"
        )


class CheckpointMismatchError(ComposedLiftsError, ValueError):
    """A checkpoint whose params do not fit the target: another shape, dtype, number of
    layers, or tree. Nothing was loaded into the target; load into the model the
    checkpoint was saved from, or convert it first."""

    def __init__(self, param: str, on_disk: str, target: str, fix: str = ""):
        self.param, self.on_disk, self.target, self.fix = param, on_disk, target, fix
        super().__init__(
            f"param {param!r} is {on_disk} in the checkpoint but the target needs {target}"
            + (f"; {fix}" if fix else "")
        )


# ---------------------------------------------------------------- models (Hugging Face interop)


class UnsupportedConfigError(ComposedLiftsError, ValueError):
    """A Hugging Face ``config.json`` asks for something ``composed_lifts.models`` does not implement.

    The model is refused rather than loaded half right: e.g. a Llama config with
    ``"rope_parameters": {"rope_type": "llama3", ...}`` or ``"attention_bias": true``.
    Run such a model with ``transformers`` itself.

    >>> from composed_lifts.models import config_from_hf
    >>> config_from_hf({"model_type": "llama", "attention_bias": True})
    Traceback (most recent call last):
    ...
    composed_lifts._errors.UnsupportedConfigError: config.json: attention_bias = True is not supported...
    """

    def __init__(self, field: str, seen, supported: str):
        self.field = field
        super().__init__(
            f"config.json: {field} = {seen!r} is not supported (supported: {supported}); "
            f"composed_lifts.models refuses the model rather than load it half right: run it "
            f"with transformers, or use a config without this setting"
        )
