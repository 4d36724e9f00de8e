"""Chapter 8's checkers name the plausible wrong answers (tests/test_exercise_solutions.py runs the generic
checks of every chapter with the WRONG answers below)."""

from __future__ import annotations

import math

import pytest
import torch

from gpt2_core.exercises import check_exercise
from gpt2_core.exercises.solutions import ch08 as solution


def _advantages(rewards, eps, *, dim=1, unbiased=True, scale=True, eps_in_std=True):
    if dim is None:
        mean, std = rewards.mean(), rewards.std(unbiased=unbiased)
    else:
        mean, std = rewards.mean(dim, keepdim=True), rewards.std(dim, unbiased=unbiased, keepdim=True)
    return (rewards - mean) / (std + (eps if eps_in_std else 0.0)) if scale else rewards - mean


# A plausible wrong answer for every checker (tests/test_exercise_solutions.py runs them all)
WRONG = {
    "ch08.pass_at_k": lambda n, c, k: 1 - (1 - c / n) ** k,  # with replacement: biased
    "ch08.group_advantages": lambda r, eps: _advantages(r, eps, dim=None),  # the whole batch, not each group
}


@pytest.mark.parametrize("wrong, says", [
    (lambda n, c, k: 1 - (1 - c / n) ** k, "with* replacement"),
    (lambda n, c, k: c / n, "pass@1"),
    (lambda n, c, k: min(1.0, k * c / n), "do not add up"),
    (lambda n, c, k: math.comb(c, k) / math.comb(n, k), "*all* k"),
    (lambda n, c, k: math.comb(n - c, k) / math.comb(n, k), "one minus"),
    (lambda n, c, k: True, "number"),
])
def test_pass_at_k_checker_names_the_mistake(wrong, says, capsys):
    assert not check_exercise("ch08.pass_at_k", wrong)
    assert says in capsys.readouterr().out


def test_pass_at_k_matches_the_binomial_formula_and_its_edges():
    for n, c, k in [(10, 3, 5), (200, 13, 100), (5, 0, 5), (5, 5, 1), (7, 5, 3)]:
        assert solution.pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k))
    assert solution.pass_at_k(10, 3, 1) == pytest.approx(0.3)  # pass@1 is the share of correct answers


@pytest.mark.parametrize("wrong, says", [
    (lambda r, eps: _advantages(r, eps, dim=None), "whole batch"),
    (lambda r, eps: _advantages(r, eps, dim=0), "each column"),
    (lambda r, eps: _advantages(r, eps, unbiased=False), "G - 1"),
    (lambda r, eps: _advantages(r, eps, scale=False), "divide by the group's std"),
    (lambda r, eps: _advantages(r, eps, eps_in_std=False), "NaN"),
    (lambda r, eps: torch.where(r == r[:, :1], torch.ones_like(r), _advantages(r, eps)), "must get zeros"),
    (lambda r, eps: r.sum(1), "shape"),
])
def test_group_advantages_checker_names_the_mistake(wrong, says, capsys):
    assert not check_exercise("ch08.group_advantages", wrong)
    assert says in capsys.readouterr().out


def test_group_advantages_by_hand():
    a = solution.group_advantages(torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5]]))
    assert a[0, 0] == pytest.approx(1.5, abs=1e-3)  # (1 - 0.25) / std 0.5
    assert a[0, 1:].tolist() == pytest.approx([-0.5] * 3, abs=1e-3)
    assert a[1].tolist() == [0.0] * 4  # all equal: no signal
