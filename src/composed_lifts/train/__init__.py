"""Fine-tuning on scanned stacks: full and LoRA, exact against PyTorch."""

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
from ._step import Trainer as Trainer
from ._step import TrainState as TrainState
from ._step import make_trainer as make_trainer
from ._peft import from_peft as from_peft
from ._peft import to_hf_merged as to_hf_merged
from ._peft import to_peft as to_peft
