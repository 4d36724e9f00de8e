"""Reference solutions of chapter 8's exercises (see :mod:`gpt2_core.exercises.ch08` for the checkers)."""

from __future__ import annotations

import torch


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al., 2021): one minus the chance that k of the n answers, drawn without
    replacement, are all wrong. The product form never builds the huge binomial coefficients."""
    if n - c < k:
        return 1.0  # fewer than k wrong answers: any k of them include a correct one
    all_wrong = 1.0
    for i in range(k):  # draw one answer at a time: (n - c - i) wrong ones left out of (n - i)
        all_wrong *= (n - c - i) / (n - i)
    return 1.0 - all_wrong


def dpo_pull(margin: torch.Tensor, beta: float) -> torch.Tensor:
    """How hard DPO pulls each pair's chosen answer up. d/dx of -log sigmoid(x) is -sigmoid(-x), and x = beta *
    margin, so the loss's gradient is -beta * sigmoid(-beta * margin): a pair ranked wrong (margin < 0) pulls with
    nearly beta, one ranked right by a wide margin with nearly nothing."""
    return beta * torch.sigmoid(-beta * margin)


SOLUTIONS = {
    "ch08.pass_at_k": pass_at_k,
    "ch08.dpo_pull": dpo_pull,
}
