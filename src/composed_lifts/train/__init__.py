"""Fine-tuning on scanned stacks: full and LoRA, exact against PyTorch, resumable bit for bit.

- :func:`make_trainer` ``(model, TrainOptions(...), lora=LoraOptions(...), mesh=...)`` gives a
  :class:`Trainer`: pure ``init(params, rng) -> TrainState`` and
  ``step(state, batch) -> (state, metrics)``, compiled once.
- :func:`train_loop` runs steps over :func:`token_windows` data, saving the state with
  :func:`save_train_state` (:func:`load_train_state` restores it into any layout).
- :func:`to_peft` / :func:`from_peft` write and read PEFT adapter folders;
  :func:`to_hf_merged` writes the adapters merged into a Hugging Face folder.
"""

from ._data import TokenWindows as TokenWindows
from ._data import read_documents as read_documents
from ._data import token_windows as token_windows
from ._loop import LoopResult as LoopResult
from ._loop import train_loop as train_loop
from ._lora import init_lora as init_lora
from ._lora import lora_modules as lora_modules
from ._lora import lora_scope as lora_scope
from ._lora import merge_lora as merge_lora
from ._lora import with_lora as with_lora
from ._loss import causal_lm_loss as causal_lm_loss
from ._optimizer import clip_grad_norm_like_torch as clip_grad_norm_like_torch
from ._optimizer import cosine_schedule_with_warmup as cosine_schedule_with_warmup
from ._optimizer import make_optimizer as make_optimizer
from ._options import LoraOptions as LoraOptions
from ._options import TrainOptions as TrainOptions
from ._peft import from_peft as from_peft
from ._peft import to_hf_merged as to_hf_merged
from ._peft import to_peft as to_peft
from ._state_io import load_train_state as load_train_state
from ._state_io import save_train_state as save_train_state
from ._step import Trainer as Trainer
from ._step import TrainState as TrainState
from ._step import make_trainer as make_trainer

__all__ = [
    "LoopResult",
    "LoraOptions",
    "TokenWindows",
    "TrainOptions",
    "TrainState",
    "Trainer",
    "causal_lm_loss",
    "clip_grad_norm_like_torch",
    "cosine_schedule_with_warmup",
    "from_peft",
    "init_lora",
    "load_train_state",
    "lora_modules",
    "lora_scope",
    "make_optimizer",
    "make_trainer",
    "merge_lora",
    "read_documents",
    "save_train_state",
    "to_hf_merged",
    "to_peft",
    "token_windows",
    "train_loop",
    "with_lora",
]
