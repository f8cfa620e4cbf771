"""Every class in composed_lifts.errors and composed_lifts.cli._errors: its builtin, its
docstring, and a message built from structured arguments that names what was seen, what was
expected and the fix; every form of a class with several."""

import inspect

import numpy as np
import pytest

from composed_lifts import errors
from composed_lifts.cli import _errors as cli_errors

# One construction per class, and words its message must contain (what was seen, and the fix).
CASES = {
    "UnliftedVariablesError": (
        ("PBlock(features=2)", "params/Dense_0/kernel", ("nn.scan",), ("batch_stats",)),
        ["params/Dense_0/kernel has partition names", "nn.scan", "'batch_stats'", "linen_stack"],
    ),
    "ArgumentTypeError": (
        ("num_layers", "an integer", "bool True", "pass e.g. num_layers=4"),
        ["num_layers must be an integer, got bool True; pass e.g. num_layers=4"],
    ),
    "ArgumentRangeError": (("unroll", ">= 1", 0), ["unroll must be >= 1, got 0"]),
    "SeedRangeError": (("seed", -1), ["got -1", "seed % 2**32"]),
    "InputShapeError": (("x", "1-D with shape (3,)", "use x[None, :]"), ["got 1-D", "x[None, :]"]),
    "WidthMismatchError": (("x", 5, "features", 4), ["x.shape[-1] is 5 but features is 4"]),
    "InputDtypeError": ((("x"), __import__("numpy").dtype(bool)), ["dtype bool", "np.float32"]),
    "NonFiniteInputError": (("x", 2, (0, 1), float("nan")), ["found 2 NaN", "(0, 1)"]),
    "InputFileError": (
        ("--input 'in.npy'", "is truncated", "write it again"),
        ["--input 'in.npy' is truncated; write it again"],
    ),
    "CarryChangedError": (
        ("dtype", "carry", "float32[6]", "bfloat16[6]"),
        ["from float32[6] to bfloat16[6]", "astype"],
    ),
    "BlockOutputError": (("a single array",), ["returned a single array", "return carry, None"]),
    "BlockCallError": (
        ("Residual(features=4)", "float32[5]", "TypeError: add got incompatible shapes"),
        ["Residual(features=4) fails", "float32[5]", "incompatible shapes"],
    ),
    "LayerInputsError": (("xs", (4, 6), 0, 3), ["xs has shape (4, 6)", "num_layers=3"]),
    "BatchSizeError": (
        ({"carry['a']": 2, "carry['b']": 3},),
        ["carry['a'] has 2, carry['b'] has 3"],
    ),
    "MissingBatchAxisError": (
        ("carry", (6,)),
        ["carry has shape (6,)", "x[None]", "BatchMode.NONE"],
    ),
    "MissingRngError": (("apply", ["params"], "no dropout"), ["rngs={'dropout'"]),
    "SharedCollectionError": (
        (["batch_stats"], "batch"),
        ["axis_name='batch'", "{'batch_stats': 0}"],
    ),
    "EnsembleSizeError": ((2, 3), ["2 members", "batch 3"]),
    "ConfusedSplitError": (("scan", 4), ["4 different inits", "on the scan"]),
    "LayoutProbeError": (("param w", "has shape (2,)"), ["param w has shape (2,)", "independent"]),
    "LayoutMismatchError": (
        ("leaf", "params['w']", "this stack", "initialise it"),
        ["params['w'] is of shape (3,), but this stack has shape (2, 3); initialise it"],
    ),
    "UnsplitRngError": (("dropout", (2,), (3,)), ["'dropout' unsplit", "rngs.dropout.fork()"]),
    # files
    "OutputFileError": (
        ("--output 'o.npy'", "no_folder"),
        ["--output 'o.npy' is in folder 'x', which does not exist; create it first"],
    ),
    "ReadOnlyFileError": (("--output 'o.npy'", "-r--r--r--"), ["mode -r--r--r--", "chmod u+w"]),
    "DeviceCountError": ((8, 1, "cpu"), ["needs 8 devices", "device_count=8"]),
    "ShardingRuleError": (
        ("['w']", (4, 2, 3), "w", ("mlp",), 1),
        ["names 1 axes", "shape (4, 2, 3)", "has 2 axes"],
    ),
    "MeshAxisError": ((["model"], {"data": 2}), ["mesh axes ['model']", "{'data': 2}"]),
    "UnevenBatchError": (
        (3, "mesh axis 'data'", 2),
        ["batch of 3", "'data' of size 2", "multiple of 2"],
    ),
    # checkpoints and key maps
    "KeyMapError": (("unmatched",), ["no rule of the key map matches leaf 'b'; add a rule for it"]),
    "StackLayoutError": (
        ("empty",),
        ["stack 'params/x' holds no arrays; a stack is a subtree that holds the layers"],
    ),
    "MissingKeyError": (
        ("h.2.b", "params/b", 3),
        ["key 'h.2.b', needed for param params/b, is not in the source (2 more missing)"],
    ),
    "MembersDifferError": (("params/w", 1), ["member 1 differs from member 0 at leaf 'params/w'"]),
    "CheckpointFormatError": (
        ("checkpoint 'm.safetensors'", "is truncated", "save it again"),
        ["checkpoint 'm.safetensors' is truncated; save it again"],
    ),
    "ChecksumMismatchError": (
        ("m.safetensors", "w[layer 2]", "00ff", "11aa"),
        ["tensor 'w[layer 2]' has xxh3-64 checksum 11aa but 00ff was recorded", "restore"],
    ),
    "CheckpointMismatchError": (
        ("params/b", "3 layers", "4 layers", "load into a stack of 3 layers"),
        ["param 'params/b' is 3 layers in the checkpoint but the target needs 4 layers; load"],
    ),
    "OutputWriteError": (
        ("checkpoint 'm.safetensors'", "File too large", "the old file is unchanged"),
        [
            "checkpoint 'm.safetensors' could not be written: File too large (the old file is "
            "unchanged); free space or raise the limit",
        ],
    ),
    # the command line's own
    "BlockImportError": (("m:C", "cannot import module 'm'"), ["--block 'm:C': cannot import"]),
    "MemoryEstimateError": (
        ("a run", 3 * 10**9, 10**9, "--batch"),
        ["a run needs about 3 GB", "but 1 GB is available", "reduce --batch", "--force"],
    ),
    "NonFiniteResultError": ((4, 32, 1, 3), ["4 NaN or infinite value(s) of 32", "layer 1 (of 3"]),
    "CacheFolderError": (
        ("/tmp/c", "is refused: group or others may write to it", "chmod 700 '/tmp/c'"),
        ["folder '/tmp/c' is refused", "chmod 700"],
    ),
    "StandardOutputError": (("sys.stdout is a closed file",), ["closed file", ">/dev/null"]),
    # models
    "UnsupportedConfigError": (
        ("attention_bias", True, "false"),
        ["attention_bias = True is not supported (supported: false)", "transformers"],
    ),
    # stacks of a repeating pattern
    "AperiodicLayersError": (
        (2, "full", "sliding", 2),
        ["layer_types[2] is 'full' but a period of 2 repeats layer_types[0] = 'sliding'"],
    ),
    "PatternKindsError": (
        ("blocks", ["full"], ["global"], ["sliding", "full"]),
        ["blocks has no block for the kinds ['full'] and has blocks for ['global']", "one block"],
    ),
    "KindOutputsError": (
        ("full", "None", "sliding", "float32[4]"),
        ["kind 'full' returns y = None but kind 'sliding' returns float32[4]", "(B, N, ...)"],
    ),
    "ConfigValueError": (
        ("hidden_size", "32.5", "an integer >= 1"),
        ["config.json: hidden_size = 32.5 is not a valid value (expected an integer >= 1)", "fix"],
    ),
    "ModelTooLargeError": (
        ("the LlamaConfig of this config.json", 4 * 10**12, 10**10, "--force"),
        ["needs about 4e+03 GB", "10 GB is available", "pass --force to try anyway"],
    ),
    "TokenRangeError": (("--data 'd.npy' (document 0)", 500, 96), ["token id 500", "[0, 96)"]),
    "NonFiniteLossError": (
        (3, float("nan"), "out/state.safetensors"),
        ["step 3 is nan", "out/state"],
    ),
    "TrainStateMismatchError": (("steps", 10, 20), ["steps was 10", "now 20"]),
}

# Keyword facts of the cases above whose class takes a kind and that kind's facts.
FACTS = {
    "OutputFileError": {"folder": "x"},
    "KeyMapError": {"leaf": "b"},
    "StackLayoutError": {"where": "stack 'params/x'"},
    "LayoutMismatchError": {"seen": "of shape (3,)", "expected": "shape (2, 3)"},
}
# One set of facts for every form of the classes with several, and words each message must hold.
KINDS = {
    "StackLayoutError": {
        "not_found": ({"stack": "params/x", "part": "x"}, ["'params/x' is not in the tree", "'x'"]),
        "empty": ({"where": "stacks=('a',)"}, ["stacks=('a',) holds no arrays"]),
        "no_layer_axis": (
            {"leaf": "w", "shape": (3,), "axis": 1, "argument": "layer_axis="},
            ["'w' has shape (3,), which has no layer axis 1; pass layer_axis="],
        ),
        "no_ensemble_axis": ({"leaf": "w", "shape": ()}, ["'w' has shape ()", "ensemble axis 0"]),
        "counts_differ": (
            {"where": "stack 'x'", "what": "layers", "counts": {"a": 3, "b": 4}},
            ["stack 'x' disagree on the number of layers: a has 3, b has 4"],
        ),
        "axes_differ": ({"axes": [0, 1]}, ["different axes [0, 1]", "layer_axis_from"]),
        "field_differs": (
            {"stack": "s", "field": "num_layers", "seen": 3, "said": 4},
            ["stack 's' has num_layers=3 in the tree, not 4", "leave num_layers out"],
        ),
        "form_differs": (
            {"stack": "s", "seen": "unrolled", "said": "stacked"},
            ["stack 's' is unrolled in the tree, not stacked", "find_stack"],
        ),
        "layers_differ": (
            {"stack": "s", "layer": "layers_1", "differences": "lacks 'b'"},
            ["the layers of stack 's' differ in structure: layers_1 lacks 'b'", "same leaves"],
        ),
    },
    "OutputFileError": {
        "write_failed": (
            {"reason": "No space left on device", "kept": "nothing was there", "fix": "free space"},
            ["could not be written: No space left on device (nothing was there); free space"],
        ),
        "exists_not_folder": ({}, ["exists and is not a folder; write elsewhere"]),
        "foreign_folder": (
            {"what": "a Hugging Face folder"},
            ["holds other files, not a Hugging Face folder", "new or empty folder"],
        ),
        "not_ours": (
            {"what": "a file, not a checkpoint folder"},
            ["exists and is a file, not a checkpoint folder; it is not replaced", "remove it"],
        ),
        "name_too_long": ({"length": 300, "limit": 255}, ["300 bytes long", "the 255 this"]),
        "no_folder": ({"folder": "x"}, ["is in folder 'x', which does not exist"]),
        "folder_fails": ({"folder": "x", "reason": "Too many links"}, ["fails: Too many links"]),
        "not_a_folder": ({"folder": "x", "found": "a regular file"}, ["is a regular file, not a"]),
        "folder_read_only": ({"folder": "x"}, ["'x', which is not writable; choose another"]),
        "unchecked": ({"reason": "Permission denied"}, ["cannot be checked: Permission denied"]),
        "not_a_file": ({"found": "a folder"}, ["is a folder; give the path of a file"]),
        "no_temporary": ({"folder": "x", "reason": "No space"}, ["temporary file in folder 'x'"]),
        "suffix": (
            {"suffix": ".txt", "suffixes": ".png"},
            ["suffix '.txt'; name a file ending in .png"],
        ),
        "sharded": ({}, ["model.safetensors.index.json", "empty folder"]),
        "is_input": ({"source": "IN"}, ["is the file being read (IN); write elsewhere"]),
    },
    "KeyMapError": {
        "unmatched": ({"leaf": "b"}, ["matches leaf 'b'", "Rule('{*path}', '{path}')"]),
        "collision": (
            {"key": "x", "first": "a", "second": "b"},
            ["'a' and 'b' both map to key 'x'"],
        ),
        "fused_missing": ({"leaf": "a", "key": "qkv", "part": "k"}, ["fused key 'qkv'", "'k'"]),
        "fused_shapes": (
            {
                "key": "qkv",
                "part": "k",
                "shape": (2,),
                "first": "q",
                "first_shape": (3,),
                "axis": 0,
            },
            ["part 'k' becomes (2,) but part 'q' becomes (3,)", "join axis 0"],
        ),
        "reshape": ({"to": (5,), "shape": (4,), "size": 4}, ["Reshape((5,)) cannot hold", "(4,)"]),
        "template": ({"template": "h.{j}", "name": "j"}, ["uses {j}", "'{*j}/kernel'"]),
        "unread": ({"count": 2, "first": "x"}, ["2 key(s) no rule reads, first 'x'", "('x',)"]),
        "per_layer": (
            {"keymap": "--key-map torch", "unrolled": "--to unrolled"},
            ["--key-map torch names one tensor per layer", "pass --to unrolled"],
        ),
        "orbax": ({"keymap": "keymap=KeyMapName.TORCH"}, ["cannot use keymap=KeyMapName.TORCH"]),
    },
    "LayoutMismatchError": {
        "keys": (
            {"where": "params", "reference": "the model", "missing": ["a"], "unexpected": ["b"]},
            ["params differ from the model: missing ['a'], unexpected ['b']"],
        ),
        "structure": (
            {"where": "layers_1", "reference": "layers_0", "seen": "S1", "expected": "S0"},
            ["layers_1 has tree structure S1, but layers_0 has S0"],
        ),
        "leaf": (
            {"where": "w", "reference": "the stack", "seen": "f32", "expected": "f16"},
            ["w is f32, but the stack has f16"],
        ),
    },
}


def _class(name):
    return getattr(errors, name, None) or getattr(cli_errors, name)


def test_every_class_is_covered():
    assert set(errors.__all__) | set(cli_errors.__all__) == set(CASES) | {"ComposedLiftsError"}
    assert not set(errors.__all__) & set(cli_errors.__all__)
    assert all(getattr(errors, n).__module__ == "composed_lifts.errors" for n in errors.__all__)


def test_all_is_sorted():
    assert errors.__all__ == sorted(errors.__all__)
    assert cli_errors.__all__ == sorted(cli_errors.__all__)


@pytest.mark.parametrize("name", sorted(CASES))
def test_class_owns_its_message(name):
    cls = _class(name)
    assert issubclass(cls, errors.ComposedLiftsError)
    assert issubclass(cls, (ValueError, TypeError, OSError, MemoryError, LookupError))
    assert cls.__doc__ and len(cls.__doc__.split()) >= 8  # the mistake and its fix
    args, words = CASES[name]
    err = cls(*args, **FACTS.get(name, {}))
    for word in words:
        assert word in str(err), (word, str(err))
    params = list(inspect.signature(cls.__init__).parameters)[1:]
    assert params and params != ["args"]  # structured, not a free-form message
    for param in params:  # each piece is kept as an attribute
        assert hasattr(err, param), (name, param)


def test_the_width_pitfall_is_one_failure_mode_wherever_it_is_found():
    # found from composed_lifts_forward's arguments, or from a block's carry: one except catches both
    assert issubclass(errors.WidthMismatchError, errors.CarryChangedError)
    err = errors.WidthMismatchError("x_batch", 5, "features", 4)
    assert err.kind == "shape" and isinstance(err, ValueError)


@pytest.mark.parametrize(
    ("name", "kind"), [(name, kind) for name, kinds in sorted(KINDS.items()) for kind in kinds]
)
def test_every_form_owns_its_message(name, kind):
    cls = getattr(errors, name)
    facts, words = KINDS[name][kind]
    if name == "OutputFileError":
        err = cls("--output 'o.png'", kind, **facts)
        assert str(err).startswith("--output 'o.png' ")
    else:
        err = cls(kind, **facts)
    for word in words:
        assert word in str(err), (word, str(err))
    assert err.kind == kind
    for fact, value in facts.items():  # each fact is kept as an attribute
        assert getattr(err, fact) == value, fact


def test_forms_are_listed_in_full():
    assert {n: set(k) for n, k in KINDS.items()} == {
        n: set(getattr(errors, n).MESSAGES) for n in KINDS
    }


@pytest.mark.parametrize("name", sorted(KINDS))
def test_an_unknown_form_is_refused(name):
    args = ("where", "nope") if name == "OutputFileError" else ("nope",)
    facts = KINDS["LayoutMismatchError"]["leaf"][0] if name == "LayoutMismatchError" else {}
    with pytest.raises(TypeError, match="has no kind 'nope'"):
        getattr(errors, name)(*args, **facts)


def test_a_counts_fact_is_written_out_in_the_message():
    err = errors.StackLayoutError(
        "counts_differ", where="t", what="layers", counts={"a": np.int64(3)}
    )
    assert "a has 3" in str(err) and err.counts == {"a": 3}
