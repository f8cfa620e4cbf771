"""Greedy decoding with a per-layer KV cache, compiled once per prompt shape.

The model's ``decode=True`` clone keeps keys and values in the ``cache``
collection, stacked on the layer axis like the params (``(B, N, max_len, KV,
head_dim)`` scanned, ``(B, max_len, KV, head_dim)`` per ``layers_i``
unrolled). One ``jax.jit`` program runs the prefill over the prompt and then a
``lax.scan`` of single-token steps, all with fixed shapes.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from .._arguments import check_integer
from .._sharding import ShardingRules, default_rules, param_shardings, shard_batch
from ..errors import ArgumentRangeError, ArgumentTypeError, InputShapeError
from ._sharding_axes import STACKS, param_axes

__all__ = ["generate", "init_cache"]


def init_cache(model, batch: int, max_len: int) -> dict:
    """Zeros of the ``cache`` collection for ``batch`` sequences of up to ``max_len`` tokens."""
    decoding = model.clone(decode=True)
    ids = jnp.zeros((batch, max_len), jnp.int32)
    shapes = jax.eval_shape(decoding.init, jax.random.PRNGKey(0), ids)["cache"]
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def _forward(decoding, params, cache, ids, positions):
    logits, variables = decoding.apply(
        {"params": params, "cache": cache}, ids, positions, mutable=["cache"]
    )
    return jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32), variables["cache"]


@functools.partial(jax.jit, static_argnums=(0, 3))
def _greedy(model, params, prompt, steps: int, eos: jax.Array, pad: jax.Array):
    batch, length = prompt.shape
    decoding = model.clone(decode=True)
    cache = init_cache(model, batch, length + steps)
    positions = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), prompt.shape)
    first, cache = _forward(decoding, params, cache, prompt, positions)

    def step(carry, _):
        cache, token, position, done = carry
        nxt, cache = _forward(decoding, params, cache, token[:, None], position[:, None])
        done = done | (token[:, None] == eos[None, :]).any(axis=1)  # finished: emit pad
        nxt = jnp.where(done, pad, nxt)
        return (cache, nxt, position + 1, done), token

    start = (cache, first, jnp.full((batch,), length, jnp.int32), jnp.zeros((batch,), bool))
    (_, last, _, _), tokens = jax.lax.scan(step, start, length=steps - 1)
    return jnp.concatenate([tokens.T, last[:, None]], axis=1)


def generate(
    model,
    params,
    prompt_ids,
    max_new_tokens: int,
    *,
    eos_token_id: int | list[int] | None = None,
    pad_token_id: int | None = None,
    mesh: Mesh | None = None,
    rules: ShardingRules | None = None,
) -> np.ndarray:
    """Greedy decoding: the ``(B, max_new_tokens)`` token ids following ``prompt_ids`` ``(B, T)``.

    Equal to repeatedly running the full model on the sequence so far and
    appending the argmax of the last position's logits. With ``eos_token_id``
    (an id or a list of ids), a sequence that has produced one continues with
    ``pad_token_id`` (default: the first eos id), like ``transformers``'
    ``generate(do_sample=False)``.

    With ``mesh``, the prompts are split over ``rules.batch`` (default: the mesh's first
    axis, data parallel) and the params placed by ``rules`` (the architecture's
    ``param_axes`` unless ``rules`` names its own), one compiled program as on one device.
    """
    check_integer("max_new_tokens", max_new_tokens, minimum=1)
    prompt = np.asarray(prompt_ids)
    if prompt.ndim != 2 or prompt.shape[1] == 0:
        raise InputShapeError(
            "prompt_ids",
            f"shape {prompt.shape}",
            "for one prompt use [[id, id, ...]]",
            expected="a 2-D array (batch, length) of token ids with length >= 1",
        )
    if not np.issubdtype(prompt.dtype, np.integer):
        raise ArgumentTypeError(
            "prompt_ids",
            "integer token ids",
            f"dtype {prompt.dtype}",
            "cast them first, e.g. np.asarray(prompt_ids, np.int32)",
        )
    config = model.config
    if prompt.min() < 0 or prompt.max() >= config.vocab_size:
        raise ArgumentRangeError(
            "prompt_ids",
            f"token ids in [0, vocab_size={config.vocab_size})",
            f"ids from {prompt.min()} to {prompt.max()}",
        )
    total = prompt.shape[1] + max_new_tokens
    if total > config.max_positions:
        raise ArgumentRangeError(
            "max_new_tokens",
            f"<= {config.max_positions - prompt.shape[1]} (the model's {config.max_positions} "
            f"positions less the prompt's length {prompt.shape[1]})",
            max_new_tokens,
            "shorten the prompt or generate fewer tokens",
        )
    eos = [] if eos_token_id is None else np.atleast_1d(eos_token_id).tolist()
    pad = (eos or [-1])[0] if pad_token_id is None else pad_token_id
    eos = jnp.asarray(eos or [-1], jnp.int32)  # -1 never matches
    prompt_in = jnp.asarray(prompt, jnp.int32)
    if mesh is not None:
        params, prompt_in = _placed(model, params, prompt_in, mesh, rules)
    tokens = _greedy(model.clone(decode=False), params, prompt_in, max_new_tokens, eos, pad)
    return np.asarray(tokens)


def _placed(model, params, prompt, mesh: Mesh, rules: ShardingRules | None):
    """Params placed by ``rules`` on ``mesh`` and the prompts split over its batch axis."""
    rules = default_rules(mesh, rules, param_axes(model.config))
    abstract = jax.eval_shape(lambda p: p, {"params": params})
    shardings = param_shardings(abstract, mesh, rules, stacks=STACKS)["params"]
    return jax.device_put(params, shardings), shard_batch(prompt, mesh, rules)
