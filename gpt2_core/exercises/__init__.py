"""Self-checking exercises: a learner writes a function in a notebook and calls

    check_exercise("ch01.encode_bytes", my_function)

which runs it against the finished piece in gpt2_core on a few inputs and prints a verdict.
Each chapter registers its checkers in its own module (``ch01.py`` ...) with ``@exercise(name)``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

_CHECKERS: dict[str, Callable[[Callable], None]] = {}


class ExerciseFailed(AssertionError):
    """Raised inside a checker when the learner's function gives a wrong answer."""


def exercise(name: str) -> Callable:
    """Decorator that registers ``checker(candidate)`` under ``name``."""

    def register(checker: Callable[[Callable], None]) -> Callable[[Callable], None]:
        _CHECKERS[name] = checker
        return checker

    return register


def _load_all() -> None:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def available() -> list[str]:
    _load_all()
    return sorted(_CHECKERS)


def check_exercise(name: str, candidate: Callable) -> bool:
    """Run the checker ``name`` on ``candidate``; print a friendly verdict and return True/False."""
    _load_all()
    if name not in _CHECKERS:
        raise ValueError(f"no exercise called {name!r}; available: {', '.join(sorted(_CHECKERS))}")
    if not callable(candidate):
        raise TypeError(f"pass your function itself (not its result) to check_exercise, got {type(candidate).__name__}")
    try:
        _CHECKERS[name](candidate)
    except NotImplementedError:
        print(f"⏳ {name}: not attempted yet — fill in the function and run this cell again.")
        return False
    except ExerciseFailed as err:
        print(f"❌ {name}: not quite. {err}")
        return False
    except Exception as err:  # noqa: BLE001 - a learner's bug should read as a verdict, not a traceback
        print(f"❌ {name}: your function raised {type(err).__name__}: {err}")
        return False
    print(f"✅ {name}: correct!")
    return True


def expect_equal(got, want, what: str) -> None:
    """Helper for checkers: raise ExerciseFailed with a readable message when got != want."""
    if got != want:
        raise ExerciseFailed(f"for {what} expected {want!r} but got {got!r}")
