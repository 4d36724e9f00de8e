"""Reference solutions of chapter 6's exercises (see :mod:`gpt2_core.exercises.ch06` for the checkers)."""

from __future__ import annotations

import torch


def accuracy(y_true, y_pred) -> float:  # noqa: ANN001
    """The fraction of predictions equal to the true labels."""
    return sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(y_true)


def f1_from_confusion(cm) -> float:  # noqa: ANN001
    """F1 of class 1 from ``[[tn, fp], [fn, tp]]``; 0.0 when precision + recall is 0."""
    (_, fp), (fn, tp) = cm
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def last_token_logits(logits: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The logits of each text's last real token: position ``length - 1``, not the last (padded) position."""
    return logits[torch.arange(logits.shape[0]), lengths - 1]


def mean_pool(logits: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The mean of each text's logits over its real tokens only (the pads after them left out)."""
    mask = torch.arange(logits.shape[1])[None, :] < lengths[:, None]
    return (logits * mask[..., None]).sum(1) / lengths[:, None]


def laplace_log_likelihood(counts: torch.Tensor, alpha: float) -> torch.Tensor:
    """``log P(token | class)`` from token counts (classes, vocab) with add-``alpha`` smoothing."""
    smoothed = counts.double() + alpha
    return (smoothed / smoothed.sum(1, keepdim=True)).log()


SOLUTIONS = {
    "ch06.accuracy": accuracy,
    "ch06.f1_from_confusion": f1_from_confusion,
    "ch06.last_token_logits": last_token_logits,
    "ch06.mean_pool": mean_pool,
    "ch06.laplace_log_likelihood": laplace_log_likelihood,
}
