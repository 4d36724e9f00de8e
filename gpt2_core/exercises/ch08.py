"""Checkers for chapter 8 (learning from rewards).

- ``ch08.pass_at_k``: ``pass_at_k(n, c, k) -> float``, the unbiased estimate of pass@k (the chance that at
  least one of k answers is correct) from ``n`` sampled answers of which ``c`` are correct, ``1 <= k <= n``:
  the chance that k answers drawn *without replacement* from the n include a correct one
- ``ch08.dpo_pull``: ``dpo_pull(margin, beta) -> Tensor``, how hard DPO's loss pulls the chosen answer of each
  pair up: minus the derivative of the pair's loss ``-log sigmoid(beta * margin)`` with respect to the chosen
  answer's log-probability (the margin grows one for one with it), one value per pair

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


_MARGINS = [
    (torch.tensor([0.0, 0.0]), 0.1),  # at the start every pair pulls alike
    (torch.tensor([-20.0, -2.0, 0.0, 2.0, 20.0]), 0.1),  # ranked wrong, about even, ranked right
    (torch.tensor([-3.0, 0.5, 4.0, 40.0]), 0.5),
    (torch.linspace(-30, 30, 7), 1.0),
]


def _pull(margin: torch.Tensor, beta: float) -> torch.Tensor:
    """d(loss of one pair) / d(log pi(chosen)), by autograd of the pair's own loss (no mean over pairs)."""
    chosen = margin.clone().requires_grad_(True)
    (-torch.nn.functional.logsigmoid(beta * chosen)).sum().backward()
    return -chosen.grad  # the pull is the size of the step *up* the chosen answer gets


@exercise("ch08.dpo_pull")
def check_dpo_pull(candidate: Callable) -> None:
    for margin, beta in _MARGINS:
        what = f"margin={[round(m, 2) for m in margin.tolist()]}, beta={beta}"
        got = candidate(margin.clone(), beta)
        if not isinstance(got, torch.Tensor) or got.shape != margin.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise ExerciseFailed(f"for {what} return one pull per pair, a tensor of shape {tuple(margin.shape)}, "
                                 f"got {shape}")
        want = _pull(margin, beta)
        got = got.detach().float()
        if torch.allclose(got, want, rtol=1e-4, atol=1e-7):
            continue
        if torch.allclose(got, -want, rtol=1e-4, atol=1e-7):
            hint = "that is the loss's gradient; the pull is minus it (gradient descent steps against the gradient)"
        elif torch.allclose(got, beta * torch.sigmoid(beta * margin), rtol=1e-4, atol=1e-7):
            hint = ("a pair already ranked right (large margin) should pull *less*, not more: the derivative of "
                    "-log sigmoid(x) is -sigmoid(-x)")
        elif torch.allclose(got, torch.sigmoid(-beta * margin), rtol=1e-4, atol=1e-7):
            hint = "the chain rule brings a factor beta: the loss sees beta * margin"
        elif torch.allclose(got, want / len(margin), rtol=1e-4, atol=1e-7):
            hint = "that divides by the number of pairs (the mean of the batch); give each pair's own pull"
        else:
            hint = "differentiate -log sigmoid(beta * margin) with respect to the margin, then flip the sign"
        raise ExerciseFailed(f"for {what} expected {[round(v, 5) for v in want.tolist()]} but got "
                             f"{[round(v, 5) for v in got.tolist()]}; {hint}")
