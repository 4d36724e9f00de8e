"""Every chapter's exercises, checked the same way: the reference solutions match the registered checkers
one to one; each checker accepts its solution, rejects a plausible wrong answer (the ``WRONG`` dict of
``test_exercises_chNN.py``, which also holds each chapter's more specific tests) and reports an
untouched stub as not attempted."""

from __future__ import annotations

import importlib
import time

import pytest

from gpt2_core import exercises
from gpt2_core.exercises import MARKS, available, check_exercise

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


# --- whatever the learner's function does, the verdict is one line and the notebook goes on -------------------

ALL = [name for chapter in CHAPTERS for name in sorted(_solutions(chapter))]


def _verdict(capsys) -> str:
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 1, f"a verdict must be one line, got:\n{out}"
    return out.strip()


@pytest.mark.parametrize("answer", [None, object(), "text", -1.5], ids=["None", "object", "str", "float"])
@pytest.mark.parametrize("name", ALL)
def test_an_answer_of_the_wrong_type_is_a_one_line_verdict(name, answer, capsys):
    assert check_exercise(name, lambda *args, **kwargs: answer) is False
    assert _verdict(capsys).startswith(f"{MARKS['wrong']} {name}: not quite.")


def test_an_answer_the_checker_cannot_use_says_to_look_at_its_type_and_shape(capsys):
    """The checker's own code fails on the answer (list(None)): the function did not raise, so the verdict
    must not say it did."""
    assert not check_exercise("ch01.encode_with_special", lambda text, encode_ordinary, special_tokens: None)
    assert _verdict(capsys) == (f"{MARKS['wrong']} ch01.encode_with_special: not quite. Your function's answer "
                                "could not be checked (TypeError: 'NoneType' object is not iterable): look at the "
                                "type and shape it returns.")


def test_a_function_that_raises_is_named_with_its_error_in_one_line(capsys):
    def broken(*args):
        raise ZeroDivisionError("division by zero\nsecond line of the message")

    assert check_exercise("ch02.never_targets", broken) is False
    assert _verdict(capsys) == (f"{MARKS['wrong']} ch02.never_targets: your function raised ZeroDivisionError: "
                                "division by zero second line of the message")


def test_a_very_long_error_message_is_cut(capsys):
    def broken(*args):
        raise ValueError("x" * 5000)

    assert not check_exercise("ch02.never_targets", broken)
    assert len(_verdict(capsys)) < 400


def test_a_function_that_never_returns_is_stopped_at_the_time_limit(capsys):
    def forever(*args):
        while True:
            try:
                sum(range(1000))
            except Exception:  # noqa: BLE001, S110 - a learner's catch-all must not swallow the time limit
                pass

    start = time.perf_counter()
    assert check_exercise("ch08.pass_at_k", forever, time_limit=0.5) is False
    assert time.perf_counter() - start < 10
    assert _verdict(capsys).startswith(f"{MARKS['wrong']} ch08.pass_at_k: stopped after 0.5 s")
    assert check_exercise("ch08.pass_at_k", _solutions("ch08")["ch08.pass_at_k"])  # and the next check runs


def test_the_time_limit_never_fires_after_the_check(capsys):
    assert check_exercise("ch08.pass_at_k", _solutions("ch08")["ch08.pass_at_k"], time_limit=0.2)
    time.sleep(0.5)  # a late timer would raise here
    assert "correct" in capsys.readouterr().out


def test_the_default_time_limit_and_bad_limits():
    assert exercises.TIME_LIMIT == 60
    for bad in (0, -1, "60", True, float("nan")):
        with pytest.raises(ValueError, match="time_limit"):
            check_exercise("ch08.pass_at_k", _solutions("ch08")["ch08.pass_at_k"], time_limit=bad)


def test_status_marks_are_characters_every_default_font_draws(capsys):
    """Emoji (an hourglass, a green tick) show as empty boxes in Chromium's default fonts; these marks are in the
    original PC character set or Windows' Latin-1, which every default font covers."""
    for mark in MARKS.values():
        assert _in_a_basic_charset(mark), mark
    check_exercise("ch08.pass_at_k", lambda *a: (_ for _ in ()).throw(NotImplementedError()))
    line = _verdict(capsys)
    assert line.startswith(MARKS["todo"]) and all(_in_a_basic_charset(c) for c in line)


def _in_a_basic_charset(text: str) -> bool:
    for charset in ("cp437", "cp1252"):
        try:
            text.encode(charset)
            return True
        except UnicodeEncodeError:
            pass
    return False
