"""The training step: ``trainer.step(state, batch) -> (state, metrics)``, pure and compiled once.

A :class:`Trainer` is optax's idea applied to a whole step: a pair of pure functions,
``init(params, rng) -> TrainState`` and ``step(state, batch) -> (state, metrics)``,
made for one model and one :class:`TrainOptions` by :func:`make_trainer`. A step is

    for each of the K micro-batches (rows k, k + K, ... of the batch):
        grads += d/dparams sum(token losses of the micro-batch) / (tokens of the whole batch)
    grads = clip(grads); params = AdamW(params, grads, lr(step))

so the loss is the mean over every unmasked token of the step's batch (the same loss
and gradient as one batch K times larger). With LoRA, only the adapters are trained
and the base params ride along in the state unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .._errors import ArgumentTypeError, InputShapeError
from .._options import Remat
from .._sharding import ShardingRules, default_rules, param_shardings
from ._lora import init_lora, lora_scope, with_lora
from ._loss import causal_lm_loss
from ._optimizer import make_optimizer
from ._options import LoraOptions, TrainOptions

__all__ = ["TrainState", "Trainer", "make_trainer"]


class TrainState(struct.PyTreeNode):
    """Everything a step reads and writes.

    ``params``: the trained params (the whole model, or the LoRA adapters); ``frozen``:
    the base params under LoRA (``None`` otherwise); ``opt_state``: optax's state of
    ``params``; ``step``: optimizer steps done (int32); ``rng``: the key data (uint32[2])
    a step splits for stochastic layers (dropout), advanced every step.
    """

    step: jax.Array
    params: Any
    frozen: Any
    opt_state: Any
    rng: jax.Array


class Trainer(NamedTuple):
    """``init(params, rng=0, lora_params=None) -> TrainState``; ``step(state, batch)``.

    ``batch`` is ``{"ids": int (B, T), "mask": (B, T)}`` (mask 1 for real tokens, 0 for
    padding at the end); ``B`` is a multiple of ``options.accumulate``. ``step`` returns
    the new state and ``{"loss", "grad_norm", "learning_rate", "tokens"}`` (the gradient's
    norm before clipping, the rate this step used).
    """

    init: Any
    step: Any
    model: nn.Module
    options: TrainOptions
    lora: LoraOptions | None
    optimizer: optax.GradientTransformation
    mesh: Mesh | None
    rules: ShardingRules | None


def _with_remat(model: nn.Module, remat: Remat) -> nn.Module:
    if getattr(model, "remat", Remat.NONE) is remat:
        return model
    if not any(f.name == "remat" for f in dataclasses.fields(model)):
        raise ArgumentTypeError(
            "TrainOptions.remat",
            "Remat.NONE for a model without a 'remat' field",
            f"{remat} for {type(model).__name__}",
            "give the model a remat field (as models.GPT2 and models.Llama have)",
        )
    return model.clone(remat=remat)


def _key_data(rng) -> jax.Array:
    if isinstance(rng, int):
        rng = jax.random.PRNGKey(rng)
    if jnp.issubdtype(jnp.asarray(rng).dtype, jax.dtypes.prng_key):
        rng = jax.random.key_data(rng)
    return jnp.asarray(rng, jnp.uint32)


def make_trainer(
    model: nn.Module,
    options: TrainOptions,
    *,
    lora: LoraOptions | None = None,
    mesh: Mesh | None = None,
    rules: ShardingRules | None = None,
) -> Trainer:
    """The pure training step of ``model`` (any Linen LM: ``apply({"params": p}, ids)`` ->
    logits ``(B, T, V)``), compiled once per batch shape.

    With ``mesh``, params are placed by ``rules`` (default: data parallel over the mesh's
    first axis, the model's own ``param_axes`` naming its axes; map ``embed`` to the data
    axis too for fully sharded params), and the batch is split over ``rules.batch``.
    """
    if not isinstance(options, TrainOptions):
        raise ArgumentTypeError("options", "a TrainOptions", repr(options))
    if lora is not None and not isinstance(lora, LoraOptions):
        raise ArgumentTypeError("lora", "a LoraOptions or None", repr(lora))
    model = _with_remat(model, options.remat)
    tx = make_optimizer(options)
    k = options.accumulate
    if mesh is not None:
        from ..models import param_axes

        config = getattr(model, "config", None)
        rules = default_rules(mesh, rules, param_axes(config) if config is not None else ())

    def loss_sum(trained, frozen, ids, mask, rng):
        params = with_lora(frozen, trained) if lora is not None else trained
        with lora_scope(lora):
            logits = model.apply({"params": params}, ids, rngs={"dropout": rng})
        return causal_lm_loss(logits, ids, mask)

    def step(state: TrainState, batch):
        ids, mask = jnp.asarray(batch["ids"]), jnp.asarray(batch["mask"])
        rng, step_rng = jax.random.split(jax.random.wrap_key_data(state.rng))
        tokens = jnp.sum(mask[:, 1:].astype(jnp.float32))
        denom = jnp.maximum(tokens, 1.0)

        def micro(grads_loss, xs):
            grads, total = grads_loss
            m_ids, m_mask, i = xs

            def scaled(trained):
                s, _ = loss_sum(trained, state.frozen, m_ids, m_mask, jax.random.fold_in(step_rng, i))
                return s / denom, s

            (_, s), g = jax.value_and_grad(scaled, has_aux=True)(state.params)
            return (jax.tree_util.tree_map(jnp.add, grads, g), total + s), None

        zeros = jax.tree_util.tree_map(jnp.zeros_like, state.params)
        if k == 1:
            (grads, total), _ = micro((zeros, jnp.float32(0)), (ids, mask, 0))
        else:
            split = lambda a: jnp.swapaxes(a.reshape(a.shape[0] // k, k, *a.shape[1:]), 0, 1)  # noqa: E731
            xs = (split(ids), split(mask), jnp.arange(k))
            (grads, total), _ = jax.lax.scan(micro, (zeros, jnp.float32(0)), xs)
        grad_norm = optax.global_norm(grads)
        lr = make_lr(state.opt_state)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new = state.replace(
            step=state.step + 1, params=params, opt_state=opt_state, rng=jax.random.key_data(rng)
        )
        metrics = {"loss": total / denom, "grad_norm": grad_norm, "learning_rate": lr, "tokens": tokens}
        return new, metrics

    from ._optimizer import cosine_schedule_with_warmup

    schedule = cosine_schedule_with_warmup(options.learning_rate, options.warmup_steps, options.steps)

    def make_lr(opt_state):
        counts = [
            s.count for s in jax.tree_util.tree_leaves(
                opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByScheduleState)
            ) if isinstance(s, optax.ScaleByScheduleState)
        ]
        return schedule(counts[0])

    shardings = None
    if mesh is not None:
        assert rules is not None
        replicated = NamedSharding(mesh, P())
        batch_sharding = NamedSharding(mesh, P(rules.batch))

    def place_params(tree):
        if mesh is None:
            return jax.tree_util.tree_map(jnp.asarray, tree)
        from ..models import STACKS

        abstract = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)
        s = param_shardings({"params": abstract}, mesh, rules, stacks=STACKS)["params"]
        return jax.device_put(tree, s)

    def state_shardings(state: TrainState):
        get = lambda x: x.sharding  # noqa: E731
        return jax.tree_util.tree_map(get, state)

    def init(params, rng=0, lora_params=None) -> TrainState:
        key = _key_data(rng)
        frozen = None
        if lora is not None:
            frozen = place_params(params)
            if lora_params is None:
                lora_params = init_lora(params, lora, jax.random.fold_in(jax.random.wrap_key_data(key), 1))
            trained = place_params(lora_params)
        else:
            trained = place_params(params)
        if mesh is None:
            opt_state = tx.init(trained)
        else:
            param_s = jax.tree_util.tree_map(lambda x: x.sharding, trained)
            abstract_opt = jax.eval_shape(tx.init, trained)
            opt_s = optax.tree_map_params(
                tx, lambda _, s: s, abstract_opt, param_s,
                transform_non_params=lambda _: replicated,
            )
            opt_state = jax.jit(tx.init, out_shardings=opt_s)(trained)
            key = jax.device_put(key, replicated)
        step0 = jnp.int32(0) if mesh is None else jax.device_put(jnp.int32(0), replicated)
        return TrainState(step=step0, params=trained, frozen=frozen, opt_state=opt_state, rng=key)

    if mesh is None:
        jitted = jax.jit(step, donate_argnums=0)

        def run(state, batch):
            _check_batch(batch, k)
            return jitted(state, batch)
    else:
        cache: dict = {}

        def run(state, batch):
            _check_batch(batch, k)
            key = jax.tree_util.tree_structure(state)
            if key not in cache:
                ss = state_shardings(state)
                cache[key] = jax.jit(
                    step,
                    in_shardings=(ss, {"ids": batch_sharding, "mask": batch_sharding}),
                    out_shardings=(ss, replicated),
                    donate_argnums=0,
                )
            return cache[key](state, batch)

    return Trainer(init, run, model, options, lora, tx, mesh, rules)


def _check_batch(batch, k: int) -> None:
    if not isinstance(batch, dict) or set(batch) != {"ids", "mask"}:
        raise ArgumentTypeError(
            "batch", "a dict {'ids': (B, T) ints, 'mask': (B, T)}", repr(type(batch).__name__)
        )
    shape = tuple(jnp.shape(batch["ids"]))
    if len(shape) != 2 or tuple(jnp.shape(batch["mask"])) != shape:
        raise InputShapeError(
            "batch", f"ids {shape} and mask {tuple(jnp.shape(batch['mask']))}",
            expected="ids and mask of one shape (batch, length)",
        )
    if shape[0] % k:
        raise InputShapeError(
            "batch['ids']", f"{shape[0]} rows", f"give a multiple of accumulate={k} rows",
            expected=f"a multiple of TrainOptions.accumulate={k} rows",
        )
