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
import optax  # type: ignore[import-untyped]
from flax import struct
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .._options import Remat
from .._sharding import ShardingRules, default_rules, param_shardings
from ..errors import ArgumentTypeError, InputShapeError
from ._lora import init_lora, lora_scope, with_lora
from ._loss import causal_lm_loss
from ._optimizer import cosine_schedule_with_warmup, make_optimizer
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
    elif rules is not None:
        raise ArgumentTypeError("rules", "None without a mesh", repr(rules), "pass mesh= too")

    schedule = cosine_schedule_with_warmup(
        options.learning_rate, options.warmup_steps, options.steps
    )

    def loss_sum(trained, frozen, ids, mask, rng):
        params = with_lora(frozen, trained) if lora is not None else trained
        with lora_scope(lora):
            logits = model.apply({"params": params}, ids, rngs={"dropout": rng})
        return causal_lm_loss(logits, ids, mask)

    def step(state: TrainState, batch):
        ids, mask = batch["ids"], batch["mask"]
        rng, step_rng = jax.random.split(jax.random.wrap_key_data(state.rng))
        tokens = jnp.sum(mask[:, 1:].astype(jnp.float32))
        denom = jnp.maximum(tokens, 1.0)

        def micro(carry, xs):
            grads, total = carry
            m_ids, m_mask, i = xs

            def scaled(trained):
                rng_i = jax.random.fold_in(step_rng, i)
                s, _ = loss_sum(trained, state.frozen, m_ids, m_mask, rng_i)
                return s / denom, s

            (_, s), g = jax.value_and_grad(scaled, has_aux=True)(state.params)
            return (jax.tree_util.tree_map(jnp.add, grads, g), total + s), None

        zeros = jax.tree_util.tree_map(jnp.zeros_like, state.params)
        if k == 1:
            (grads, total), _ = micro((zeros, jnp.float32(0)), (ids, mask, 0))
        else:  # micro-batch j is rows j, j + k, ... (spread evenly over a data-parallel mesh)
            xs = (_micro_batches(ids, k), _micro_batches(mask, k), jnp.arange(k))
            (grads, total), _ = jax.lax.scan(micro, (zeros, jnp.float32(0)), xs)
        lr = schedule(_schedule_count(state.opt_state))
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        new = state.replace(
            step=state.step + 1,
            params=optax.apply_updates(state.params, updates),
            opt_state=opt_state,
            rng=jax.random.key_data(rng),
        )
        metrics = {
            "loss": total / denom,
            "grad_norm": optax.tree.norm(grads),
            "learning_rate": lr,
            "tokens": tokens,
        }
        return new, metrics

    placement = _Placement(mesh, rules, tx)

    def init(params, rng=0, lora_params=None) -> TrainState:
        key = _key_data(rng)
        frozen = None
        trained = params
        if lora is not None:
            frozen = placement.params(params)
            if lora_params is None:
                lora_key = jax.random.fold_in(jax.random.wrap_key_data(key), 1)
                lora_params = init_lora(params, lora, lora_key)
            trained = lora_params
        trained = placement.params(trained)
        return TrainState(
            step=placement.scalar(jnp.int32(0)),
            params=trained,
            frozen=frozen,
            opt_state=placement.opt_state(trained),
            rng=placement.scalar(key),
        )

    run = _CompiledStep(step, k, placement)
    return Trainer(init, run, model, options, lora, tx, mesh, rules)


def _check_batch(batch, k: int) -> None:
    if not isinstance(batch, dict) or set(batch) != {"ids", "mask"}:
        raise ArgumentTypeError(
            "batch", "a dict {'ids': (B, T) ints, 'mask': (B, T)}", repr(type(batch).__name__)
        )
    shape = tuple(jnp.shape(batch["ids"]))
    if len(shape) != 2 or tuple(jnp.shape(batch["mask"])) != shape:
        raise InputShapeError(
            "batch",
            f"ids {shape} and mask {tuple(jnp.shape(batch['mask']))}",
            expected="ids and mask of one shape (batch, length)",
        )
    if shape[0] % k:
        raise InputShapeError(
            "batch['ids']",
            f"{shape[0]} rows",
            f"give a multiple of accumulate={k} rows",
            expected=f"a multiple of TrainOptions.accumulate={k} rows",
        )


def _micro_batches(a: jax.Array, k: int) -> jax.Array:
    """``(B, ...)`` -> ``(k, B // k, ...)``, micro-batch ``j`` holding rows ``j, j + k, ...``."""
    return jnp.swapaxes(a.reshape(a.shape[0] // k, k, *a.shape[1:]), 0, 1)


def _schedule_count(opt_state) -> jax.Array:
    """The update count of optax's schedule state (the step the learning rate is taken at)."""
    is_state = lambda x: isinstance(x, optax.ScaleByScheduleState)  # noqa: E731
    found = [s for s in jax.tree_util.tree_leaves(opt_state, is_leaf=is_state) if is_state(s)]
    return found[0].count


class _Placement:
    """Where the state lives: one device (``mesh=None``), or the mesh by the rules."""

    def __init__(self, mesh: Mesh | None, rules: ShardingRules | None, tx):
        self.mesh, self.rules, self.tx = mesh, rules, tx

    def params(self, tree):
        if self.mesh is None:  # a copy: the step donates the state, the caller keeps its params
            return jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), tree)
        from ..models import STACKS

        abstract = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)
        assert self.rules is not None
        shardings = param_shardings({"params": abstract}, self.mesh, self.rules, stacks=STACKS)
        # a copy, as above (device_put may alias a device's shard to the source, may_alias or not)
        copied = jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), tree)
        return jax.device_put(copied, shardings["params"])

    def scalar(self, x):
        return x if self.mesh is None else jax.device_put(x, self.replicated)

    @property
    def replicated(self):
        assert self.mesh is not None
        return NamedSharding(self.mesh, P())

    def batch(self):
        assert self.mesh is not None and self.rules is not None
        return NamedSharding(self.mesh, P(self.rules.batch))

    def opt_state(self, trained):
        if self.mesh is None:
            return self.tx.init(trained)
        shardings = optax.tree_map_params(
            self.tx,
            lambda _, s: s,
            jax.eval_shape(self.tx.init, trained),
            jax.tree_util.tree_map(lambda x: x.sharding, trained),
            transform_non_params=lambda _: self.replicated,
        )
        return jax.jit(self.tx.init, out_shardings=shardings)(trained)


class _CompiledStep:
    """``step(state, batch)``: checked, then the one compiled program (the state donated)."""

    def __init__(self, step, k: int, placement: _Placement):
        self.k, self.placement = k, placement
        self.step = step
        self.jitted: Any = None
        if placement.mesh is None:
            self.jitted = jax.jit(step, donate_argnums=0)

    def __call__(self, state: TrainState, batch):
        _check_batch(batch, self.k)
        if self.jitted is None:  # shardings of the state as placed by init
            p = self.placement
            state_shardings = jax.tree_util.tree_map(lambda x: x.sharding, state)
            batch_shardings = {"ids": p.batch(), "mask": p.batch()}
            self.jitted = jax.jit(
                self.step,
                in_shardings=(state_shardings, batch_shardings),
                out_shardings=(state_shardings, p.replicated),
                donate_argnums=0,
            )
        return self.jitted(state, batch)
