"""Reference solutions of chapter 5's exercises (see :mod:`gpt2_core.exercises.ch05` for the checkers).

Try each exercise in the notebook first; these are here to compare with afterwards.
"""

from __future__ import annotations

import torch
from torch import nn


def adamw_first_step(grad: torch.Tensor, lr: float, betas: tuple[float, float], eps: float) -> torch.Tensor:
    """AdamW's first update from zero moments (weight decay 0): about ``lr`` for every weight, whatever its gradient.

    After one step m = (1 - beta1) g and v = (1 - beta2) g**2; the bias corrections divide them by
    (1 - beta1) and (1 - beta2), which gives back g and g**2 exactly, so the update is
    -lr * g / (|g| + eps): the size of the gradient cancels out.
    """
    beta1, beta2 = betas
    m_hat = (1 - beta1) * grad / (1 - beta1)
    v_hat = (1 - beta2) * grad**2 / (1 - beta2)
    return -lr * m_hat / (v_hat.sqrt() + eps)


def nucleus(logits: torch.Tensor, temperature: float, top_p: float) -> set[int]:
    """The ids sampling can still draw: divide by the temperature, then keep each token (from the most
    likely down) while the probability of the tokens ranked above it is still below ``top_p``."""
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    sorted_probs, order = torch.sort(probs, descending=True)
    mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
    return set(order[mass_before < top_p].tolist())


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
    "ch05.adamw_first_step": adamw_first_step,
    "ch05.nucleus": nucleus,
    "ch05.bigram_loss": bigram_loss,
    "ch05.accumulate_gradients": accumulate_gradients,
}
