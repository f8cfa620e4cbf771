"""Decoding with one stacked KV cache, updated in place: prefill, then one compiled step per token.

``prefill`` runs the (left-padded) prompts through the model, writing every
layer's keys and values into a fresh :class:`KVCache` ``(B, N, S, KV, hd)``,
and chooses the first token. ``step`` feeds the last tokens back: each layer
writes its keys at ``[layer, slot]`` with a ``dynamic_update_slice`` on the
cache carried through the layer scan, and the step's state (cache included)
is donated, so XLA reuses its buffers and no step copies the cache. The host
loop between steps streams tokens, checks stop strings and stops when every
row has finished.

Rows of different lengths are left-padded: a row's mask ``(S,)`` is False at
its pads, its positions are ``cumsum(mask) - 1`` (``transformers``'
``_prepare_position_ids_for_generation``), and causality is on slots; a row
gives the tokens it gives alone.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from .._arguments import check_integer
from .._sharding import ShardingRules, default_rules, param_shardings, shard_batch
from ..errors import ArgumentRangeError, ArgumentTypeError, InputShapeError
from ._attention import KVCache
from ._compile_clock import CompileClock
from ._sampling import Sampling, next_tokens, sampling_from
from ._sharding_axes import STACKS, param_axes

__all__ = ["Generation", "StopReason", "generate", "generate_with_details", "init_cache"]


class StopReason:
    """Why a row stopped: one of these strings."""

    EOS = "eos"
    STOP_STRING = "stop_string"
    LENGTH = "length"


def _kv_shape(model, batch: int, max_len: int) -> tuple[int, ...]:
    c = model.config
    if hasattr(c, "num_key_value_heads"):
        kv, hd = c.num_key_value_heads, c.head_dim
    else:
        kv, hd = c.n_head, c.n_embd // c.n_head
    return (batch, c.num_layers, max_len, kv, hd)


def init_cache(model, batch: int, max_len: int, dtype=jnp.float32) -> KVCache:
    """Zeros of the :class:`KVCache` for ``batch`` rows of up to ``max_len`` tokens."""
    shape = _kv_shape(model, batch, max_len)
    return KVCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))


class _State(NamedTuple):
    """What one step reads and writes (donated): the cache and the rows' progress."""

    cache: KVCache
    token: jax.Array  # (B,) the last token chosen
    position: jax.Array  # (B,) its position
    done: jax.Array  # (B,) bool: the row has finished (it emits pad)
    seen: jax.Array  # (B, V) bool, or (B, 0) without a repetition penalty
    key: jax.Array


def _next(sampling: Sampling, logits, state: _State, done, pad):
    """Choose the tokens after ``state.token`` from ``logits (B, 1, V)``; rows ``done`` emit pad."""
    key, draw = jax.random.split(state.key)
    chosen = next_tokens(sampling, logits[:, -1], state.seen if sampling.penalised else None, draw)
    chosen = jnp.where(done, pad, chosen)
    seen = state.seen
    if sampling.penalised:
        seen = seen.at[jnp.arange(seen.shape[0]), chosen].set(True)
    return chosen, done, seen, key


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _prefill(model, sampling: Sampling, max_len: int, params, ids, mask, seed):
    batch, length = ids.shape
    dtype = jax.tree_util.tree_leaves(params)[0].dtype
    positions = jnp.where(mask, jnp.cumsum(mask, axis=1) - 1, 0).astype(jnp.int32)
    full_mask = jnp.concatenate([mask, jnp.ones((batch, max_len - length), bool)], axis=1)
    cache = init_cache(model, batch, max_len, dtype)
    variables = {"params": params}
    logits, cache = model.apply(
        variables, ids, positions, cache=cache, slot=jnp.int32(0), mask=full_mask, last=True
    )
    vocab = logits.shape[-1]
    seen = jnp.zeros((batch, vocab if sampling.penalised else 0), bool)
    if sampling.penalised:  # transformers skips left pads, not other pad ids
        rows = jnp.broadcast_to(jnp.arange(batch)[:, None], ids.shape)
        seen = seen.at[rows, jnp.where(mask, ids, vocab)].set(True, mode="drop")
    start = _State(
        cache,
        jnp.full((batch,), -1, jnp.int32),
        positions[:, -1],
        jnp.zeros((batch,), bool),
        seen,
        jax.random.PRNGKey(seed),
    )
    token, _, seen, key = _next(sampling, logits, start, start.done, 0)
    state = start._replace(token=token, position=positions[:, -1] + 1, seen=seen, key=key)
    return state, full_mask


@functools.partial(jax.jit, static_argnums=(0, 1), donate_argnums=(3,))
def _step(model, sampling: Sampling, params, state: _State, slot, mask, eos, pad):
    logits, cache = model.apply(
        {"params": params},
        state.token[:, None],
        state.position[:, None],
        cache=state.cache,
        slot=slot,
        mask=mask,
        last=True,
    )
    done = state.done | (state.token[:, None] == eos[None, :]).any(axis=1)
    token, done, seen, key = _next(sampling, logits, state, done, pad)
    return _State(cache, token, state.position + 1, done, seen, key)


@dataclasses.dataclass(frozen=True)
class Generation:
    """What :func:`generate_with_details` returns.

    ``tokens``: ``(B, max_new_tokens)`` ids, pad after a row finished;
    ``new_ids``: each row's ids up to and including the one it stopped at;
    ``stop_reasons``: each row's :class:`StopReason`; ``text``: each row's
    decoded ``new_ids`` when a tokenizer was given; timings in seconds:
    ``compile_s`` (tracing and compiling on this call, 0 when cached),
    ``prefill_s`` and ``decode_s`` (running, without compiling);
    ``prompt_tokens`` (real tokens, pads excluded) and ``decode_tokens``
    (the tokens the decode steps produced, every row counted).
    """

    tokens: np.ndarray
    new_ids: list[list[int]]
    stop_reasons: list[str]
    text: list[str] | None
    compile_s: float
    prefill_s: float
    decode_s: float
    prompt_tokens: int
    decode_tokens: int

    @property
    def prefill_tokens_per_s(self) -> float:
        return self.prompt_tokens / self.prefill_s if self.prefill_s > 0 else float("inf")

    @property
    def decode_tokens_per_s(self) -> float:
        return self.decode_tokens / self.decode_s if self.decode_s > 0 else float("inf")


def _eos_ids(eos_token_id, name: str = "eos_token_id") -> list[int]:
    if eos_token_id is None:
        return []
    ids = np.atleast_1d(np.asarray(eos_token_id))
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ArgumentTypeError(name, "an int or a list of ints", repr(eos_token_id))
    return ids.tolist()


def _left_padded(prompt_ids, pad: int, attention_mask, name: str):
    """``(ids, mask)`` ``(B, T)``: rows of a list left-padded with ``pad``, or an array as given."""
    if isinstance(prompt_ids, (list, tuple)) and any(
        isinstance(row, (list, tuple, np.ndarray)) for row in prompt_ids
    ):
        rows = [np.asarray(row) for row in prompt_ids]
        for i, row in enumerate(rows):
            if row.ndim != 1 or row.size == 0:
                raise InputShapeError(
                    f"{name}[{i}]",
                    f"shape {row.shape}",
                    expected="a non-empty list of token ids",
                )
            if not np.issubdtype(row.dtype, np.integer):
                raise ArgumentTypeError(f"{name}[{i}]", "integer token ids", f"dtype {row.dtype}")
        if attention_mask is not None:
            raise ArgumentTypeError(
                "attention_mask",
                "None when the prompts are a list of rows (they are padded here)",
                "a mask",
            )
        length = max(row.size for row in rows)
        ids = np.full((len(rows), length), pad, np.int64)
        mask = np.zeros((len(rows), length), bool)
        for i, row in enumerate(rows):
            ids[i, length - row.size :] = row
            mask[i, length - row.size :] = True
        return ids, mask
    ids = np.asarray(prompt_ids)
    if ids.ndim != 2 or ids.shape[1] == 0:
        raise InputShapeError(
            name,
            f"shape {ids.shape}",
            "for one prompt use [[id, id, ...]]",
            expected="a 2-D array (batch, length) of token ids with length >= 1, or a list of rows",
        )
    if not np.issubdtype(ids.dtype, np.integer):
        raise ArgumentTypeError(
            name,
            "integer token ids",
            f"dtype {ids.dtype}",
            "cast them first, e.g. np.asarray(prompt_ids, np.int32)",
        )
    if attention_mask is None:
        return ids, np.ones(ids.shape, bool)
    mask = np.asarray(attention_mask)
    if mask.shape != ids.shape:
        raise InputShapeError(
            "attention_mask", f"shape {mask.shape}", expected=f"the prompts' shape {ids.shape}"
        )
    mask = mask != 0
    if not mask[:, -1].all() or (np.diff(mask.astype(np.int8), axis=1) < 0).any():
        raise ArgumentRangeError(
            "attention_mask",
            "left padding: zeros (if any) before the ones of each row, the last column all ones",
            mask.astype(int).tolist(),
        )
    return ids, mask


def generate(model, params, prompt_ids, max_new_tokens: int, **options) -> np.ndarray:
    """The ``(B, max_new_tokens)`` token ids following ``prompt_ids``; rows that stop emit pad.

    Greedy by default: equal to repeatedly running the full model on the
    sequence so far and appending the argmax of the last position's logits,
    which is ``transformers``' ``generate(do_sample=False)``. Every keyword of
    :func:`generate_with_details` is accepted (``eos_token_id``, which defaults
    to the model config's, sampling, ``stop`` strings, ``tokenizer``, ``mesh``).
    """
    return generate_with_details(model, params, prompt_ids, max_new_tokens, **options).tokens


_DEFAULT: Any = object()


def generate_with_details(
    model,
    params,
    prompt_ids,
    max_new_tokens: int,
    *,
    attention_mask=None,
    eos_token_id: int | Sequence[int] | None = _DEFAULT,
    pad_token_id: int | None = None,
    do_sample: bool | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    repetition_penalty: float | None = None,
    seed: int | None = None,
    generation_config: dict | None = None,
    stop: Sequence[str] = (),
    tokenizer=None,
    dtype=None,
    on_tokens: Callable[[np.ndarray], None] | None = None,
    mesh: Mesh | None = None,
    rules: ShardingRules | None = None,
    names: dict[str, str] | None = None,
) -> Generation:
    """Generate after ``prompt_ids``: returns a :class:`Generation` (tokens, stop reasons, timings).

    ``prompt_ids``: a ``(B, T)`` array (with an optional ``attention_mask``,
    left padding), a list of rows of ids of any lengths (left-padded here), or,
    with ``tokenizer`` (a :class:`~composed_lifts.models.Tokenizer`), a string or
    a list of strings. Each row gives the tokens it gives alone.

    Stopping: a row stops after any id of ``eos_token_id`` (an int or a list;
    default: the model config's, which :func:`from_hf` reads from
    ``config.json`` and ``generation_config.json``), after its decoded text
    contains one of ``stop`` (needs ``tokenizer``), or after ``max_new_tokens``;
    then it emits ``pad_token_id`` (default: the first eos id, else 0).

    Choosing tokens: ``do_sample``, ``temperature``, ``top_k``, ``top_p``,
    ``min_p``, ``repetition_penalty`` and ``seed`` as in ``transformers``, over
    ``generation_config`` (the folder's ``generation_config.json`` as a dict,
    see :func:`read_generation_config`); giving a sampling setting turns
    ``do_sample`` on unless it is given. ``dtype`` casts the floating params
    (default: as they are); the cache has the params' dtype.

    ``on_tokens(ids)`` is called with each step's ``(B,)`` new ids (pad for
    finished rows), for streaming. With ``mesh``, the prompts are split over
    ``rules.batch`` (default: the mesh's first axis) and the params placed by
    ``rules`` (the architecture's ``param_axes`` unless ``rules`` names its own).
    ``names`` maps argument names to those errors should use (the CLI's flags).
    """
    names = names or {}
    config = model.config
    check_integer(names.get("max_new_tokens", "max_new_tokens"), max_new_tokens, minimum=1)
    if eos_token_id is _DEFAULT:
        eos_token_id = config.eos_token_id
    eos = _eos_ids(eos_token_id)
    pad = (eos or [0])[0] if pad_token_id is None else check_integer("pad_token_id", pad_token_id)
    defaults = dict(generation_config or {})
    sampling = sampling_from(
        defaults,
        names,
        do_sample=do_sample,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        repetition_penalty=repetition_penalty,
        seed=seed,
    )
    stop = [stop] if isinstance(stop, str) else list(stop)
    if stop and tokenizer is None:
        raise ArgumentTypeError(
            names.get("stop", "stop"),
            "used with a tokenizer (stop strings are matched on decoded text)",
            f"stop={stop!r} and no tokenizer",
            "pass tokenizer=models.Tokenizer.from_folder(folder)",
        )
    prompt_name = names.get("prompt_ids", "prompt_ids")
    if isinstance(prompt_ids, str) or (
        isinstance(prompt_ids, (list, tuple)) and prompt_ids and isinstance(prompt_ids[0], str)
    ):
        if tokenizer is None:
            raise ArgumentTypeError(
                prompt_name,
                "token ids when no tokenizer is given",
                "text",
                "pass tokenizer=models.Tokenizer.from_folder(folder)",
            )
        texts = [prompt_ids] if isinstance(prompt_ids, str) else list(prompt_ids)
        prompt_ids = [tokenizer.encode(text) for text in texts]
    ids, mask = _left_padded(prompt_ids, pad, attention_mask, prompt_name)
    if ids.min() < 0 or ids.max() >= config.vocab_size:
        raise ArgumentRangeError(
            prompt_name,
            f"token ids in [0, vocab_size={config.vocab_size})",
            f"ids from {ids.min()} to {ids.max()}",
        )
    length = ids.shape[1]
    if length + max_new_tokens > config.max_positions:
        raise ArgumentRangeError(
            names.get("max_new_tokens", "max_new_tokens"),
            f"<= {config.max_positions - length} (the model's {config.max_positions} "
            f"positions less the prompt's length {length})",
            max_new_tokens,
            "shorten the prompt or generate fewer tokens",
        )
    if dtype is not None:
        dtype = jnp.dtype(dtype)
        params = jax.tree_util.tree_map(
            lambda p: p.astype(dtype) if jnp.issubdtype(p.dtype, jnp.floating) else p, params
        )
    ids_in, mask_in = jnp.asarray(ids, jnp.int32), jnp.asarray(mask)
    if mesh is not None:
        params, ids_in, mask_in = _placed(model, params, ids_in, mask_in, mesh, rules)
    return _run(
        model.clone(), sampling, params, ids_in, mask_in, max_new_tokens, eos, pad, stop,
        tokenizer, on_tokens, prompt_tokens=int(mask.sum()),
    )  # fmt: skip


def _run(
    model, sampling, params, ids, mask, max_new_tokens, eos, pad, stop, tokenizer, on_tokens,
    *, prompt_tokens: int,
) -> Generation:  # fmt: skip
    batch, length = ids.shape
    max_len = length + max_new_tokens
    eos_in = jnp.asarray(eos or [-1], jnp.int32)  # -1 never matches
    clock = CompileClock()
    with clock:
        start = time.perf_counter()
        state, full_mask = _prefill(model, sampling, max_len, params, ids, mask, sampling.seed)
        first = np.asarray(state.token)
    prefill_s = time.perf_counter() - start - clock.seconds
    tokens = np.full((batch, max_new_tokens), pad, np.int64)
    tokens[:, 0] = first
    reasons: list[str | None] = [None] * batch
    texts = [""] * batch
    if on_tokens is not None:
        on_tokens(first)
    compile_prefill = clock.seconds
    decode_s, steps = 0.0, 0
    done_host = np.zeros(batch, bool)

    def mark(i: int, step: int) -> None:  # row i has emitted tokens[i, : step + 1]
        if reasons[i] is not None:
            return
        if tokens[i, step] in eos:
            reasons[i] = StopReason.EOS
        elif stop:
            texts[i] = tokenizer.decode(tokens[i, : step + 1].tolist())
            if any(s in texts[i] for s in stop):
                reasons[i] = StopReason.STOP_STRING

    for i in range(batch):
        mark(i, 0)
    with clock:
        for step in range(1, max_new_tokens):
            if all(r is not None for r in reasons):
                break
            finished = np.array([r is not None for r in reasons])
            if (finished != done_host).any():  # stop strings, found on the host
                state = state._replace(done=jnp.asarray(finished) | state.done)
                done_host = finished
            before = time.perf_counter()
            state = _step(model, sampling, params, state, jnp.int32(length + step - 1),
                          full_mask, eos_in, pad)  # fmt: skip
            new = np.asarray(state.token)
            decode_s += time.perf_counter() - before
            steps += 1
            tokens[:, step] = new
            for i in range(batch):
                if reasons[i] is None:
                    mark(i, step)
                else:
                    tokens[i, step] = pad
            if on_tokens is not None:
                on_tokens(tokens[:, step])
    compile_step = clock.seconds - compile_prefill
    decode_s = max(decode_s - compile_step, 0.0)
    new_ids = []
    for i in range(batch):
        if reasons[i] is None:
            reasons[i] = StopReason.LENGTH
        row = tokens[i].tolist()
        end = len(row)
        if reasons[i] != StopReason.LENGTH:
            end = next(j for j in range(len(row)) if _stops_at(row, j, eos, stop, tokenizer)) + 1
        new_ids.append(row[:end])
    text = None if tokenizer is None else [tokenizer.decode(row) for row in new_ids]
    return Generation(
        tokens=tokens,
        new_ids=new_ids,
        stop_reasons=[str(r) for r in reasons],
        text=text,
        compile_s=clock.seconds,
        prefill_s=prefill_s,
        decode_s=decode_s,
        prompt_tokens=prompt_tokens,
        decode_tokens=steps * batch,
    )


def _stops_at(row: list[int], j: int, eos, stop, tokenizer) -> bool:
    if row[j] in eos:
        return True
    return bool(stop) and any(s in tokenizer.decode(row[: j + 1]) for s in stop)


def _placed(model, params, prompt, mask, mesh: Mesh, rules: ShardingRules | None):
    """Params placed by ``rules`` on ``mesh`` and the prompts split over its batch axis."""
    rules = default_rules(mesh, rules, param_axes(model.config))
    abstract = jax.eval_shape(lambda p: p, {"params": params})
    shardings = param_shardings(abstract, mesh, rules, stacks=STACKS)["params"]
    placed = jax.device_put(params, shardings)
    return placed, shard_batch(prompt, mesh, rules), shard_batch(mask, mesh, rules)
