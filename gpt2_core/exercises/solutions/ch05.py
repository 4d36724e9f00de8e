"""Reference solutions of chapter 5's exercises (see :mod:`gpt2_core.exercises.ch05` for the checkers).

Try each exercise in the notebook first; these are here to compare with afterwards.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Logits below the k-th largest of their row become -inf (ties with it are kept)."""
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def lr_at_step(step: int, max_steps: int, warmup_steps: int, max_lr: float, min_lr: float) -> float:
    """Linear warmup to ``max_lr``, then half a cosine down to ``min_lr`` at ``max_steps``, then flat."""
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))


def bigram_loss(train_ids: list[int], val_ids: list[int], vocab_size: int, alpha: float) -> float:
    """Count (previous, next) pairs on the training ids, smooth, and score each validation transition."""
    counts = torch.zeros(vocab_size, vocab_size, dtype=torch.float64)
    counts.index_put_((torch.tensor(train_ids[:-1]), torch.tensor(train_ids[1:])),
                      torch.ones(len(train_ids) - 1, dtype=torch.float64), accumulate=True)
    smoothed = counts + alpha
    # Row a sums to count(a, ·) + alpha * V: only the times a was *followed* by something.
    log_p = smoothed.log() - smoothed.sum(1, keepdim=True).log()
    return -log_p[val_ids[:-1], val_ids[1:]].mean().item()


def accumulate_gradients(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, micro_batches: int) -> None:
    """Sum of micro-batch mean losses, each weighted by its share of the rows = the whole batch's mean loss."""
    rows = inputs.shape[0]
    for x, y in zip(inputs.tensor_split(micro_batches), targets.tensor_split(micro_batches), strict=True):
        loss = model(x, targets=y)  # the mean over this micro-batch's tokens
        (loss * x.shape[0] / rows).backward()  # backward() adds to .grad: that is the accumulation


SOLUTIONS = {
    "ch05.top_k_filter": top_k_filter,
    "ch05.lr_at_step": lr_at_step,
    "ch05.bigram_loss": bigram_loss,
    "ch05.accumulate_gradients": accumulate_gradients,
}
