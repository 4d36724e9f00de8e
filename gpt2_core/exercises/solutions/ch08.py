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


def group_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """GRPO's advantages: each answer's reward against the other answers to the same question (its row)."""
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True)  # torch's default: the sample std, dividing by G - 1
    return (rewards - mean) / (std + eps)  # an all-equal row: 0 / (0 + eps) = 0


SOLUTIONS = {
    "ch08.pass_at_k": pass_at_k,
    "ch08.group_advantages": group_advantages,
}
