"""Every chapter's exercises, checked the same way: the reference solutions match the registered checkers
one to one; each checker accepts its solution, rejects a plausible wrong answer (the ``WRONG`` dict of
``test_exercises_chNN.py``, which also holds each chapter's more specific tests) and reports an
untouched stub as not attempted."""

from __future__ import annotations

import importlib

import pytest

from gpt2_core.exercises import available, check_exercise

CHAPTERS = [f"ch{n:02d}" for n in range(1, 9)]


def _solutions(chapter: str) -> dict:
    return importlib.import_module(f"gpt2_core.exercises.solutions.{chapter}").SOLUTIONS


def _wrong(chapter: str) -> dict:
    return importlib.import_module(f"test_exercises_{chapter}").WRONG  # tests/ is on sys.path under pytest


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_solutions_and_wrong_answers_cover_exactly_the_chapters_checkers(chapter):
    registered = {name for name in available() if name.startswith(f"{chapter}.")}
    assert registered, f"no checkers registered for {chapter}"
    assert set(_solutions(chapter)) == registered == set(_wrong(chapter))


@pytest.mark.parametrize("name", [name for chapter in CHAPTERS for name in sorted(_solutions(chapter))])
def test_checker_accepts_its_solution_rejects_a_wrong_answer_and_an_untouched_stub(name, capsys):
    def stub(*args, **kwargs):
        raise NotImplementedError

    chapter = name.split(".")[0]
    assert check_exercise(name, _solutions(chapter)[name]) is True
    assert "correct" in capsys.readouterr().out
    assert check_exercise(name, _wrong(chapter)[name]) is False
    assert "not quite" in capsys.readouterr().out
    assert check_exercise(name, stub) is False
    assert "not attempted" in capsys.readouterr().out
