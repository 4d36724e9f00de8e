"""Checkers for chapter 8 (learning from rewards).

- ``ch08.pass_at_k``: ``pass_at_k(n, c, k) -> float``, the unbiased estimate of pass@k (the chance that at
  least one of k answers is correct) from ``n`` sampled answers of which ``c`` are correct, ``1 <= k <= n``:
  the chance that k answers drawn *without replacement* from the n include a correct one
- ``ch08.group_advantages``: ``group_advantages(rewards, eps) -> Tensor``, GRPO's advantages for rewards of
  shape (questions, G), one row per question's group of G answers: each reward minus its group's mean,
  divided by the group's standard deviation (``torch.std``'s default, which divides by G - 1) plus ``eps``;
  a group whose rewards are all equal gets zeros

Reference solutions: :mod:`gpt2_core.exercises.solutions.ch08`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from . import ExerciseFailed, exercise

_PASS_CASES = [(1, 0, 1), (1, 1, 1), (10, 0, 5), (10, 10, 1), (10, 3, 1), (10, 3, 5), (5, 2, 2), (10, 1, 10),
               (8, 6, 3), (100, 50, 1), (200, 13, 10), (200, 13, 100)]


def _pass_at_k(n: int, c: int, k: int) -> float:
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


@exercise("ch08.pass_at_k")
def check_pass_at_k(candidate: Callable) -> None:
    for n, c, k in _PASS_CASES:
        what = f"n={n}, c={c}, k={k}"
        got = candidate(n, c, k)
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            raise ExerciseFailed(f"for {what} return a number, got {type(got).__name__}")
        want = _pass_at_k(n, c, k)
        if math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12):
            continue
        hints = [
            (1 - (1 - c / n) ** k, "that draws k answers *with* replacement (the same answer could be drawn twice); "
             "draw k different answers out of the n, and count the draws with no correct one"),
            (c / n, "that is pass@1; pass@k asks whether *any* of k answers is correct"),
            (min(1.0, k * c / n), "chances that some answer is right do not add up; count the ways to pick k answers "
             "that are all wrong instead"),
            (math.comb(c, k) / math.comb(n, k), "that is the chance that *all* k answers are correct; pass@k needs "
             "only one"),
            (math.comb(n - c, k) / math.comb(n, k), "that is the chance that none of the k is correct: pass@k is one "
             "minus it"),
        ]
        hint = next((h for value, h in hints if math.isclose(got, value, rel_tol=1e-9, abs_tol=1e-12)),
                    "pass@k = 1 - (ways to choose k wrong answers) / (ways to choose k answers)")
        raise ExerciseFailed(f"for {what} expected {want:.6g} but got {got:.6g}; {hint}")


_GROUPS = [
    torch.tensor([[0.1, 0.1, 0.1, 0.1], [1.0, 0.0, 1.0, 0.0]]),  # an all-equal group: no signal at all
    torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]]),  # one right out of four; three right out of four
    torch.tensor([[1.0, 0.1, 0.0, 0.1, 1.0, 0.0, 0.0, 0.1]]),  # correct 1, well-formed but wrong 0.1, broken 0
    torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.1]]),
    torch.tensor([0.0, 0.1, 1.0])[torch.randint(0, 3, (5, 8), generator=torch.Generator().manual_seed(8))],
]


def _advantages(rewards: torch.Tensor, eps: float, *, dim: int | None = 1, unbiased: bool = True) -> torch.Tensor:
    """GRPO's advantages, and (with other settings) the classic slips, for the hints."""
    if dim is None:  # one normalisation over the whole batch
        mean, std = rewards.mean(), rewards.std(unbiased=unbiased)
    else:
        mean, std = rewards.mean(dim, keepdim=True), rewards.std(dim, unbiased=unbiased, keepdim=True)
    return (rewards - mean) / (std + eps)


@exercise("ch08.group_advantages")
def check_group_advantages(candidate: Callable) -> None:
    eps = 1e-4
    for rewards in _GROUPS:
        what = (f"rewards={[[round(v, 3) for v in row] for row in rewards.tolist()]}" if rewards.numel() <= 12
                else f"{tuple(rewards.shape)} seeded rewards")
        got = candidate(rewards.clone(), eps)
        if not isinstance(got, torch.Tensor) or got.shape != rewards.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise ExerciseFailed(f"for {what} return a tensor of the rewards' shape {tuple(rewards.shape)}, "
                                 f"got {shape}")
        want = _advantages(rewards, eps)
        got = got.float()
        if torch.allclose(got, want, rtol=1e-3, atol=1e-3):  # eps under the square root is fine too
            continue
        equal_rows = (rewards == rewards[:, :1]).all(1)
        centred = rewards - rewards.mean(1, keepdim=True)
        if torch.isnan(got).any():
            hint = ("a group whose rewards are all equal has std 0 and gave NaN; add eps to the std, and such a group "
                    "gets zeros (no answer in it is better than another)")
        elif torch.allclose(got, _advantages(rewards, eps, dim=None), atol=1e-5):
            hint = ("you normalised over the whole batch; each question's group (one row) is compared with itself, "
                    "so an easy question does not make every answer to a hard one look bad")
        elif rewards.shape[0] > 1 and torch.allclose(got, _advantages(rewards, eps, dim=0), atol=1e-5):
            hint = "you normalised each column; each *row* is one question's group"
        elif equal_rows.any() and not torch.allclose(got[equal_rows], torch.zeros_like(got[equal_rows]), atol=1e-5):
            hint = "a group whose rewards are all equal must get zeros: no answer in it is better than another"
        elif torch.allclose(got, _advantages(rewards, eps, unbiased=False), atol=1e-5):
            hint = "use torch.std's default, the sample standard deviation (it divides by G - 1, not by G)"
        elif torch.allclose(got, centred, atol=1e-5):
            hint = ("right centring; now divide by the group's std (plus eps), so every group's advantages have one "
                    "scale")
        elif torch.allclose(got, centred / (rewards.var(1, keepdim=True) + eps).sqrt(), atol=1e-5):
            hint = "eps is added to the std (std + eps), not under the square root"
        else:
            hint = "subtract each row's mean, then divide by that row's std plus eps"
        raise ExerciseFailed(f"for {what} expected {[[round(v, 4) for v in row] for row in want.tolist()][:3]} but got "
                             f"{[[round(v, 4) for v in row] for row in got.tolist()][:3]}; {hint}")
