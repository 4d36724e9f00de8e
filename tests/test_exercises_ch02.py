"""Every chapter-2 checker accepts its reference solution and rejects plausible wrong answers."""

from __future__ import annotations

import pytest

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

