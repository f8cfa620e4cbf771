"""Choosing the next token: ``transformers``' logits processors, in its order, then argmax or a draw.

:class:`Sampling` holds the settings, merged the way ``transformers`` merges a
``generate`` call's keyword arguments over the folder's ``generation_config.json``
over its own defaults (``temperature`` 1.0, ``top_k`` 50, ``top_p`` 1.0,
``repetition_penalty`` 1.0, ``do_sample`` False). :func:`process_scores` is the
processor list ``GenerationMixin._get_logits_processor`` builds from them:

1. repetition penalty (greedy too): each id seen in the row (prompt, left pads
   excluded, and generated) has its score ``s`` replaced by ``s * p`` if ``s < 0``
   else ``s / p``;
2. only when sampling: temperature ``s / t``; top-k (scores below the k-th
   largest removed, ties kept); top-p (sorted ascending, scores whose cumulative
   probability is ``<= 1 - top_p`` removed, the top one always kept); min-p
   (probabilities below ``min_p`` times the largest removed).

Removed scores become ``-inf``. Greedy takes the argmax; sampling draws from the
softmax (``jax.random.categorical``), one key per step split from ``seed``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from .._arguments import check_integer, check_seed
from ..errors import ArgumentRangeError, ArgumentTypeError

__all__ = [
    "Sampling",
    "candidates",
    "choose_tokens",
    "next_tokens",
    "process_scores",
    "sampling_from",
]


@dataclasses.dataclass(frozen=True)
class Sampling:
    """How the next token is chosen (``transformers``' names and meanings).

    ``temperature == 0`` means greedy (as in llama.cpp). ``top_k`` 0 or ``None``,
    ``top_p`` 1.0, ``min_p`` ``None`` and ``repetition_penalty`` 1.0 turn each off.
    """

    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = 50
    top_p: float = 1.0
    min_p: float | None = None
    repetition_penalty: float = 1.0
    seed: int = 0

    @property
    def sampling(self) -> bool:
        return self.do_sample and self.temperature != 0.0

    @property
    def penalised(self) -> bool:
        return self.repetition_penalty != 1.0


def _number(name: str, value, *, low: float, high: float | None, low_open: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(name, "a number", type(value).__name__, f"pass e.g. {name}=0.7")
    value = float(value)
    bad_low = value <= low if low_open else value < low
    if bad_low or (high is not None and value > high) or value != value:
        left = "(" if low_open else "["
        right = f"{high}]" if high is not None else "inf)"
        raise ArgumentRangeError(name, f"in {left}{low}, {right}", value)
    return value


def sampling_from(defaults: dict, names: dict[str, str] | None = None, **given) -> Sampling:
    """:class:`Sampling` from ``given`` (``None``: not given) over ``defaults`` (``generation_config.json``).

    ``do_sample`` not given is the defaults' unless a sampling setting
    (``temperature``, ``top_k``, ``top_p``, ``min_p``) is given explicitly. Each
    value is checked; ``names`` maps argument names to the names errors use
    (``{"top_p": "--top-p"}`` in the CLI).
    """
    names = names or {}

    def name(key: str) -> str:
        return names.get(key, key)

    merged = {key: value for key, value in defaults.items() if value is not None}
    explicit = {key: value for key, value in given.items() if value is not None}
    merged.update(explicit)
    if "do_sample" not in explicit and {"temperature", "top_k", "top_p", "min_p"} & set(explicit):
        merged["do_sample"] = True
    base = Sampling()
    temperature = _number(
        name("temperature"), merged.get("temperature", 1.0), low=0.0, high=None, low_open=False
    )
    top_p = _number(name("top_p"), merged.get("top_p", 1.0), low=0.0, high=1.0, low_open=True)
    min_p = merged.get("min_p")
    if min_p is not None:
        min_p = _number(name("min_p"), min_p, low=0.0, high=1.0, low_open=False)
    penalty = _number(
        name("repetition_penalty"),
        merged.get("repetition_penalty", 1.0),
        low=0.0,
        high=None,
        low_open=True,
    )
    top_k = merged.get("top_k", base.top_k)
    if top_k is not None:
        top_k = check_integer(name("top_k"), top_k, minimum=0)
    seed = check_seed(merged.get("seed", 0), name("seed"))
    do_sample = merged.get("do_sample", False)
    if not isinstance(do_sample, bool):
        raise ArgumentTypeError(name("do_sample"), "True or False", repr(do_sample))
    return Sampling(do_sample, temperature, top_k or None, top_p, min_p, penalty, seed)


def process_scores(sampling: Sampling, scores: jax.Array, seen: jax.Array | None) -> jax.Array:
    """``transformers``' processed scores ``(B, V)`` float32 (see the module docstring)."""
    scores = _penalised(sampling, scores, seen)
    if not sampling.sampling:
        return scores
    if sampling.temperature != 1.0:
        scores = scores / sampling.temperature
    if sampling.top_k is not None and sampling.top_k < scores.shape[-1]:
        kth = jax.lax.top_k(scores, sampling.top_k)[0][:, -1:]
        scores = jnp.where(scores < kth, -jnp.inf, scores)
    if sampling.top_p < 1.0:
        order = jnp.argsort(scores, axis=-1)  # ascending
        ranked = jnp.take_along_axis(scores, order, axis=-1)
        cumulative = jnp.cumsum(jax.nn.softmax(ranked, axis=-1), axis=-1)
        drop = cumulative <= 1.0 - sampling.top_p
        drop = drop.at[:, -1].set(False)  # min_tokens_to_keep = 1
        rows = jnp.arange(scores.shape[0])[:, None]
        removed = jnp.zeros_like(drop).at[rows, order].set(drop)
        scores = jnp.where(removed, -jnp.inf, scores)
    if sampling.min_p is not None:
        probs = jax.nn.softmax(scores, axis=-1)
        floor = sampling.min_p * jnp.max(probs, axis=-1, keepdims=True)
        scores = jnp.where(probs < floor, -jnp.inf, scores)
    return scores


def _penalised(sampling: Sampling, scores: jax.Array, seen: jax.Array | None) -> jax.Array:
    scores = scores.astype(jnp.float32)
    if sampling.penalised and seen is not None:
        p = sampling.repetition_penalty
        scores = jnp.where(seen, jnp.where(scores < 0, scores * p, scores / p), scores)
    return scores


def candidates(sampling: Sampling, scores: jax.Array, seen: jax.Array | None):
    """With sampling and ``top_k`` below the vocabulary: the top-k tokens' processed scores.

    Returns ``(values (B, k), ids (B, k))``: :func:`process_scores` at ``ids``
    (``-inf`` where top-p or min-p removes one); every other token's processed
    score is ``-inf``. The same distribution without sorting or drawing over the
    whole vocabulary (ties at the k-th score are broken by index, where
    ``transformers`` keeps them all).
    """
    scores = _penalised(sampling, scores, seen)
    if sampling.temperature != 1.0:
        scores = scores / sampling.temperature
    assert sampling.top_k is not None
    values, ids = jax.lax.top_k(scores, sampling.top_k)  # descending
    if sampling.top_p < 1.0:
        probs = jax.nn.softmax(values, axis=-1)
        below = jnp.cumsum(probs[:, ::-1], axis=-1)[:, ::-1]  # ascending cumsum, per rank
        drop = below <= 1.0 - sampling.top_p
        drop = drop.at[:, 0].set(False)  # min_tokens_to_keep = 1
        values = jnp.where(drop, -jnp.inf, values)
    if sampling.min_p is not None:
        probs = jax.nn.softmax(values, axis=-1)
        values = jnp.where(probs < sampling.min_p * probs[:, :1], -jnp.inf, values)
    return values, ids


def next_tokens(sampling: Sampling, scores: jax.Array, seen: jax.Array | None, key: jax.Array):
    """Process ``scores`` ``(B, V)`` and choose each row's next token (the fast path when it can)."""
    if sampling.sampling and sampling.top_k is not None and sampling.top_k < scores.shape[-1]:
        values, ids = candidates(sampling, scores, seen)
        pick = jax.random.categorical(key, values, axis=-1)
        return jnp.take_along_axis(ids, pick[:, None], axis=-1)[:, 0].astype(jnp.int32)
    return choose_tokens(sampling, process_scores(sampling, scores, seen), key)


def choose_tokens(sampling: Sampling, scores: jax.Array, key: jax.Array) -> jax.Array:
    """The next token of each row: argmax of the processed scores, or a draw from their softmax."""
    if sampling.sampling:
        return jax.random.categorical(key, scores, axis=-1).astype(jnp.int32)
    return jnp.argmax(scores, axis=-1).astype(jnp.int32)
