"""The torch reference of a fine-tuning run: ``transformers`` model, ``torch.optim.AdamW``,
``clip_grad_norm_``, ``get_cosine_schedule_with_warmup``, token-weighted accumulation.

Micro-batch k of a step is rows ``k, k + K, ...`` of its batch, the loss of a step the
mean over every unmasked target token of the batch (labels = ids, -100 where the mask is 0).
"""

from __future__ import annotations

import numpy as np
import torch
import transformers


def torch_finetune(
    model,
    batches,
    *,
    steps: int,
    lr: float,
    warmup: int,
    accumulate: int = 1,
    max_grad_norm: float | None = 1.0,
    weight_decay: float = 0.01,
    params=None,
) -> list[float]:
    """Train ``model`` in place on ``batches`` (``[(ids, mask), ...]``); return the losses."""
    trainable = [
        p for p in (params if params is not None else model.parameters()) if p.requires_grad
    ]
    opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)
    sched = transformers.get_cosine_schedule_with_warmup(opt, warmup, steps)
    losses = []
    for ids, mask in batches:
        ids_t = torch.as_tensor(np.asarray(ids, np.int64))
        mask_t = torch.as_tensor(np.asarray(mask, np.int64))
        opt.zero_grad()
        tokens = mask_t[:, 1:].sum().to(torch.float32)
        total = 0.0
        for k in range(accumulate):
            m_ids, m_mask = ids_t[k::accumulate], m_mask_of(mask_t, k, accumulate)
            logits = model(m_ids, attention_mask=m_mask).logits[:, :-1].float()
            labels = m_ids[:, 1:].masked_fill(m_mask[:, 1:] == 0, -100)
            s = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="sum"
            )
            (s / tokens).backward()
            total += s.item()
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(trainable, max_grad_norm)
        opt.step()
        sched.step()
        losses.append(total / tokens.item())
    return losses


def m_mask_of(mask_t, k: int, accumulate: int):
    return mask_t[k::accumulate]


def right_padded_batches(seed: int, steps: int, batch: int, length: int, vocab: int):
    """``steps`` batches of random ids, each row padded at the end (mask 0) from a random length."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        ids = rng.integers(0, vocab, (batch, length)).astype(np.int32)
        lengths = rng.integers(length // 2, length + 1, batch)
        mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int32)
        out.append((np.where(mask == 1, ids, 0).astype(np.int32), mask))
    return out
