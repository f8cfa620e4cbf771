"""The exception classes composed_lifts raises, one per failure mode, sectioned by domain.

Each class subclasses the builtin a user would catch (``ValueError`` or
``TypeError``) and :class:`ComposedLiftsError`, so callers can catch either.
Each owns its message, as ``flax/errors.py`` does: it is constructed from
structured arguments (the argument or leaf, what was seen, what was expected,
the fix), keeps them as attributes, and its docstring says the mistake and
its fix. A failure raises the same class wherever it is found. A class with several
forms takes a ``kind`` (a key of its ``MESSAGES``) and that form's facts. The command
line's own errors, which name its flags, live in ``composed_lifts.cli``.
"""

from __future__ import annotations

__all__ = [
    "AperiodicLayersError",
    "ArgumentRangeError",
    "ArgumentTypeError",
    "BatchSizeError",
    "BlockCallError",
    "BlockOutputError",
    "CarryChangedError",
    "CheckpointFormatError",
    "CheckpointMismatchError",
    "ChecksumMismatchError",
    "ComposedLiftsError",
    "ConfigValueError",
    "ConfusedSplitError",
    "DeviceCountError",
    "EnsembleSizeError",
    "InputDtypeError",
    "InputFileError",
    "InputShapeError",
    "KeyMapError",
    "KindOutputsError",
    "LayerInputsError",
    "LayoutMismatchError",
    "LayoutProbeError",
    "MembersDifferError",
    "MeshAxisError",
    "MissingBatchAxisError",
    "MissingKeyError",
    "MissingRngError",
    "ModelTooLargeError",
    "NonFiniteInputError",
    "NonFiniteLossError",
    "OutputFileError",
    "OutputWriteError",
    "PatternKindsError",
    "ReadOnlyFileError",
    "SeedRangeError",
    "ShardingRuleError",
    "SharedCollectionError",
    "StackLayoutError",
    "TokenRangeError",
    "TrainStateMismatchError",
    "UnevenBatchError",
    "UnliftedVariablesError",
    "UnsplitRngError",
    "UnsupportedConfigError",
    "WidthMismatchError",
]


class ComposedLiftsError(Exception):
    """Base class of every error raised by composed_lifts on bad input."""


def _fill(
    error: Exception,
    templates: dict[str, str],
    kind: str,
    facts: dict[str, object],
    shown: dict[str, object] | None = None,
) -> str:
    """The message of ``error``'s form ``kind``, filled from ``facts`` (and ``shown``, the
    facts written out for the message); keeps the facts as attributes."""
    if kind not in templates:
        raise TypeError(
            f"{type(error).__name__} has no kind {kind!r}; its kinds are {sorted(templates)}"
        )
    error.kind, error.facts = kind, dict(facts)  # type: ignore[attr-defined]
    for name, value in facts.items():
        setattr(error, name, value)
    return templates[kind].format(**facts, **(shown or {}))


# --- arguments and inputs ---------------------------------------------------------------------


class ArgumentTypeError(ComposedLiftsError, TypeError):
    """An argument has the wrong Python type (``num_layers=True``, ``options={...}``).

    Pass a value of the type the message names; the fix shows one.

    >>> from composed_lifts import composed_lifts_forward
    >>> composed_lifts_forward(0, [[1.0]], num_layers=True, features=1)
    Traceback (most recent call last):
    ...
    composed_lifts.errors.ArgumentTypeError: num_layers must be an integer (int or numpy integer), got bool True...

    Attributes: ``argument`` (its name), ``expected``, ``seen``, ``fix``.
    """

    def __init__(self, argument: str, expected: str, seen: str, fix: str = ""):
        self.argument, self.expected, self.seen, self.fix = argument, expected, seen, fix
        super().__init__(f"{argument} must be {expected}, got {seen}" + (f"; {fix}" if fix else ""))


class ArgumentRangeError(ComposedLiftsError, ValueError):
    """An argument is of the right type but outside its allowed values (``num_layers=-1``).

    Attributes: ``argument`` (its name), ``expected`` (the range, e.g. ``>= 1``),
    ``seen``, ``fix``.
    """

    def __init__(self, argument: str, expected: str, seen: object, fix: str = ""):
        self.argument, self.expected, self.seen, self.fix = argument, expected, seen, fix
        super().__init__(f"{argument} must be {expected}, got {seen}" + (f"; {fix}" if fix else ""))


class SeedRangeError(ComposedLiftsError, ValueError):
    """A seed that a 32-bit PRNG key cannot hold.

    ``jax.random.PRNGKey(2**32)`` silently gives the same key as seed 0, and
    ``PRNGKey(-1)`` the same as ``PRNGKey(2**32 - 1)``; we refuse such seeds so
    that two different seeds never silently give the same answer. Reduce the
    seed first (``seed % 2**32``).
    """

    def __init__(self, argument: str, seed: int):
        self.argument, self.seed = argument, seed
        top = 2**32 - 1
        super().__init__(
            f"{argument} must be in [0, 2**32 - 1] = [0, {top}] so that a 32-bit PRNG key "
            f"holds it, got {seed}; jax.random.PRNGKey would silently wrap it "
            f"(PRNGKey(2**32) == PRNGKey(0), PRNGKey(-1) == PRNGKey(2**32 - 1)); "
            f"reduce it first, e.g. {argument} % 2**32"
        )


class InputShapeError(ComposedLiftsError, ValueError):
    """An input array of the wrong rank, or ragged: ``x_batch`` is not a rectangular 2-D array
    ``(batch, features)``, token ids are not ``(batch, length)``.

    Attributes: ``argument``, ``seen`` (the rank and shape, or why no array could be
    made), ``fix``, ``expected`` (the shape wanted).
    """

    def __init__(
        self,
        argument: str,
        seen: str,
        fix: str = "",
        expected: str = "a rectangular 2-D array (batch, features)",
    ):
        self.argument, self.seen, self.fix, self.expected = argument, seen, fix, expected
        super().__init__(f"{argument} must be {expected}, got {seen}" + (f"; {fix}" if fix else ""))


class InputDtypeError(ComposedLiftsError, TypeError):
    """``x_batch`` holds booleans, complex numbers, strings or objects instead of real numbers.

    Cast it to a real dtype first (the message says how for the dtype seen).
    """

    def __init__(self, argument: str, dtype: object):
        self.argument, self.dtype = argument, dtype
        kind = getattr(dtype, "kind", "")
        if kind == "b":
            text = f", got dtype bool; cast it first, e.g. np.asarray({argument}, np.float32)"
        elif kind == "c":
            text = (
                f", got complex dtype {dtype}; pass the real part ({argument}.real) or the "
                f"magnitude (abs({argument}))"
            )
        else:
            text = (
                f" (an integer or float dtype), got dtype {dtype}; convert strings or objects to "
                f"numbers first"
            )
        super().__init__(f"{argument} must hold real numbers{text}")


class NonFiniteInputError(ComposedLiftsError, ValueError):
    """``x_batch`` holds NaN or infinity (pass ``check_finite=False`` to skip the check).

    Attributes: ``argument``, ``count``, ``index`` (the first), ``value``, ``fix``.
    """

    def __init__(
        self,
        argument: str,
        count: int,
        index: tuple[int, ...],
        value: float,
        fix: str = "clean the input or pass check_finite=False",
    ):
        self.argument, self.count, self.index, self.value = argument, count, index, value
        self.fix = fix
        super().__init__(
            f"{argument} must be finite, found {count} NaN or infinite value(s) as float32, "
            f"first at index {index} ({value}); values beyond float32's range "
            f"(about 3.4e38) become inf; {fix}"
        )


# --- stacks and lifts -------------------------------------------------------------------------


class CarryChangedError(ComposedLiftsError, ValueError):
    """A block returns a carry whose structure, shape or dtype differs from the carry it got.

    A scan needs the carry to keep its type from layer to layer. The usual cause
    is the seed's width pitfall: ``Dense(features)`` on a carry whose width is
    not ``features``. Make the block's output width equal to its input width, cast
    the output back to the carry's dtype, or keep the carry's keys and nesting.

    Attributes:
      kind: ``"structure"``, ``"shape"`` or ``"dtype"``: what changed.
      leaf: the carry leaf (``carry['h']``), or ``carry`` for a structure change.
      before, after: the leaf's type before and after one layer (``float32[6]``),
        or the two tree structures.
    """

    FIXES = {
        "shape": (
            "make the block's output width equal to its input width (for a Dense layer, "
            "features == x.shape[-1]), or project the input to that width before the stack"
        ),
        "dtype": "cast the block's output back to the carry's dtype (y.astype(carry.dtype))",
        "structure": (
            "return the carry with the same keys and nesting, and put other outputs in y"
        ),
    }

    def __init__(self, kind: str, leaf: str, before: str, after: str):
        self.kind, self.leaf, self.before, self.after = kind, leaf, before, after
        if kind == "structure":
            text = (
                f"the block returns a carry with structure {after} but was given {before}; a "
                f"scan needs the carry to keep its structure from layer to layer"
            )
        else:
            text = (
                f"the block changes {leaf} from {before} to {after} across one layer (per "
                f"example); a scan needs the carry to keep its {kind} from layer to layer"
            )
        super().__init__(f"{text}: {self.FIXES[kind]}")


class WidthMismatchError(CarryChangedError):
    """The carry's width differs from ``features``: the scan's carry would change shape.

    The seed's width pitfall, found from the arguments before anything is built: a
    :class:`CarryChangedError` (``kind == "shape"``), so one ``except`` catches it
    wherever it is found.

    Pass ``features`` equal to the input's width, or give the input ``features`` columns.

    >>> import numpy as np
    >>> from composed_lifts import composed_lifts_forward
    >>> composed_lifts_forward(0, np.ones((2, 5)), num_layers=3, features=4)
    Traceback (most recent call last):
    ...
    composed_lifts.errors.WidthMismatchError: x_batch.shape[-1] is 5 but features is 4...
    """

    def __init__(self, argument: str, width: int, width_name: str, expected: int, fix: str = ""):
        self.argument, self.width, self.width_name, self.expected = (
            argument,
            width,
            width_name,
            expected,
        )
        self.kind, self.leaf = "shape", f"{argument}[i]"
        self.before, self.after = f"width {width}", f"width {expected}"
        self.fix = fix or f"pass {width_name}={width} or give {argument} {expected} columns"
        ComposedLiftsError.__init__(
            self,
            f"{argument}.shape[-1] is {width} but {width_name} is {expected}: each layer maps its "
            f"carry to width {expected}, so the carry would change shape between layers; "
            f"{self.fix}",
        )


class BlockOutputError(ComposedLiftsError, TypeError):
    """A block's ``__call__`` returns something other than a ``(carry, y)`` pair.

    End the block with ``return carry, None`` for a carry-only layer.
    """

    def __init__(self, returned: str):
        self.returned = returned
        super().__init__(
            f"the block must return a pair (carry, y) (y may be None), but returned {returned}; "
            f"end its __call__ with `return carry, None` for a carry-only layer"
        )


class BlockCallError(ComposedLiftsError, ValueError):
    """The block fails when called on one example's carry, before any lift is involved.

    The doctor calls the block once, abstractly, as ``block(carry, None)`` on one
    example's carry. A block that fails there fails in every composition; the
    most common cause is the seed's width pitfall in a residual block,
    ``x + Dense(features)(x)`` with ``x.shape[-1] != features``. Make the block
    accept the carry (equal widths), or give the doctor a carry the block takes.
    """

    def __init__(self, block: str, carry: str, cause: str):
        self.block, self.carry, self.cause = block, carry, cause
        super().__init__(
            f"{block} fails when called on one example's carry {carry}: {cause}; the block "
            f"must accept the carry it returns, layer after layer"
        )


class LayerInputsError(ComposedLiftsError, ValueError):
    """Per-layer inputs ``xs`` whose layer axis is not ``num_layers`` long.

    Give one slice per layer (``jnp.stack`` of N arrays), or close over inputs
    that every layer shares instead of passing them as ``xs``.
    """

    def __init__(self, leaf: str, shape: tuple[int, ...], axis: int, num_layers: int):
        self.leaf, self.shape, self.axis, self.num_layers = leaf, tuple(shape), axis, num_layers
        layout = "(B, N, ...)" if axis else "(N, ...)"
        super().__init__(
            f"per-layer input {leaf} has shape {tuple(shape)}, but its layer axis (axis {axis}, "
            f"layout {layout}) must be num_layers={num_layers} long; give one slice per layer "
            f"(e.g. jnp.stack of {num_layers} arrays), or close over inputs that every layer shares"
        )


class BatchSizeError(ComposedLiftsError, ValueError):
    """Leaves of the carry (or per-example inputs) disagree on the batch size (axis 0).

    Give every batched leaf the same leading size.
    """

    def __init__(self, sizes: dict[str, int]):
        self.sizes = dict(sizes)
        seen = ", ".join(f"{name} has {size}" for name, size in sizes.items())
        super().__init__(
            f"the batch axis (axis 0) must have the same size in every batched leaf: {seen}"
        )


class MissingBatchAxisError(ComposedLiftsError, ValueError):
    """A batched stack was given a carry leaf without a batch axis.

    The stack's vmap maps axis 0 of every carry leaf over the examples, so a
    leaf of shape ``(F,)`` makes each example's carry a scalar, and a scalar
    carry cannot be mapped at all. Give the carry a leading batch axis
    (``x[None]`` for one example), or build the stack with
    ``StackOptions(batch=BatchMode.NONE)`` to map one example without a vmap.
    """

    def __init__(self, leaf: str, shape: tuple[int, ...], cause: str | None = None):
        self.leaf, self.shape, self.cause = leaf, tuple(shape), cause
        seen = (
            "is a scalar, which the vmap cannot map"
            if not shape
            else f"has shape {tuple(shape)}, so each example's carry is a scalar"
            + (f" and the block fails on it ({cause})" if cause else "")
        )
        super().__init__(
            f"{leaf} {seen}: the stack is batched and maps axis 0 of every carry leaf over "
            f"the examples; give it a leading batch axis ({leaf.split('[')[0]}[None] for one "
            f"example, e.g. x[None]), or use StackOptions(batch=BatchMode.NONE)"
        )


class MissingRngError(ComposedLiftsError, ValueError):
    """The block asks for an RNG stream (``self.make_rng("dropout")``) that the call does not provide.

    Pass the stream (``model.apply(..., rngs={"dropout": key})``), or make the block
    deterministic.
    """

    def __init__(self, phase: str, provided: list[str], flax_message: str):
        self.phase, self.provided, self.flax_message = phase, list(provided), flax_message
        super().__init__(
            f"the block asks for an RNG stream that this {phase} call does not provide (it "
            f"provides {list(provided)}); Flax says: {flax_message}. Pass the stream to {phase}, "
            f"e.g. model.{phase}(..., rngs={{'dropout': jax.random.PRNGKey(1)}}), or make the "
            f"block deterministic"
        )


class ConfusedSplitError(ComposedLiftsError, ValueError):
    """A lift splits the params RNG but does not give params an axis to hold the split values.

    ``nn.vmap(..., variable_axes={"params": None}, split_rngs={"params": True})``
    initialises a different param per example and then has nowhere to put them:
    JAX fails deep inside the vmap with "vmap has mapped output but out_axes
    is None". On the scan, a broadcast (shared) params collection with a split
    RNG fails with "broadcasted variable has a data dependency on the scan body".
    ``composed_lifts.doctor`` refuses the composition before tracing, and says
    which lift to change.

    >>> from composed_lifts import Block
    >>> from composed_lifts.doctor import Composition, LiftParams, describe
    >>> bad = Composition(num_layers=2, vmap=LiftParams(variable_axis=None, split_rngs=True))
    >>> describe(Block(features=3), bad, carry=(4, 3))
    Traceback (most recent call last):
    ...
    composed_lifts.errors.ConfusedSplitError: the vmap's split_rngs={'params': True} ...

    Attributes:
      lift: ``"scan"`` or ``"vmap"``, the lift whose settings disagree.
      slices: how many different inits the split makes (N or B).
      explanation, fix: the two halves of the message.
    """

    def __init__(self, lift: str, slices: int):
        self.lift, self.slices = lift, slices
        if lift == "vmap":
            self.explanation = (
                "the vmap's split_rngs={'params': True} gives every example its own init key, "
                "but its variable_axes={'params': None} says the params are shared across the "
                f"batch, so {slices} different inits have nowhere to go; JAX would fail inside "
                'the vmap with "vmap has mapped output but out_axes is None" (the params came '
                "out with a batch axis the spec says they do not have)"
            )
            self.fix = (
                "for params shared across the batch set split_rngs={'params': False} on the "
                "vmap; for an ensemble (one stack per example) set variable_axes={'params': 0} "
                "with split_rngs={'params': True} on the vmap"
            )
        else:
            self.explanation = (
                "the scan's split_rngs={'params': True} gives every layer its own init key, but "
                "its variable_axes={'params': None} (variable_broadcast='params') shares one set "
                f"of params across the layers, so {slices} different inits have nowhere to go; "
                'Flax would fail with "broadcasted variable has a data dependency on the scan '
                'body"'
            )
            self.fix = (
                "for one set of params shared by all layers (weight tying) set "
                "split_rngs={'params': False} on the scan; for per-layer params set "
                "variable_axes={'params': 0} on the scan"
            )
        super().__init__(f"{self.explanation}; {self.fix}")


class LayoutProbeError(ComposedLiftsError, ValueError):
    """Re-evaluating a stack with another number of layers or batch size changed its param tree.

    The doctor finds each axis's role by probing (evaluating again with N+1
    layers and B+2 examples); that needs the tree's structure and each leaf's
    rank to stay the same: make the block's params independent of N and B.
    """

    def __init__(self, what: str, seen: str):
        self.what, self.seen = what, seen
        super().__init__(
            f"{what} {seen}; the doctor finds axis roles by re-evaluating with another N and B, "
            f"so a block whose params depend on them cannot be described: make the block's "
            f"params independent of N and B"
        )


class UnsplitRngError(ComposedLiftsError, ValueError):
    """An NNX block keeps an RNG stream that was not split per layer (it keeps the ``rngs`` it got).

    Every layer would draw the same numbers. Keep a stream of its own, as
    ``nnx.Dropout`` does: ``self.dropout = rngs.dropout.fork()``.
    """

    def __init__(self, stream: str, key_shape: tuple[int, ...], splits: tuple[int, ...]):
        self.stream, self.key_shape, self.splits = stream, tuple(key_shape), tuple(splits)
        super().__init__(
            f"the block keeps the RNG stream {stream!r} unsplit (key shape {tuple(key_shape)}, "
            f"expected a leading {tuple(splits)}): every layer would draw the same numbers. "
            f"Keep a stream of its own, as nnx.Dropout does: self.dropout = rngs.dropout.fork() "
            f"(not self.rngs = rngs)"
        )


class SharedCollectionError(ComposedLiftsError, ValueError):
    """The block updates a collection that the stack shares across the batch, per example.

    ``linen_stack`` shares ``batch_stats`` across the batch (one set of running
    statistics for the stack). ``nn.BatchNorm()`` without ``axis_name`` updates
    them from each example alone, so every example computes a different update
    of one shared value, and JAX fails deep inside the vmap. Reduce across the
    batch with ``nn.BatchNorm(axis_name=options.batch_axis_name)``, or keep one
    copy per example: ``StackOptions(collection_axes={"batch_stats": 0})``.
    """

    def __init__(self, collections: list[str], axis_name: str, per_example_fix: bool = True):
        self.collections, self.axis_name = list(collections), axis_name
        self.per_example_fix = per_example_fix
        names = ", ".join(repr(c) for c in collections)
        first = collections[0]
        other = (
            f", or keep one copy per example with StackOptions(collection_axes={{{first!r}: 0}})"
            if per_example_fix
            else " (an NNX stack shares all its layers' state across the batch)"
        )
        super().__init__(
            f"the block updates the collection(s) {names} per example, but the stack shares "
            f"them across the batch (the vmap's variable_axes {{{first!r}: None}}), so the "
            f"examples' updates have nowhere to go; reduce across the batch inside the block "
            f"(nn.BatchNorm(axis_name={axis_name!r}), or jax.lax.pmean(..., {axis_name!r})){other}"
        )


class EnsembleSizeError(ComposedLiftsError, ValueError):
    """An ensemble stack applied to a batch whose size differs from its number of members.

    An ensemble holds one stack per example (params ``(B, N, ...)``), so it maps
    example ``b`` to member ``b``; a batch of another size has no member for
    some example (or a member without an example). Give one example per member,
    or initialise the ensemble with the batch size you will apply it to.
    """

    def __init__(self, members: int, batch: int):
        self.members, self.batch = members, batch
        super().__init__(
            f"this ensemble has {members} members (one stack per example), but the carry has "
            f"batch {batch}; give one example per member, or initialise the ensemble with a "
            f"batch of {batch}"
        )


class UnliftedVariablesError(ComposedLiftsError, ValueError):
    """The lifts as written cannot carry a block's variables, so Flax fails on the recipe:
    a param made with ``nn.with_partitioning`` given a new axis by a lift without
    ``metadata_params``, or a collection besides ``params`` (``BatchNorm``'s
    ``batch_stats``) that a lift does not name. ``doctor.describe`` raises it for such a
    ``Composition``; ``doctor.check`` reports each as a finding with the fix.

    Attributes: ``block``, ``partitioned`` (a param path, or None), ``unnamed_in`` (the
    lifts without a partition name), ``collections`` (the collections no lift names).
    """

    def __init__(
        self,
        block: str,
        partitioned: str | None,
        unnamed_in: tuple[str, ...],
        collections: tuple[str, ...],
    ):
        self.block, self.partitioned = block, partitioned
        self.unnamed_in, self.collections = tuple(unnamed_in), tuple(collections)
        problems = []
        if partitioned is not None:
            problems.append(
                f"{partitioned} has partition names but {' and '.join(self.unnamed_in)} "
                f"give(s) it a new axis without metadata_params"
            )
        if self.collections:
            names = ", ".join(repr(c) for c in self.collections)
            problems.append(f"the lifts do not name the collection(s) {names}")
        super().__init__(
            f"the lifts as written cannot carry the variables of {block}: "
            + "; ".join(problems)
            + ", so Flax fails on this recipe; doctor.check(...) gives the fix for each, or "
            "build the stack with linen_stack (Composition(spelling=Spelling.COMPLETE))"
        )


# --- stacks of a repeating pattern ------------------------------------------------------------


class AperiodicLayersError(ComposedLiftsError, ValueError):
    """Per-layer kinds (``config.layer_types``) that do not repeat with the period asked for.

    ``LayerPattern.from_layer_types(types, period=k)`` needs ``types[i] ==
    types[i % k]`` for every layer; leave ``period`` out to find the shortest
    period the kinds repeat with.

    >>> from composed_lifts import LayerPattern
    >>> LayerPattern.from_layer_types(["sliding", "full", "full"], period=2)
    Traceback (most recent call last):
    ...
    composed_lifts.errors.AperiodicLayersError: layer_types[2] is 'full' but a period of 2 repeats...

    Attributes: ``index`` (the first layer that breaks the period), ``seen``,
    ``expected`` (the kind the period gives it), ``period``.
    """

    def __init__(self, index: int, seen: str, expected: str, period: int):
        self.index, self.seen, self.expected, self.period = index, seen, expected, period
        super().__init__(
            f"layer_types[{index}] is {seen!r} but a period of {period} repeats "
            f"layer_types[{index % period}] = {expected!r} there; pass the period the kinds "
            f"repeat with, or leave period out to find the shortest one"
        )


class PatternKindsError(ComposedLiftsError, ValueError):
    """The blocks given to a pattern stack do not match the pattern's kinds one for one.

    Every kind label of ``pattern.period`` needs a block, and every block a kind:
    ``linen_pattern_stack({"sliding": Local(), "full": Global()}, pattern, options)``
    for ``pattern.period == ("sliding", "sliding", "full")``.

    Attributes: ``argument``, ``missing`` (kinds without a block), ``unexpected``
    (blocks for no kind), ``kinds`` (the pattern's kinds).
    """

    def __init__(self, argument: str, missing: list[str], unexpected: list[str], kinds: list[str]):
        self.argument, self.missing, self.unexpected, self.kinds = (
            argument,
            missing,
            unexpected,
            kinds,
        )
        parts = []
        if missing:
            parts.append(f"has no block for the kinds {missing}")
        if unexpected:
            parts.append(f"has blocks for {unexpected}, which the pattern does not use")
        super().__init__(
            f"{argument} {' and '.join(parts)}; the pattern's kinds are {kinds}: give one "
            f"block per kind, keyed by its label"
        )


class KindOutputsError(ComposedLiftsError, ValueError):
    """Two kinds of a pattern stack return per-layer outputs ``y`` of another structure,
    shape or dtype.

    The stack returns every layer's ``y`` stacked on the layer axis ``(B, N, ...)``,
    so every kind must return the same kind of ``y`` (all ``None``, or arrays of one
    shape and dtype); return what differs through the carry instead.

    Attributes: ``kind``, ``seen``, ``first_kind``, ``expected``.
    """

    def __init__(self, kind: str, seen: str, first_kind: str, expected: str):
        self.kind, self.seen, self.first_kind, self.expected = kind, seen, first_kind, expected
        super().__init__(
            f"kind {kind!r} returns y = {seen} but kind {first_kind!r} returns {expected}; "
            f"the stack stacks every layer's y to (B, N, ...), so every kind must return the "
            f"same structure, shapes and dtypes (or None)"
        )


# --- layouts and conversion -------------------------------------------------------------------


class StackLayoutError(ComposedLiftsError, ValueError):
    """A tree whose stacks do not have the layout named: a stack path not in the tree or holding
    no arrays, a leaf without the layer (or ensemble) axis, leaves that disagree on the number of
    layers or members, stacks on different layer axes. Name the stacks by their ``/``-joined
    paths and give the axis that holds the layers.

    >>> import numpy as np
    >>> from composed_lifts import unstack_params
    >>> unstack_params({"w": np.ones((2, 3)), "b": np.ones(3)})
    Traceback (most recent call last):
    ...
    composed_lifts.errors.StackLayoutError: the leaves of the tree given to unstack_params disagree on the number of layers on axis 0: ['b'] has 3, ['w'] has 2...

    Attributes: ``kind`` (one of ``MESSAGES``) and its facts (``facts``, also one attribute
    each): ``not_found`` (``stack``, ``part``), ``empty`` (``where``), ``no_layer_axis``
    (``leaf``, ``shape``, ``axis``, ``argument``: what names the axis), ``no_ensemble_axis``
    (``leaf``, ``shape``), ``counts_differ`` (``where``, ``what``, ``counts``: leaf -> number),
    ``axes_differ`` (``axes``).
    """

    MESSAGES = {
        "not_found": (
            "stack path {stack!r} is not in the tree (it has no key {part!r}); name a stack by "
            "the '/'-joined dict keys of its subtree, e.g. 'params/decoder'"
        ),
        "empty": (
            "{where} holds no arrays; a stack is a subtree that holds the layers' arrays, named "
            "by its '/'-joined dict keys, e.g. 'params/decoder'"
        ),
        "no_layer_axis": (
            "leaf {leaf!r} has shape {shape}, which has no layer axis {axis}; pass {argument} "
            "naming the axis that holds the layers, or leave leaves without it out of the stacks"
        ),
        "no_ensemble_axis": (
            "leaf {leaf!r} has shape {shape}, with no ensemble axis 0; name only ensemble stacks"
        ),
        "counts_differ": (
            "the leaves of {where} disagree on the number of {what}: {counts_text}; give every leaf "
            "of a stack the same number"
        ),
        "field_differs": (
            "stack {stack!r} has {field}={seen!r} in the tree, not {said!r}; leave {field} out of "
            "the Stack to read it from the tree"
        ),
        "form_differs": (
            "stack {stack!r} is {seen} in the tree, not {said}; measure it with "
            "find_stack(tree, stack) first"
        ),
        "layers_differ": (
            "the layers of stack {stack!r} differ in structure: {layer} {differences}; give every "
            "layer of a stack the same leaves, shapes and dtypes, or save the layers that differ "
            "as separate subtrees outside the stack"
        ),
        "axes_differ": (
            "the stacks hold their layers on different axes {axes}; save them to separate files, "
            "or move them to one axis first (layer_axis_from)"
        ),
    }

    def __init__(self, kind: str, **facts: object):
        counts = facts.get("counts")
        text = (
            ", ".join(f"{k} has {n}" for k, n in counts.items()) if isinstance(counts, dict) else ""
        )
        super().__init__(_fill(self, self.MESSAGES, kind, facts, {"counts_text": text}))


class LayoutMismatchError(ComposedLiftsError, ValueError):
    """A param tree that differs from the tree it must match (the tree a stack makes, the NNX
    stack's params, the model of a config, layer 0 of the layers being stacked) in its keys,
    its structure or a leaf's shape or dtype.

    Convert the params to the layout expected (``stack_params`` / ``unstack_params``,
    ``linen_to_nnx``), or build them with the same stack.

    Attributes: ``kind``, ``where`` (the tree or leaf), ``reference`` (what it must match),
    ``fix``, and the kind's facts (``facts``, also one attribute each): ``keys`` (``missing``,
    ``unexpected``), ``structure`` and ``leaf`` (``seen``, ``expected``).
    """

    MESSAGES = {
        "keys": "{where} differ from {reference}: missing {missing}, unexpected {unexpected}",
        "structure": "{where} has tree structure {seen}, but {reference} has {expected}",
        "leaf": "{where} is {seen}, but {reference} has {expected}",
    }

    def __init__(self, kind: str, where: str, reference: str, fix: str = "", **facts: object):
        self.where, self.reference, self.fix = where, reference, fix
        text = _fill(self, self.MESSAGES, kind, {"where": where, "reference": reference, **facts})
        super().__init__(text + (f"; {fix}" if fix else ""))


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


# --- checkpoints, key maps and files ----------------------------------------------------------


class InputFileError(ComposedLiftsError, ValueError):
    """An input file is missing, unreadable, corrupted, or of an unknown format.

    Checked before its data is read where possible (the suffix, a regular file, an
    ``.npy`` header against the file's size). Give a regular ``.npy`` file, or a
    ``.json`` list of lists of numbers (``-`` for JSON on standard input).

    Attributes: ``where`` (the flag and path, ``--input 'x.npy'``), ``problem`` (what is
    wrong with it), ``fix``.
    """

    def __init__(self, where: str, problem: str, fix: str = ""):
        self.where, self.problem, self.fix = where, problem, fix
        super().__init__(f"{where} {problem}" + (f"; {fix}" if fix else ""))


class OutputFileError(ComposedLiftsError, OSError):
    """An output location that cannot be written: its folder is missing or not writable, it is a
    folder or a device, its name is too long, or its suffix names no format we write.

    Checked before any work starts; pick another path, or create the folder.

    Attributes: ``where`` (the flag or argument and the path, ``--output 'out.npy'``),
    ``kind`` (one of ``MESSAGES``) and its facts (``facts``, also one attribute each).
    """

    MESSAGES = {
        "name_too_long": (
            "has a file name {length} bytes long, more than the {limit} this file system "
            "allows; choose a shorter name"
        ),
        "no_folder": "is in folder {folder!r}, which does not exist; create it first",
        "folder_fails": "is in folder {folder!r}, which fails: {reason}",
        "not_a_folder": "is in {folder!r}, which is {found}, not a folder",
        "folder_read_only": "is in folder {folder!r}, which is not writable; choose another folder",
        "unchecked": "cannot be checked: {reason}",
        "not_a_file": "is {found}; give the path of a file to write",
        "no_temporary": (
            "cannot be written: cannot write a temporary file in folder {folder!r}: {reason}"
        ),
        "suffix": "has suffix {suffix!r}; name a file ending in {suffixes}",
        "sharded": (
            "holds a sharded checkpoint (model.safetensors.index.json) that a single "
            "model.safetensors would not replace; write to an empty folder"
        ),
        "is_input": "is the file being read ({source}); write elsewhere, then rename",
        "exists_not_folder": "exists and is not a folder; write elsewhere",
        "foreign_folder": (
            "is a folder that holds other files, not {what}; write to a new or empty folder"
        ),
        "not_ours": (
            "exists and is {what}; it is not replaced; choose another path, or remove it first"
        ),
        "write_failed": "could not be written: {reason} ({kept}); {fix}",
    }

    def __init__(self, where: str, kind: str, **facts: object):
        self.where = where
        super().__init__(f"{where} {_fill(self, self.MESSAGES, kind, facts)}")


class OutputWriteError(OutputFileError):
    """Writing an output failed part way: the disk is full, a file-size limit (``ulimit -f``)
    or a quota was reached, or the device failed. Nothing was replaced: what was at the path
    before (if anything) is whole and unchanged, and the partial write was removed.

    Free space or raise the limit, or write elsewhere.

    Attributes: ``where`` (``checkpoint 'm.safetensors'``), ``kind`` (``write_failed``),
    ``reason`` (the system's words), ``kept`` (what stays at the path), ``fix``.
    """

    def __init__(
        self,
        where: str,
        reason: str,
        kept: str,
        fix: str = "free space or raise the limit, or write elsewhere",
    ):
        super().__init__(where, "write_failed", reason=reason, kept=kept, fix=fix)


class ReadOnlyFileError(ComposedLiftsError, PermissionError):
    """The output file exists and is read-only: we refuse to replace it.

    Make it writable (``chmod u+w FILE``) or write elsewhere.

    Attributes: ``where`` (the flag and path), ``mode`` (as ``ls -l`` shows it).
    """

    def __init__(self, where: str, mode: str):
        self.where, self.mode = where, mode
        super().__init__(
            f"{where} is read-only (mode {mode}); we do not replace it: make it writable "
            f"(chmod u+w) or write elsewhere"
        )


class CheckpointFormatError(InputFileError):
    """A checkpoint file that is missing, truncated, corrupted in its header, or of another
    format: an :class:`InputFileError`, so one ``except`` catches every unreadable input.
    Nothing was loaded: check the path, or save the checkpoint again.

    >>> from composed_lifts.checkpoint import load
    >>> load("README.md")
    Traceback (most recent call last):
    ...
    composed_lifts.errors.CheckpointFormatError: checkpoint 'README.md' is not a safetensors file...

    Attributes: ``where`` (``checkpoint 'm.safetensors'``), ``problem``, ``fix``.
    """


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
    """A tensor on disk that does not fit the param it loads into: another shape, dtype, number
    of layers, or tree. The file is from another model, or the key map lacks a Reshape or Cast.
    Nothing was loaded into the target; load into the model the checkpoint was saved from, or
    convert it first.

    Attributes: ``param`` (the target's leaf), ``on_disk`` and ``target`` (what each holds),
    ``fix``, ``key`` (the file's key, when it differs from the param's path).
    """

    def __init__(
        self,
        param: str,
        on_disk: str,
        target: str,
        fix: str = "is the file from another model, or does the key map need a Reshape/Cast?",
        key: str = "",
    ):
        self.param, self.on_disk, self.target, self.fix, self.key = param, on_disk, target, fix, key
        held = f" (key {key!r})" if key else ""
        super().__init__(
            f"param {param!r}{held} is {on_disk} in the checkpoint but the target needs {target}"
            + (f"; {fix}" if fix else "")
        )


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


class KeyMapError(ComposedLiftsError, ValueError):
    """A key map that does not fit the tree: a leaf no rule matches, two leaves on one key,
    a fused part missing, a Reshape that cannot hold a layer, keys in a file that no rule
    reads, or a key map the file form cannot use. Add or fix the rule the message names.

    >>> import numpy as np
    >>> from composed_lifts import KeyMap, Rule, to_state_dict
    >>> to_state_dict({"a": np.ones(2), "b": np.ones(2)}, KeyMap((Rule("a", "x"),)))
    Traceback (most recent call last):
    ...
    composed_lifts.errors.KeyMapError: no rule of the key map matches leaf 'b'; ...

    Attributes: ``kind`` (one of ``MESSAGES``) and its facts (``facts``, also one attribute
    each).
    """

    MESSAGES = {
        "unmatched": (
            "no rule of the key map matches leaf {leaf!r}; add a rule for it (a last "
            "Rule('{{*path}}', '{{path}}') maps every other leaf to its own path)"
        ),
        "collision": (
            "leaves {first!r} and {second!r} both map to key {key!r}; give one of them its own rule"
        ),
        "fused_missing": (
            "leaf {leaf!r} is part of fused key {key!r}, whose part {part!r} is not in the tree; "
            "fuse only leaves the tree has"
        ),
        "fused_shapes": (
            "fused key {key!r}: part {part!r} becomes {shape} but part {first!r} becomes "
            "{first_shape}; fuse parts that agree on every axis but the join axis {axis}"
        ),
        "reshape": (
            "Reshape({to}) cannot hold a layer of shape {shape} ({size} values); fix the key "
            "map's Reshape"
        ),
        "template": (
            "key template {template!r} uses {{{name}}}, which its path pattern does not capture; "
            "name it in the path (e.g. '{{*{name}}}/kernel') or write it out"
        ),
        "unread": (
            "the source holds {count} key(s) no rule reads, first {first!r}; add a rule for them "
            "or KeyMap(ignore=({first!r},))"
        ),
        "per_layer": (
            "{keymap} names one tensor per layer, so the layers cannot be saved stacked; "
            "pass {unrolled}"
        ),
        "orbax": (
            "an Orbax checkpoint keeps the tree's own paths, so it cannot use {keymap}; save "
            "with the native key map (the default)"
        ),
    }

    def __init__(self, kind: str, **facts: object):
        super().__init__(_fill(self, self.MESSAGES, kind, facts))


# --- sharding ---------------------------------------------------------------------------------


class DeviceCountError(ComposedLiftsError, ValueError):
    """A mesh asks for more devices than JAX has.

    On CPU, XLA makes one device unless told otherwise, and only when told before
    JAX starts: ``XLA_FLAGS=--xla_force_host_platform_device_count=8 python ...``.
    """

    def __init__(self, wanted: int, available: int, backend: str):
        self.wanted, self.available, self.backend = wanted, available, backend
        hint = (
            "; on CPU, set XLA_FLAGS=--xla_force_host_platform_device_count="
            f"{wanted} in the environment before JAX starts (before `import jax`)"
            if backend == "cpu"
            else ""
        )
        super().__init__(
            f"the mesh needs {wanted} devices but JAX sees {available} ({backend}){hint}"
        )


class ShardingRuleError(ComposedLiftsError, ValueError):
    """A ``ShardingRules.param_axes`` entry names a different number of axes than the param has.

    ``param_axes`` names the trailing (per-layer) axes only; the axes the lifts
    add in front (layers, and batch for an ensemble) are named by the stack.
    """

    def __init__(self, path: str, shape: tuple, pattern: str, axes: tuple, lead: int):
        self.path, self.shape, self.pattern, self.axes = path, tuple(shape), pattern, tuple(axes)
        self.lead = lead
        super().__init__(
            f"ShardingRules.param_axes entry {pattern!r} names {len(axes)} axes {axes} for "
            f"param {path} of shape {tuple(shape)}, whose per-layer part (after the {lead} "
            f"axes the lifts add) has {len(shape) - lead} axes; name exactly those"
        )


class MeshAxisError(ComposedLiftsError, ValueError):
    """The sharding rules name mesh axes that the mesh does not have.

    Add the axes to the mesh (``device_mesh({"data": 4, "model": 2})``) or map the
    logical names to axes the mesh has (``None`` replicates).
    """

    def __init__(self, missing: list[str], mesh_shape: dict[str, int]):
        self.missing, self.mesh_shape = list(missing), dict(mesh_shape)
        super().__init__(
            f"the rules name mesh axes {self.missing} that the mesh {self.mesh_shape} does not "
            "have; add them to the mesh or change the rules"
        )


class UnevenBatchError(ComposedLiftsError, ValueError):
    """A batch cannot be split evenly over the mesh axis the rules put the examples on.

    Use a batch size that is a multiple of that axis's size (pad the batch), or a
    smaller mesh axis.
    """

    def __init__(self, batch: int, over: str, size: int):
        self.batch, self.over, self.size = batch, over, size
        super().__init__(
            f"a batch of {batch} examples cannot be split evenly over {over} of size {size}; "
            f"use a multiple of {size}"
        )


# --- models -----------------------------------------------------------------------------------


class UnsupportedConfigError(ComposedLiftsError, ValueError):
    """A Hugging Face ``config.json`` asks for something ``composed_lifts.models`` does not implement.

    The model is refused rather than loaded half right: e.g. a Llama config with
    ``"rope_parameters": {"rope_type": "llama3", ...}`` or ``"attention_bias": true``.
    Run such a model with ``transformers`` itself.

    >>> from composed_lifts.models import config_from_hf
    >>> config_from_hf({"model_type": "llama", "attention_bias": True})
    Traceback (most recent call last):
    ...
    composed_lifts.errors.UnsupportedConfigError: config.json: attention_bias = True is not supported...

    Attributes: ``field``, ``seen``, ``supported``.
    """

    def __init__(self, field: str, seen: object, supported: str):
        self.field, self.seen, self.supported = field, seen, supported
        super().__init__(
            f"config.json: {field} = {seen!r} is not supported (supported: {supported}); "
            f"composed_lifts.models refuses the model rather than load it half right: run it "
            f"with transformers, or use a config without this setting"
        )


class ConfigValueError(ComposedLiftsError, ValueError):
    """A Hugging Face ``config.json`` field holds a value of the wrong type or out of range.

    Checked field by field before any model is built: ``hidden_size: 32.5`` is not
    taken as 32, ``num_attention_heads: null`` or ``vocab_size: 0`` are refused by name.
    Fix the value in ``config.json``.

    >>> from composed_lifts.models import config_from_hf
    >>> config_from_hf({"model_type": "gpt2", "vocab_size": 32.5})
    Traceback (most recent call last):
    ...
    composed_lifts.errors.ConfigValueError: config.json: vocab_size = 32.5 is not a valid value...

    Attributes: ``field``, ``seen`` (the value as shown, or ``(missing)``), ``expected``.
    """

    def __init__(self, field: str, seen: str, expected: str):
        self.field, self.seen, self.expected = field, seen, expected
        super().__init__(
            f"config.json: {field} = {seen} is not a valid value (expected {expected}); "
            f"fix the field in config.json"
        )


class ModelTooLargeError(ComposedLiftsError, MemoryError):
    """A model's params, estimated from its config, would not fit in the memory available.

    Refused before any tensor is allocated or read (``num_hidden_layers: 10**9``
    would otherwise allocate until the machine runs out). Pass ``force=True``
    (``--force`` on the command line) to try anyway.

    Attributes: ``what``, ``need`` and ``available`` (bytes), ``override`` (how to force it;
    also ``flags``).
    """

    def __init__(self, what: str, need: int, available: int, override: str = "force=True"):
        self.what, self.need, self.available = what, need, available
        self.flags = self.override = override
        super().__init__(
            f"{what} needs about {need / 1e9:.3g} GB of memory for its params but "
            f"{available / 1e9:.3g} GB is available; check the config's sizes, or pass "
            f"{override} to try anyway"
        )


# --- fine-tuning (composed_lifts.train) -------------------------------------------------------


class TokenRangeError(ComposedLiftsError, ValueError):
    """Training data holds a token id outside the model's vocabulary ``[0, vocab_size)``.

    An id at or above the vocabulary would index past the embedding (JAX clamps such
    gathers silently), so the data is refused before training. Tokenize with the model's
    own tokenizer, or give the model a larger vocabulary.

    Attributes: ``where`` (the data and document), ``seen`` (the first bad id), ``vocab_size``.
    """

    def __init__(self, where: str, seen: int, vocab_size: int):
        self.where, self.seen, self.vocab_size = where, seen, vocab_size
        super().__init__(
            f"{where} holds token id {seen}, outside the model's vocabulary [0, {vocab_size}); "
            f"tokenize with the model's own tokenizer"
        )


class NonFiniteLossError(ComposedLiftsError, ValueError):
    """The loss of a training step is NaN or infinite: training stopped at that step.

    The state of that step was not saved; the last checkpoint written before it is
    whole. Lower the learning rate (or enable clipping) and resume from it.

    Attributes: ``step`` (1-based), ``loss``, ``checkpoint`` (the last good one, or None).
    """

    def __init__(self, step: int, loss: float, checkpoint: str | None):
        self.step, self.loss, self.checkpoint = step, loss, checkpoint
        kept = (
            f"the last good checkpoint is {checkpoint!r}"
            if checkpoint
            else "no checkpoint was saved"
        )
        super().__init__(
            f"the loss of step {step} is {loss}; training stopped and this step was not saved; "
            f"{kept}; lower the learning rate or enable gradient clipping, then resume"
        )


class TrainStateMismatchError(ComposedLiftsError, ValueError):
    """A run resumed with settings that differ from the ones its checkpoint was made with
    (another model, LoRA rank, batch or schedule): the result would not be the same run.
    Resume with the original settings, or start afresh in another output folder.

    Attributes: ``setting``, ``saved``, ``given``.
    """

    def __init__(self, setting: str, saved: object, given: object):
        self.setting, self.saved, self.given = setting, saved, given
        super().__init__(
            f"--resume: {setting} was {saved!r} when the run was saved, now {given!r}; resume "
            f"with the original settings, or start afresh in another --out folder"
        )
