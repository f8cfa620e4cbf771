"""Typed options of a fine-tuning run: the optimizer and schedule, and LoRA adapters."""

from __future__ import annotations

import dataclasses
import math

from .._arguments import check_integer
from .._options import Remat
from ..errors import ArgumentRangeError, ArgumentTypeError

__all__ = ["LoraOptions", "TrainOptions"]


def _positive_float(name: str, value, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(name, "a real number", repr(value))
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ArgumentRangeError(name, ">= 0" if allow_zero else "> 0", value)
    return value


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """One optimizer step of causal-LM fine-tuning, as ``torch.optim.AdamW`` and
    ``transformers.get_cosine_schedule_with_warmup`` do it.

    Attributes:
      steps: optimizer steps of the whole run (the cosine decay reaches 0 there).
      learning_rate: the peak learning rate, reached after ``warmup_steps``.
      warmup_steps: linear warm-up from 0 (the learning rate of step ``k < W`` is ``lr * k / W``).
      weight_decay: decoupled weight decay on every trained param (torch's default 0.01).
      b1, b2, eps: Adam's moments and epsilon (torch's defaults).
      max_grad_norm: clip the global gradient norm as ``torch.nn.utils.clip_grad_norm_``
        (``g *= min(max / (norm + 1e-6), 1)``); ``None``: no clipping.
      accumulate: micro-batches per step; the loss is the mean over every unmasked token of
        the step's batch, so ``accumulate=K`` with batch ``B`` equals batch ``K * B``.
      remat: rematerialise each layer with this policy (``StackOptions.remat``).
    """

    steps: int
    learning_rate: float = 1e-4
    warmup_steps: int = 0
    weight_decay: float = 0.01
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    max_grad_norm: float | None = 1.0
    accumulate: int = 1
    remat: Remat = Remat.NONE

    def __post_init__(self):
        check_integer("TrainOptions.steps", self.steps, minimum=1)
        check_integer("TrainOptions.warmup_steps", self.warmup_steps, minimum=0)
        check_integer("TrainOptions.accumulate", self.accumulate, minimum=1)
        _positive_float("TrainOptions.learning_rate", self.learning_rate, allow_zero=True)
        _positive_float("TrainOptions.weight_decay", self.weight_decay, allow_zero=True)
        _positive_float("TrainOptions.eps", self.eps)
        for name in ("b1", "b2"):
            value = _positive_float(f"TrainOptions.{name}", getattr(self, name), allow_zero=True)
            if value >= 1:
                raise ArgumentRangeError(f"TrainOptions.{name}", "in [0, 1)", value)
        if self.max_grad_norm is not None:
            _positive_float("TrainOptions.max_grad_norm", self.max_grad_norm)
        if not isinstance(self.remat, Remat):
            raise ArgumentTypeError("TrainOptions.remat", "a Remat", repr(self.remat))


@dataclasses.dataclass(frozen=True)
class LoraOptions:
    """LoRA adapters as PEFT's ``LoraConfig``: ``y = W x + (alpha / r) * B A x``, base frozen.

    Attributes:
      rank: ``r``, the adapters' inner width.
      alpha: ``lora_alpha``; the scaling is ``alpha / rank`` (``alpha / sqrt(rank)`` with
        ``rslora``). Defaults to ``rank`` (scaling 1).
      targets: projection names, matched as PEFT's ``target_modules`` against each layer's
        module path (``q_proj`` matches ``self_attn.q_proj``; GPT-2's ``c_proj`` matches
        ``attn.c_proj`` and ``mlp.c_proj``, ``attn.c_proj`` only the first).
      rslora: rank-stabilised scaling (PEFT's ``use_rslora``).
    """

    rank: int
    alpha: float | None = None
    targets: tuple[str, ...] = ("q_proj", "v_proj")
    rslora: bool = False

    def __post_init__(self):
        check_integer("LoraOptions.rank", self.rank, minimum=1)
        if self.alpha is not None:
            _positive_float("LoraOptions.alpha", self.alpha)
        targets = (self.targets,) if isinstance(self.targets, str) else tuple(self.targets)
        if not targets or not all(isinstance(t, str) and t.strip(".") for t in targets):
            raise ArgumentTypeError(
                "LoraOptions.targets", "a non-empty sequence of module names", repr(self.targets)
            )
        object.__setattr__(self, "targets", targets)

    @property
    def scaling(self) -> float:
        """The factor on ``B A x``: ``alpha / r`` (``alpha / sqrt(r)`` with ``rslora``)."""
        alpha = float(self.rank if self.alpha is None else self.alpha)
        return alpha / (math.sqrt(self.rank) if self.rslora else self.rank)
