"""LoRA adapters on a model's stacked layers: params beside the base, applied by interception.

The adapters of a projection live in the params tree beside its kernel, stacked on the
layer axis like it: ``layers/self_attn/q_proj/lora_a`` of shape ``(N, in, r)`` and
``lora_b`` of shape ``(N, r, out)`` (``layers_{i}/.../lora_a`` ``(in, r)`` unrolled). The
scan and the batch vmap slice them with the kernel, so inside a layer the ``Dense`` sees
its own ``(in, r)`` and ``(r, out)``; an interceptor on ``nn.Dense.__call__`` adds
``((x @ A) @ B) * scaling`` to its output, PEFT's ``base(x) + B(A(x)) * scaling``. The
models themselves are not changed, and any model whose layers use ``nn.Dense`` works.
"""

from __future__ import annotations

import contextlib
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ..errors import ArgumentRangeError
from ._options import LoraOptions

__all__ = ["init_lora", "lora_modules", "lora_scope", "merge_lora", "with_lora"]

A, B = "lora_a", "lora_b"


def _layers(params) -> list[tuple[str, int | None, dict]]:
    """``(name, layer count or None, subtree)`` of the stack: ``layers`` (scanned) or ``layers_i``."""
    if "layers" in params:
        return [("layers", None, params["layers"])]
    names = sorted(
        (k for k in params if k.startswith("layers_") and k[7:].isdigit()), key=lambda k: int(k[7:])
    )
    return [(k, int(k[7:]), params[k]) for k in names]


def _dense_paths(tree, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Paths of the subtrees holding a ``kernel`` (``nn.Dense`` modules)."""
    out = []
    for key, value in tree.items():
        if isinstance(value, dict):
            if "kernel" in value:
                out.append((*prefix, key))
            out.extend(_dense_paths(value, (*prefix, key)))
    return out


def _matches(path: tuple[str, ...], target: str) -> bool:
    dotted = ".".join(path)
    return dotted == target or dotted.endswith("." + target)


def lora_modules(params, targets) -> list[tuple[str, ...]]:
    """The per-layer module paths (``("self_attn", "q_proj")``) that ``targets`` name.

    Matched as PEFT matches ``target_modules``: a name equal to the dotted path, or to
    its end after a dot. A target that matches nothing is refused.
    """
    layers = _layers(params)
    if not layers:
        raise ArgumentRangeError(
            "params",
            "a model's params with a layer stack ('layers' or 'layers_0' ...)",
            sorted(params),
        )
    candidates = _dense_paths(layers[0][2])
    for target in targets:
        if not any(_matches(p, target) for p in candidates):
            names = sorted({".".join(p) for p in candidates})
            raise ArgumentRangeError(
                "LoRA targets",
                f"names of the layers' projections ({', '.join(names)})",
                repr(target),
            )
    return [p for p in candidates if any(_matches(p, t) for t in targets)]


def _get(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def _put(tree: dict, path, value) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def init_lora(params, options: LoraOptions, rng) -> dict:
    """Fresh adapters for ``params``' targeted projections: ``A`` as PEFT draws it
    (``kaiming_uniform_(a=sqrt(5))``: uniform in ``+-1/sqrt(in)``), ``B`` zeros, so the
    model starts equal to the base. Stacked like the kernels (scanned or unrolled)."""
    modules = lora_modules(params, options.targets)
    lora: dict = {}
    keys = iter(jax.random.split(rng, len(modules) * max(1, len(_layers(params)))))
    for name, _, layer in _layers(params):
        for path in modules:
            kernel = _get(layer, path)["kernel"]
            *lead, fan_in, fan_out = kernel.shape
            bound = 1.0 / math.sqrt(fan_in)
            a = jax.random.uniform(
                next(keys), (*lead, fan_in, options.rank), kernel.dtype, -bound, bound
            )
            b = jnp.zeros((*lead, options.rank, fan_out), kernel.dtype)
            _put(lora, (name, *path), {A: a, B: b})
    return lora


def with_lora(params, lora) -> dict:
    """``params`` with the adapters beside their kernels (the tree ``model.apply`` is given)."""
    if not isinstance(lora, dict):
        return lora if lora is not None else params
    out = dict(params)
    for key, value in lora.items():
        out[key] = with_lora(params.get(key, {}), value) if isinstance(value, dict) else value
    return out


def _intercept(scaling: float):
    def intercept(next_fun, args, kwargs, context):
        module = context.module
        out = next_fun(*args, **kwargs)
        if (
            context.method_name != "__call__"
            or not isinstance(module, nn.Dense)
            or not module.has_variable("params", A)
        ):
            return out
        a = module.get_variable("params", A)
        b = module.get_variable("params", B)
        x = args[0] if args else kwargs["inputs"]
        return out + ((x @ a.astype(x.dtype)) @ b.astype(x.dtype)) * jnp.asarray(scaling, x.dtype)

    return intercept


@contextlib.contextmanager
def lora_scope(options: LoraOptions | None):
    """Within it, every ``nn.Dense`` with ``lora_a``/``lora_b`` params adds its adapter's output.

    ``with lora_scope(opts): model.apply({"params": with_lora(params, lora)}, ids)``.
    """
    if options is None:
        yield
        return
    with nn.intercept_methods(_intercept(options.scaling)):
        yield


def merge_lora(params, lora, options: LoraOptions) -> dict:
    """``params`` with each targeted kernel replaced by ``W + scaling * A @ B`` (PEFT's merge).

    Computed in NumPy float64 from the stored values and cast back to the kernel's dtype.
    """
    merged = jax.tree_util.tree_map(lambda x: x, params)

    def walk(base, adapters, path):
        for key, value in adapters.items():
            if isinstance(value, dict) and A in value:
                target = base[key]
                kernel = np.asarray(target["kernel"], np.float64)
                delta = np.matmul(
                    np.asarray(value[A], np.float64), np.asarray(value[B], np.float64)
                )
                new = dict(target)
                new["kernel"] = (kernel + options.scaling * delta).astype(
                    np.asarray(target["kernel"]).dtype
                )
                base[key] = new
            elif isinstance(value, dict):
                base[key] = dict(base[key])
                walk(base[key], value, (*path, key))

    walk(merged, lora, ())
    return merged
