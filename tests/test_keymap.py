"""Key maps: stacked trees <-> flat state dicts, exact round trips and checked reads."""

import functools

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from blocks import F, ResidualMLPLinen, SeedLinen
from composed_lifts import (
    BatchMode,
    Fused,
    KeyMap,
    Reshape,
    Rule,
    StackOptions,
    Transpose,
    errors,
    from_state_dict,
    iter_state_dict,
    linen_stack,
    read_state,
    state_dict_specs,
    to_state_dict,
    torch_linear_keymap,
    unstack_params,
)

N, B = 3, 2
DTYPES = [np.float32, ml_dtypes.bfloat16, np.float16]


def assert_identical(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        x, y = np.ascontiguousarray(x), np.ascontiguousarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(x.view(np.uint8), y.view(np.uint8))  # bit for bit


@functools.cache
def _stack_params(block, mode, seed):
    stack = linen_stack(block, StackOptions(num_layers=N, batch=mode))()
    return stack.init(jax.random.PRNGKey(seed), jnp.ones((B, F)))["params"]


def model_tree(block, mode, dtype, seed=0):
    """A model: embeddings, a stack of ``block`` nested under params/stack, and a head."""
    inner = _stack_params(block, mode, seed)
    rng = np.random.default_rng(seed)
    tree = {
        "params": {
            "embed": {"embedding": rng.standard_normal((11, F))},
            "stack": inner,
            "head": {"kernel": rng.standard_normal((F, 5)), "bias": rng.standard_normal(5)},
        }
    }
    return jax.tree_util.tree_map(lambda a: np.asarray(a).astype(dtype), tree)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("mode", [BatchMode.SHARED, BatchMode.ENSEMBLE])
@pytest.mark.parametrize("block", [SeedLinen, ResidualMLPLinen], ids=lambda b: b.__name__)
def test_torch_keymap_round_trip(block, mode, dtype):
    tree = model_tree(block, mode, dtype)
    axis = 1 if mode is BatchMode.ENSEMBLE else 0
    keymap = torch_linear_keymap(("params/stack",), layer_axis=axis)
    state = to_state_dict(tree, keymap)
    assert "params.stack.2.Dense_0.weight" in state and "params.head.weight" in state
    assert "params.embed.weight" in state
    assert_identical(from_state_dict(state, keymap, like=tree), tree)
    abstract = jax.eval_shape(lambda: tree)
    assert_identical(from_state_dict(state, keymap, like=abstract), tree)
    # the unrolled tree maps to the same keys, so a stacked state dict loads into it
    unrolled = {
        "params": dict(tree["params"], stack=unstack_params(tree["params"]["stack"], axis=axis))
    }
    assert_identical(to_state_dict(unrolled, keymap), state)
    assert_identical(from_state_dict(state, keymap, like=unrolled), unrolled)


def test_torch_keymap_is_nn_linear_convention():
    """Reference: PyTorch's Linear computes x @ weight.T + bias; NumPy float64 against Linen."""
    tree = model_tree(ResidualMLPLinen, BatchMode.SHARED, np.float32)
    state = to_state_dict(tree, torch_linear_keymap(("params/stack",)))
    x = np.random.default_rng(1).standard_normal((4, F))
    layer = 1
    dense = {
        "params": jax.tree_util.tree_map(lambda a: a[layer], tree["params"]["stack"]["Dense_1"])
    }
    import flax.linen as nn

    want = nn.Dense(F).apply(dense, jnp.asarray(np.ones((4, 4 * F)), jnp.float32))
    w = state[f"params.stack.{layer}.Dense_1.weight"].astype(np.float64)
    b = state[f"params.stack.{layer}.Dense_1.bias"].astype(np.float64)
    assert w.shape == (F, 4 * F)  # (out, in)
    np.testing.assert_allclose(np.ones((4, 4 * F)) @ w.T + b, want, rtol=1e-5, atol=1e-5)
    assert state["params.head.weight"].shape == (5, F) and x.shape == (4, F)


def gpt2_like_keymap(d, h):
    """GPT-2's fused c_attn: our q, k, v kernels (D, H, hd) joined into (D, 3D), biases into (3D,)."""
    flat = (Reshape((d, d)),)
    return KeyMap(
        (
            Fused(
                "h.{i}.attn.c_attn.weight",
                tuple(Rule(f"attn/{n}/kernel", "", flat) for n in "qkv"),
                axis=1,
            ),
            Fused(
                "h.{i}.attn.c_attn.bias",
                tuple(Rule(f"attn/{n}/bias", "", (Reshape((d,)),)) for n in "qkv"),
            ),
            Rule("attn/o/kernel", "h.{i}.attn.c_proj.weight", (Reshape((d, d)), Transpose())),
            Rule("wte", "wte.weight"),
        )
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_fused_qkv_round_trip_and_layout(dtype):
    d, h, hd = 4, 2, 2
    rng = np.random.default_rng(0)
    attn = {
        n: {"kernel": rng.standard_normal((N, d, h, hd)), "bias": rng.standard_normal((N, h, hd))}
        for n in "qkv"
    }
    attn["o"] = {"kernel": rng.standard_normal((N, h, hd, d))}
    tree = jax.tree_util.tree_map(
        lambda a: a.astype(dtype), {"attn": attn, "wte": rng.standard_normal((7, d))}
    )
    del tree["attn"]["o"]["kernel"]
    tree["attn"]["o"] = {"kernel": rng.standard_normal((N, d, h, hd)).astype(dtype)}
    keymap = gpt2_like_keymap(d, h)
    state = to_state_dict(tree, keymap)
    assert state["h.1.attn.c_attn.weight"].shape == (d, 3 * d)
    # reference: the fused tensor is q | k | v side by side, each (D, H*hd)
    k1 = tree["attn"]["k"]["kernel"][1].reshape(d, d)
    assert np.array_equal(state["h.1.attn.c_attn.weight"][:, d : 2 * d], k1)
    assert np.array_equal(
        state["h.2.attn.c_attn.bias"][2 * d :], tree["attn"]["v"]["bias"][2].reshape(-1)
    )
    assert np.array_equal(
        state["h.0.attn.c_proj.weight"], tree["attn"]["o"]["kernel"][0].reshape(d, d).T
    )
    assert_identical(from_state_dict(state, keymap, like=tree), tree)
    specs = state_dict_specs(jax.eval_shape(lambda: tree), keymap)
    assert {k: (v.shape, v.dtype) for k, v in state.items()} == specs


def test_read_state_streams_one_layer_at_a_time():
    tree = model_tree(SeedLinen, BatchMode.SHARED, np.float32)
    keymap = torch_linear_keymap(("params/stack",))
    state = dict(iter_state_dict(tree, keymap))
    reads = []

    def read(key):
        reads.append(key)
        return state[key]

    out = read_state(read, keymap, like=jax.eval_shape(lambda: tree))
    assert sorted(reads) == sorted(state) and len(reads) == len(state)
    assert_identical(out, tree)


def test_keymap_errors_name_the_param_and_key():
    tree = model_tree(SeedLinen, BatchMode.SHARED, np.float32)
    keymap = torch_linear_keymap(("params/stack",))
    state = to_state_dict(tree, keymap)
    wrong = dict(state)
    wrong["params.stack.1.Dense_0.weight"] = np.ones((F + 1, F), np.float32)
    with pytest.raises(
        errors.CheckpointMismatchError,
        match=r"param 'params/stack/Dense_0/kernel' \(key 'params.stack.1.Dense_0.weight'\) is float32\(7, 6\).*needs float32\(6, 6\)",
    ):
        from_state_dict(wrong, keymap, like=tree)
    missing = dict(state)
    del missing["params.stack.2.Dense_0.bias"]
    with pytest.raises(
        errors.MissingKeyError,
        match="'params.stack.2.Dense_0.bias', needed for param params/stack/Dense_0/bias",
    ):
        from_state_dict(missing, keymap, like=tree)
    extra = dict(state, **{"params.stack.3.Dense_0.bias": np.ones(F, np.float32)})
    with pytest.raises(
        errors.KeyMapError, match="1 key.* no rule reads, first 'params.stack.3.Dense_0.bias'"
    ):
        from_state_dict(extra, keymap, like=tree)
    ignoring = KeyMap(keymap.rules, ignore=("params.stack.3.*",))
    assert_identical(from_state_dict(extra, ignoring, like=tree), tree)
    with pytest.raises(
        errors.KeyMapError, match="no rule of the key map matches leaf 'params/embed/embedding'"
    ):
        to_state_dict(tree, KeyMap((Rule("params/stack/{*m}", "{i}.{m}"),)))
    with pytest.raises(errors.KeyMapError, match="both map to key 'x'"):
        to_state_dict({"a": np.ones(1), "b": np.ones(1)}, KeyMap((Rule("{n}", "x"),)))
    with pytest.raises(errors.KeyMapError, match=r"Reshape\(\(5,\)\) cannot hold"):
        to_state_dict({"a": np.ones(4)}, KeyMap((Rule("a", "a", (Reshape((5,)),)),)))


def test_cast_widens_on_disk_and_round_trips():
    from composed_lifts import Cast

    tree = model_tree(SeedLinen, BatchMode.SHARED, ml_dtypes.bfloat16)
    keymap = KeyMap(
        (Rule("params/stack/{*m}", "layers.{i}.{m}", (Cast("float32"),)), Rule("{*m}", "{m}"))
    )
    state = to_state_dict(tree, keymap)
    assert state["layers.1.Dense_0.kernel"].dtype == np.float32
    assert state["params.head.kernel"].dtype == ml_dtypes.bfloat16
    # reference: the stored value is the bfloat16 value, exactly representable in float32
    want = tree["params"]["stack"]["Dense_0"]["kernel"][1].astype(np.float32)
    assert np.array_equal(state["layers.1.Dense_0.kernel"], want)
    assert_identical(from_state_dict(state, keymap, like=tree), tree)
