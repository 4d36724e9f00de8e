"""Checkers for chapter 6 (classification fine-tuning).

- ``ch06.accuracy``: ``accuracy(y_true, y_pred) -> float``, the fraction of predictions that are right
- ``ch06.f1_from_confusion``: ``f1(cm) -> float`` for a 2x2 matrix ``[[tn, fp], [fn, tp]]`` (rows = true
  class, columns = predicted, class 1 = spam is the positive class); 0.0 when precision + recall is 0
- ``ch06.last_token_logits``: ``pick(logits, lengths) -> Tensor``: from logits (batch, tokens, classes) of
  right-padded texts with ``lengths`` real tokens each, the (batch, classes) logits of each last real token
- ``ch06.mean_pool``: ``mean_pool(logits, lengths) -> Tensor``: the same shapes, the mean of each text's
  logits over its real tokens (the pads after them left out)
- ``ch06.laplace_log_likelihood``: ``f(counts, alpha) -> Tensor``: Naive Bayes' ``log P(token | class)``
  from token counts (classes, vocab) with add-``alpha`` (Laplace) smoothing

Reference solutions: :mod:`gpt2_core.exercises.solutions.ch06`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..finetuning.classification import metrics_from_confusion
from . import ExerciseFailed, exercise

_LABEL_CASES = [
    ([1], [1]),
    ([0], [1]),
    ([0, 1, 1, 0], [0, 1, 0, 0]),
    ([1, 1, 1, 1, 0], [0, 0, 0, 0, 0]),
    ([0, 1, 0, 1, 0, 1, 1, 0, 0, 1], [0, 1, 1, 1, 0, 0, 1, 0, 1, 1]),
]
_CONFUSION_CASES = [
    [[5, 0], [0, 5]],  # perfect
    [[3, 1], [2, 4]],
    [[10, 0], [0, 0]],  # no positives at all: precision and recall are 0/0
    [[0, 4], [0, 6]],  # everything called spam: recall 1, precision 0.6
    [[7, 3], [5, 0]],  # no true positives
    [[900, 12], [30, 58]],
]


def _close(got: object, want: float, what: str) -> None:
    try:
        value = float(got)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ExerciseFailed(f"return a number for {what}, got {type(got).__name__}") from None
    if not math.isclose(value, want, rel_tol=1e-6, abs_tol=1e-9):
        raise ExerciseFailed(f"for {what} expected {want:.6f} but got {value:.6f}")


@exercise("ch06.accuracy")
def check_accuracy(candidate: Callable) -> None:
    for y_true, y_pred in _LABEL_CASES:
        want = sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(y_true)
        _close(candidate(list(y_true), list(y_pred)), want, f"y_true={y_true}, y_pred={y_pred}")


@exercise("ch06.f1_from_confusion")
def check_f1(candidate: Callable) -> None:
    for cm in _CONFUSION_CASES:
        want = metrics_from_confusion(cm)["f1"]
        _close(candidate([list(row) for row in cm]), want, f"cm={cm}")


@exercise("ch06.last_token_logits")
def check_last_token_logits(candidate: Callable) -> None:
    gen = torch.Generator().manual_seed(6)
    for batch, tokens, lengths in [(1, 4, [4]), (3, 5, [5, 1, 3]), (4, 6, [2, 6, 6, 1])]:
        logits = torch.randn(batch, tokens, 2, generator=gen)
        want = torch.stack([logits[b, n - 1] for b, n in enumerate(lengths)])
        got = candidate(logits.clone(), torch.tensor(lengths))
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise ExerciseFailed(f"for lengths {lengths} expected a tensor of shape {tuple(want.shape)}, got {shape}")
        if torch.equal(got, logits[:, -1]) and not torch.equal(want, logits[:, -1]):
            raise ExerciseFailed("that is the last *position*, which is padding for the shorter texts; "
                                 "use each text's length - 1")
        if not torch.allclose(got, want):
            raise ExerciseFailed(f"for lengths {lengths} the logits picked are not those of the last real tokens")


def _padded_cases(seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    cases = []
    for batch, tokens, lengths in [(1, 4, [4]), (3, 5, [5, 1, 3]), (4, 6, [2, 6, 6, 1])]:
        logits = torch.randn(batch, tokens, 2, generator=gen)
        cases.append((logits, torch.tensor(lengths)))
    return cases


@exercise("ch06.mean_pool")
def check_mean_pool(candidate: Callable) -> None:
    for logits, lengths in _padded_cases(7):
        want = torch.stack([logits[b, :n].mean(0) for b, n in enumerate(lengths.tolist())])
        got = candidate(logits.clone(), lengths.clone())
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise ExerciseFailed(f"for lengths {lengths.tolist()} expected shape {tuple(want.shape)}, got {shape}")
        if torch.allclose(got, logits.mean(1)) and not torch.allclose(want, logits.mean(1)):
            raise ExerciseFailed("that averages the pads too; average only the first `length` tokens of each text")
        if not torch.allclose(got, want, atol=1e-6):
            raise ExerciseFailed(f"for lengths {lengths.tolist()} the means are not those of the real tokens")


@exercise("ch06.laplace_log_likelihood")
def check_laplace(candidate: Callable) -> None:
    cases = [(torch.tensor([[3.0, 0.0, 1.0], [0.0, 2.0, 2.0]]), 1.0),
             (torch.tensor([[5.0, 0.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0]]), 0.5),
             (torch.tensor([[0.0, 0.0], [10.0, 0.0]]), 2.0)]
    for counts, alpha in cases:
        smoothed = counts.double() + alpha
        want = (smoothed / smoothed.sum(1, keepdim=True)).log()
        got = candidate(counts.clone(), alpha)
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            raise ExerciseFailed(f"return a tensor of shape {tuple(want.shape)} (classes, vocab)")
        got = got.double()
        if torch.isinf(got).any():
            raise ExerciseFailed("a token never seen with a class gets log(0) = -inf; add alpha to every count")
        if not torch.allclose(got, want, atol=1e-6):
            if torch.allclose(got.exp().sum(0), torch.ones(want.shape[1], dtype=torch.float64)):
                raise ExerciseFailed("your probabilities sum to 1 over the classes; P(token | class) sums to 1 "
                                     "over the vocabulary (each row)")
            raise ExerciseFailed(f"for counts {counts.tolist()} and alpha={alpha} the log-probabilities are wrong")
