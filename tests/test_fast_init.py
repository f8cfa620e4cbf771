"""fast_seed_params against the seed's recipe (Flax's own init), bit for bit, and its structure."""

import functools
import subprocess
import sys

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from composed_lifts import composed_lifts_forward
from composed_lifts._fast_init import fast_init_applies, fast_seed_params
from composed_lifts._forward import _init_params, _init_params_flax
from references import seed_recipe


@functools.partial(jax.jit, static_argnums=(1, 2))
def _fast(seed, num_layers, features):
    return fast_seed_params(seed, num_layers, features)


def _assert_same_variables(got, want):
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


# Empty (N=0), one element (N=1, F=1), odd sizes (F*F odd: both threefry layouts pad
# there), a kernel of more than 2**20 words. Seeds and small shapes at random: test_forward.
SHAPES = [(0, 3), (1, 1), (3, 5), (4, 64), (2, 1031)]


@pytest.mark.parametrize("num_layers,features", SHAPES, ids=str)
def test_params_and_forward_equal_the_recipe(partitionable, num_layers, features):
    seed = 2**32 - 1 if features % 2 else 0
    x = np.random.default_rng(features).standard_normal((3, features)).astype(np.float32)
    want_out, want = seed_recipe(seed, jnp.asarray(x), num_layers, features)
    got = _fast(np.uint32(seed), num_layers, features)
    _assert_same_variables(got, want)
    got_out = composed_lifts_forward(seed, x, num_layers, features)
    np.testing.assert_array_equal(np.asarray(got_out), np.asarray(want_out))
    dense = got["params"]["Dense_0"]
    assert not np.any(np.asarray(dense["bias"]))  # the zeros initialiser
    kernel = np.asarray(dense["kernel"])  # lecun_normal: within 2 standard deviations
    assert np.all(np.abs(kernel) < 2 / np.sqrt(features) / 0.87962566103423978)
    if num_layers > 1:  # each layer its own key
        assert not np.array_equal(kernel[0], kernel[1])


def _primitives(jaxpr, in_loop=False, out=None):
    """``(primitive name, inside a scan/while?)`` for every equation, sub-jaxprs included."""
    out = set() if out is None else out
    for eqn in jaxpr.eqns:
        out.add((eqn.primitive.name, in_loop))
        loop = in_loop or eqn.primitive.name in ("scan", "while")
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            _primitives(sub, loop, out)
    return out


def _traced(init_fn):
    """The primitives of ``init_fn(seed, x, num_layers=3, features=4)``'s jaxpr."""
    fn = functools.partial(init_fn, num_layers=3, features=4)
    return _primitives(jax.make_jaxpr(fn)(np.uint32(0), jnp.ones((2, 4), jnp.float32)).jaxpr)


def test_kernels_are_drawn_outside_the_scan_on_cpu_and_inside_it_with_flax():
    assert fast_init_applies()  # these tests run on CPU with threefry
    fast, flax = _traced(_init_params), _traced(_init_params_flax)
    assert ("erf_inv", False) in fast and ("erf_inv", True) not in fast
    assert ("erf_inv", True) in flax and ("erf_inv", False) not in flax


def test_other_backends_keep_flax_init(monkeypatch):
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert not fast_init_applies()
    traced = _traced(_init_params.__wrapped__)  # a fresh trace: jit's cache would hide the patch
    assert ("erf_inv", True) in traced and ("erf_inv", False) not in traced


def test_another_default_prng_keeps_flax_init_and_equals_the_recipe():
    # jax_default_prng_impl is not part of jit's cache key: a fresh process.
    code = (
        "import jax, numpy as np, jax.numpy as jnp, sys\n"
        "jax.config.update('jax_default_prng_impl', 'rbg')\n"
        "sys.path.insert(0, 'tests')\n"
        "from references import seed_recipe\n"
        "from composed_lifts import composed_lifts_forward\n"
        "from composed_lifts._fast_init import fast_init_applies\n"
        "x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)\n"
        "want, _ = seed_recipe(5, jnp.asarray(x), 3, 4)\n"
        "got = composed_lifts_forward(5, x, 3, 4)\n"
        "assert not fast_init_applies()\n"
        "assert np.array_equal(np.asarray(got), np.asarray(want))\n"
        "print('ok')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "ok"
