"""Checkers for chapter 6 (classification fine-tuning).

- ``ch06.accuracy``: ``accuracy(y_true, y_pred) -> float``, the fraction of predictions that are right
- ``ch06.f1_from_confusion``: ``f1(cm) -> float`` for a 2x2 matrix ``[[tn, fp], [fn, tp]]`` (rows = true
  class, columns = predicted, class 1 = spam is the positive class); 0.0 when precision + recall is 0
- ``ch06.last_token_logits``: ``pick(logits, lengths) -> Tensor``: from logits (batch, tokens, classes) of
  right-padded texts with ``lengths`` real tokens each, the (batch, classes) logits of each last real token
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..classification import metrics_from_confusion
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
