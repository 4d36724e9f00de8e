"""Every chapter-2 checker accepts its reference solution and rejects plausible wrong answers."""

from __future__ import annotations

import pytest
import torch

from gpt2_core.exercises import check_exercise
from gpt2_core.exercises.solutions import ch02 as solution


def _inputs_as_targets(n, c, s):  # treats window k's *inputs* k*s .. k*s+c-1 as what it predicts
    seen = {p for k in range(solution.count_windows(n, c, s)) for p in range(k * s, k * s + c)}
    return [p for p in range(n) if p not in seen]


def _gaps_only(n, c, s):  # forgets the tail after the last window
    last = solution.count_windows(n, c, s) * s
    return [p for p in solution.never_targets(n, c, s) if p < last] if n > c else list(range(n))


# A plausible wrong answer for every checker (tests/test_exercise_solutions.py runs them all)
WRONG = {
    "ch02.count_windows": lambda n, c, s: max(0, (n - c) // s),
    "ch02.never_targets": lambda n, c, s: [0],
    "ch02.first_val_window": lambda m, c, s: m,  # ignores the overlap
    "ch02.shift_matrix": lambda k, dim: solution.shift_matrix(k, dim).T,  # moves back by k
}


@pytest.mark.parametrize("wrong", [_inputs_as_targets, _gaps_only])
def test_never_targets_checker_catches_more_mistakes(wrong, capsys):
    assert not check_exercise("ch02.never_targets", wrong)
    assert "not quite" in capsys.readouterr().out


@pytest.mark.parametrize("wrong", [
    lambda m, c, s: m + c // s,  # one too many when c is a multiple of s
    lambda m, c, s: m + c // s - 1,  # one too few when it is not
    lambda m, c, s: m + (c + s - 1) // s,  # ceil(c / s): one too many
    lambda m, c, s: m - 1 + (c - 1) // s,  # reuses the last training window
])
def test_first_val_window_checker_catches_off_by_one(wrong, capsys):
    assert not check_exercise("ch02.first_val_window", wrong)
    assert "not quite" in capsys.readouterr().out


def test_first_val_window_closed_form_matches_brute_force():
    from gpt2_core.exercises.ch02 import _first_clean_window

    for m in (1, 2, 5):
        for c in range(1, 12):
            for s in range(1, 14):
                assert solution.first_val_window(m, c, s) == _first_clean_window(m, c, s), (m, c, s)



@pytest.mark.parametrize("wrong, says", [
    (lambda k, dim: solution.shift_matrix(k, dim).T, "back by"),
    (lambda k, dim: solution.shift_matrix(1, dim), "angle-sum"),  # one step, whatever k
    (lambda k, dim: torch.eye(dim), "angle-sum"),
    (lambda k, dim: solution.shift_matrix(k, dim)[:, :-1], "shape"),
    (lambda k, dim: solution.shift_matrix(k, dim).tolist(), "torch.Tensor"),
])
def test_shift_matrix_checker_names_the_mistake(wrong, says, capsys):
    assert not check_exercise("ch02.shift_matrix", wrong)
    assert says in capsys.readouterr().out


def test_shift_matrix_moves_the_chapters_sinusoids():
    from gpt2_core.exercises.ch02 import sinusoidal

    table = sinusoidal(40, 16).float()
    torch.testing.assert_close(table[:30] @ solution.shift_matrix(10, 16), table[10:40], atol=1e-5, rtol=0)
