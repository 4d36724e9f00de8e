"""Self-checking exercises: a learner writes a function in a notebook and calls

    check_exercise("ch01.encode_bytes", my_function)

which runs it against the finished piece in gpt2_core on a few inputs and prints a verdict.
Each chapter registers its checkers in its own module (``ch01.py`` ...) with ``@exercise(name)``.

Whatever the learner's function does, the verdict is one line and the notebook goes on: a wrong answer,
an exception inside the function, an answer of the wrong type or shape that the checker cannot even
compare, and a function that runs past the time limit (:data:`TIME_LIMIT` seconds, or ``time_limit=``).
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import math
import pkgutil
import threading
from collections.abc import Callable

_CHECKERS: dict[str, Callable[[Callable], None]] = {}

TIME_LIMIT = 60.0  # seconds a whole check may take (the solutions take well under one second)
# Status marks that every default font draws (Latin-1 and the PC character set, as console tools use on
# Windows): emoji such as an hourglass or a green tick show as empty boxes in Chromium's default fonts.
MARKS = {"correct": "√", "wrong": "×", "todo": "…"}
_LONGEST = 300  # characters of an error message shown in a verdict


class ExerciseFailed(AssertionError):
    """Raised inside a checker when the learner's function gives a wrong answer."""


class _Raised(Exception):  # noqa: N818 - not an error of ours: it carries the learner's
    """The learner's function raised ``error`` (told apart from an error of the checker's own code)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


class _TimedOut(BaseException):  # noqa: N818 - a BaseException, so the learner's `except Exception` cannot swallow it
    """Raised in the checking thread when the time limit passes."""


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


def _guarded(candidate: Callable) -> Callable:
    """``candidate`` with its own exceptions wrapped in :class:`_Raised`, so that a verdict can say whether
    the function raised or its answer broke the checker (e.g. ``None`` where a list was expected)."""

    @functools.wraps(candidate)
    def call(*args, **kwargs):  # noqa: ANN202
        try:
            return candidate(*args, **kwargs)
        except (NotImplementedError, ExerciseFailed):  # the stub, or a helper the checker handed in objecting
            raise
        except Exception as err:  # noqa: BLE001 - any bug of the learner's becomes a verdict
            raise _Raised(err) from err

    return call


def _run_with_limit(check: Callable[[], None], seconds: float) -> None:
    """Run ``check`` in this thread; raise :class:`_TimedOut` in it if it is still running after ``seconds``.

    A timer thread raises the exception asynchronously in this one (CPython's PyThreadState_SetAsyncExc):
    it works in any thread and on every system, unlike an alarm signal. It lands between two Python
    operations, so a single call that runs in C for minutes is stopped only when that call returns."""
    if math.isinf(seconds):
        check()
        return
    target, lock, done = threading.get_ident(), threading.Lock(), []

    def expire() -> None:
        with lock:  # never after `done`: the exception must land inside the try below
            if not done:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(target), ctypes.py_object(_TimedOut))

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        check()
    finally:
        with lock:
            done.append(True)
        timer.cancel()


def _one_line(err: BaseException) -> str:
    text = " ".join(f"{type(err).__name__}: {err}".split())
    return text if len(text) <= _LONGEST else text[:_LONGEST - 1] + "…"


def check_exercise(name: str, candidate: Callable, time_limit: float | None = None) -> bool:
    """Run the checker ``name`` on ``candidate``; print a one-line verdict and return True/False.

    ``time_limit``: seconds the check may take (default :data:`TIME_LIMIT`; ``math.inf`` for none)."""
    _load_all()
    if name not in _CHECKERS:
        raise ValueError(f"no exercise called {name!r}; available: {', '.join(sorted(_CHECKERS))}")
    if not callable(candidate):
        raise TypeError(f"pass your function itself (not its result) to check_exercise, got {type(candidate).__name__}")
    limit = TIME_LIMIT if time_limit is None else time_limit
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit > 0:
        raise ValueError(f"time_limit must be a number of seconds > 0 (math.inf for no limit), got {time_limit!r}")
    right, wrong, todo = MARKS["correct"], MARKS["wrong"], MARKS["todo"]
    try:
        _run_with_limit(lambda: _CHECKERS[name](_guarded(candidate)), limit)
    except NotImplementedError:
        print(f"{todo} {name}: not attempted yet — fill in the function and run this cell again.")
        return False
    except ExerciseFailed as err:
        print(f"{wrong} {name}: not quite. {' '.join(str(err).split())}")
        return False
    except _Raised as raised:
        print(f"{wrong} {name}: your function raised {_one_line(raised.error)}")
        return False
    except _TimedOut:
        print(f"{wrong} {name}: stopped after {limit:g} s: the check takes well under a second with a correct "
              "function; look for a loop that never ends (or pass time_limit= for more time).")
        return False
    except Exception as err:  # noqa: BLE001 - the checker could not use the answer: its type or shape is off
        print(f"{wrong} {name}: not quite. Your function's answer could not be checked ({_one_line(err)}): "
              "look at the type and shape it returns.")
        return False
    print(f"{right} {name}: correct!")
    return True


def expect_equal(got, want, what: str) -> None:
    """Helper for checkers: raise ExerciseFailed with a readable message when got != want."""
    if got != want:
        raise ExerciseFailed(f"for {what} expected {want!r} but got {got!r}")
