"""The causal language-model loss with a padding mask, as ``transformers`` computes it."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["causal_lm_loss"]


def causal_lm_loss(
    logits: jax.Array, ids: jax.Array, mask: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """``(sum of token losses, number of tokens)``: token ``t + 1`` predicted from ``logits[:, t]``.

    A target counts when ``mask`` is 1 at its position (``labels = ids`` with ``-100``
    where the mask is 0, as ``transformers`` shifts them). Cross-entropy in float32.
    The mean loss is ``sum / count``; summing first lets micro-batches add up exactly.
    """
    logits = logits[:, :-1].astype(jnp.float32)
    targets = ids[:, 1:]
    weights = mask[:, 1:].astype(jnp.float32)
    logz = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    return jnp.sum((logz - picked) * weights), jnp.sum(weights)
