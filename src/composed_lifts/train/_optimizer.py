"""The optimizer: torch's AdamW and gradient clipping, and transformers' cosine schedule, in optax.

``optax.adamw`` computes torch's ``AdamW`` update (same moments, bias corrections,
decoupled decay); only the default decay differs (optax 1e-4, torch 1e-2), so the
decay is always passed. Clipping is not ``optax.clip_by_global_norm``, which leaves
gradients below the threshold alone and otherwise divides by the norm: torch's
``clip_grad_norm_`` always multiplies by ``min(max / (norm + 1e-6), 1)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax  # type: ignore[import-untyped]

from ._options import TrainOptions

__all__ = ["clip_grad_norm_like_torch", "cosine_schedule_with_warmup", "make_optimizer"]


def clip_grad_norm_like_torch(max_norm: float) -> optax.GradientTransformation:
    """``torch.nn.utils.clip_grad_norm_``: ``g * min(max_norm / (||g|| + 1e-6), 1)``.

    ``||g||`` is the 2-norm of all leaves together (torch's norm of the per-tensor norms).
    """

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None):
        del params
        leaves = jax.tree_util.tree_leaves(updates)
        norms = jnp.stack([jnp.linalg.norm(g.ravel()) for g in leaves])
        total = jnp.linalg.norm(norms)
        coef = jnp.minimum(max_norm / (total + 1e-6), 1.0)
        return jax.tree_util.tree_map(lambda g: g * coef.astype(g.dtype), updates), state

    return optax.GradientTransformation(init, update)


def cosine_schedule_with_warmup(peak: float, warmup: int, total: int) -> optax.Schedule:
    """``transformers.get_cosine_schedule_with_warmup``: the learning rate of update ``k``
    (from 0) is ``peak * k / W`` for ``k < W``, then
    ``peak * max(0, (1 + cos(pi * (k - W) / max(1, total - W))) / 2)``."""

    def schedule(count):
        k = jnp.asarray(count, jnp.float32)
        warm = k / max(1, warmup)
        progress = (k - warmup) / max(1, total - warmup)
        decay = jnp.maximum(0.0, 0.5 * (1.0 + jnp.cos(jnp.pi * progress)))
        return peak * jnp.where(k < warmup, warm, decay)

    return schedule


def make_optimizer(options: TrainOptions) -> optax.GradientTransformation:
    """Clipping (if any), then AdamW with the warm-up + cosine schedule, as the torch loop."""
    schedule = cosine_schedule_with_warmup(
        options.learning_rate, options.warmup_steps, options.steps
    )
    adamw = optax.adamw(
        schedule,
        b1=options.b1,
        b2=options.b2,
        eps=options.eps,
        weight_decay=options.weight_decay,
    )
    if options.max_grad_norm is None:
        return adamw
    return optax.chain(clip_grad_norm_like_torch(options.max_grad_norm), adamw)
