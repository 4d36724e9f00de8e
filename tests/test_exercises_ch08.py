"""Chapter 8's checkers name the plausible wrong answers (tests/test_exercise_solutions.py runs the generic
checks of every chapter with the WRONG answers below)."""

from __future__ import annotations

import math

import pytest
import torch

from gpt2_core.exercises import check_exercise
from gpt2_core.exercises.solutions import ch08 as solution

# A plausible wrong answer for every checker (tests/test_exercise_solutions.py runs them all)
WRONG = {
    "ch08.pass_at_k": lambda n, c, k: 1 - (1 - c / n) ** k,  # with replacement: biased
    "ch08.dpo_pull": lambda m, beta: beta * torch.sigmoid(beta * m),  # the sign slip: pulls ranked-right pairs
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
    (lambda m, beta: -beta * torch.sigmoid(-beta * m), "minus it"),
    (lambda m, beta: beta * torch.sigmoid(beta * m), "pull *less*"),
    (lambda m, beta: torch.sigmoid(-beta * m), "factor beta"),
    (lambda m, beta: beta * torch.sigmoid(-beta * m) / len(m), "number of pairs"),
    (lambda m, beta: m * beta, "differentiate"),
    (lambda m, beta: (beta * torch.sigmoid(-beta * m)).sum(), "shape"),
])
def test_dpo_pull_checker_names_the_mistake(wrong, says, capsys):
    assert not check_exercise("ch08.dpo_pull", wrong)
    assert says in capsys.readouterr().out


def test_dpo_pull_is_minus_the_autograd_gradient_of_the_package_loss():
    from gpt2_core.finetuning.rl import dpo_loss

    margin = torch.tensor([-5.0, 0.0, 3.0], requires_grad=True)
    zeros = torch.zeros(3)
    (dpo_loss(margin, zeros, zeros, zeros, 0.3) * 3).backward()  # * 3 undoes the mean over pairs
    assert torch.allclose(solution.dpo_pull(margin.detach(), 0.3), -margin.grad)
