"""Every chapter's reference solutions match its registered checkers one to one, and each passes."""

from __future__ import annotations

import importlib

import pytest

from gpt2_core.exercises import available, check_exercise

CHAPTERS = [f"ch{n:02d}" for n in range(1, 8)]


def _solutions(chapter: str) -> dict:
    return importlib.import_module(f"gpt2_core.exercises.solutions.{chapter}").SOLUTIONS


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_solutions_cover_exactly_the_chapters_checkers(chapter):
    registered = {name for name in available() if name.startswith(f"{chapter}.")}
    assert registered, f"no checkers registered for {chapter}"
    assert set(_solutions(chapter)) == registered


@pytest.mark.parametrize("name", [name for chapter in CHAPTERS for name in sorted(_solutions(chapter))])
def test_each_solution_passes_its_checker(name, capsys):
    assert check_exercise(name, _solutions(name.split(".")[0])[name]) is True
    assert "correct" in capsys.readouterr().out
