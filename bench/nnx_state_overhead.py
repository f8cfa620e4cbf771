"""Per-call cost of passing an ``nnx.State`` into ``jax.jit``, against its flat leaves, at small size.

The fast path ``jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))`` flattens
the ``State`` and its ``Param`` nodes (Python-level pytree nodes) on every call.
Flattening once and passing the list of leaves removes that. Timed round-robin
in one process against hand-written ``lax.scan`` and ``linen_stack``, B=8 N=4 F=64.

    .venv/bin/python bench/nnx_state_overhead.py   # writes bench/results/nnx_state_overhead.md
"""

from __future__ import annotations

import pathlib
import sys

import jax
from flax import nnx

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import composed_lifts  # noqa: E402
from _timing import calibrate, machine_info, round_robin, summarize  # noqa: E402
from peers import load, make_problem  # noqa: E402


def main() -> int:
    p = make_problem(8, 4, 64)

    class Block(nnx.Module):
        def __init__(self, rngs):
            self.linear = nnx.Linear(p.F, p.F, rngs=rngs)

        def __call__(self, x, _=None):
            return nnx.relu(self.linear(x)), None

    options = composed_lifts.StackOptions(num_layers=p.N)
    stack = composed_lifts.nnx_stack(Block, options, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(stack)
    leaves, treedef = jax.tree_util.tree_flatten(state)
    x = jax.device_put(p.x)
    by_state = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x)[0])
    by_leaves = jax.jit(
        lambda leaves, x: nnx.merge(graphdef, jax.tree_util.tree_unflatten(treedef, leaves))(x)[0]
    )
    fns = {
        "nnx_stack, State into jit": lambda: by_state(state, x).block_until_ready(),
        "nnx_stack, flat leaves into jit": lambda: by_leaves(leaves, x).block_until_ready(),
        "nnx_split_apply (ours, flat leaves)": load("ours_nnx").build(p),
        "hand-written lax.scan": load("jax_scan").build(p),
        "linen_stack (jit apply)": load("ours_linen").build(p),
    }
    for fn in fns.values():
        fn()
    samples = round_robin(fns, rounds=20, inner={k: calibrate(f, 0.03) for k, f in fns.items()})
    base = summarize(samples["hand-written lax.scan"])["median_s"]
    m = machine_info()
    lines = [
        "# nnx_stack at small size: State vs flat leaves into jax.jit",
        "",
        f"{m['date']}, {m['nproc']} cores ({m['cpu']}), jax {m['versions']['jax']}, flax "
        f"{m['versions']['flax']}; B=8 N=4 F=64; 20 rounds round-robin in one process. "
        f"{m['note']}.",
        "",
        "| form | median | min | x lax.scan |",
        "|---|---:|---:|---:|",
    ]
    for name, s in samples.items():
        st = summarize(s)
        lines.append(
            f"| {name} | {st['median_s'] * 1e6:.1f} us | {st['min_s'] * 1e6:.1f} us | "
            f"{st['median_s'] / base:.2f} |"
        )
    md = "\n".join(lines) + "\n"
    print(md)
    (HERE / "results" / "nnx_state_overhead.md").write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
