"""Checkers for chapter 5 (pretraining and sampling).

- ``ch05.perplexity``: ``perplexity(loss: float) -> float``, the perplexity of a mean cross-entropy loss
- ``ch05.top_k_filter``: ``top_k_filter(logits: Tensor, k: int) -> Tensor``, logits below the k-th largest
  of each row (last dimension) set to ``-inf``, the rest unchanged
- ``ch05.lr_at_step``: ``lr_at_step(step, max_steps, warmup_steps, max_lr, min_lr) -> float``, linear warmup
  ``max_lr * (step + 1) / warmup_steps``, then cosine decay to ``min_lr`` at ``max_steps`` (and after)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..generate import top_k_filter
from ..training import lr_schedule
from . import ExerciseFailed, exercise


def _close(got: object, want: float, what: str, rel: float = 1e-6) -> None:
    if not isinstance(got, (int, float)) or isinstance(got, bool):
        raise ExerciseFailed(f"for {what} return a number, got {type(got).__name__}")
    if not math.isclose(float(got), want, rel_tol=rel, abs_tol=1e-12):
        raise ExerciseFailed(f"for {what} expected {want:.6g} but got {float(got):.6g}")


@exercise("ch05.perplexity")
def check_perplexity(candidate: Callable) -> None:
    for loss in (0.0, 1.0, 2.5, math.log(50257), 10.8):
        _close(candidate(loss), math.exp(loss), f"loss={loss:.4g}")


@exercise("ch05.top_k_filter")
def check_top_k_filter(candidate: Callable) -> None:
    g = torch.Generator().manual_seed(5)
    cases = [(torch.tensor([1.0, 3.0, 2.0, -1.0]), 2), (torch.tensor([[0.5, -2.0, 4.0], [3.0, 1.0, 2.0]]), 1),
             (torch.randn(3, 20, generator=g), 5), (torch.tensor([2.0, 1.0]), 2)]
    for logits, k in cases:
        got = candidate(logits.clone(), k)
        if not isinstance(got, torch.Tensor) or got.shape != logits.shape:
            raise ExerciseFailed(f"return a tensor of shape {tuple(logits.shape)} (the same as the logits)")
        want = top_k_filter(logits, k)
        if not torch.equal(torch.isinf(got), torch.isinf(want)) or not torch.allclose(
                got[~torch.isinf(want)], want[~torch.isinf(want)]):
            raise ExerciseFailed(f"for logits {logits.tolist() if logits.numel() < 10 else '(random 3x20)'} "
                                 f"and k={k} expected {want.tolist() if want.numel() < 10 else '...'}")


@exercise("ch05.lr_at_step")
def check_lr_at_step(candidate: Callable) -> None:
    for args in [(0, 100, 10, 1e-3, 1e-4), (4, 100, 10, 1e-3, 1e-4), (9, 100, 10, 1e-3, 1e-4),
                 (10, 100, 10, 1e-3, 1e-4), (55, 100, 10, 1e-3, 1e-4), (99, 100, 10, 1e-3, 1e-4),
                 (150, 100, 10, 1e-3, 1e-4), (0, 50, 0, 6e-4, 0.0), (25, 50, 0, 6e-4, 0.0)]:
        step, max_steps, warmup, max_lr, min_lr = args
        _close(candidate(*args), lr_schedule(*args),
               f"step={step}, max_steps={max_steps}, warmup_steps={warmup}, max_lr={max_lr}, min_lr={min_lr}")
