"""Argument checks for the package's public entry points: one clear error instead of a deep traceback.

Each check returns the value it checked, so an entry point can write ``steps = check_int(steps, "steps",
low=1)``. Inside the package, past the entry points, values are trusted and the code stays plain.
``True`` is not accepted as an int: ``isinstance(True, int)`` holds in Python, and a bool where a count
belongs is a bug, not a 1.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


def check_int(value: Any, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` if it is an int (not a bool) in ``[low, high]``; TypeError or ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


def check_number(value: Any, name: str, *, low: float | None = None, high: float | None = None,
                 positive: bool = False) -> float:
    """``value`` as a float if it is a real number (not a bool) in ``[low, high]`` (``positive``: > 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} ({value!r})")
    if value != value:
        raise ValueError(f"{name} must be a number, got NaN")
    if positive and not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return float(value)


def check_bool(value: Any, name: str) -> bool:
    """``value`` if it is True or False."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_choice(value: Any, name: str, choices: Collection[Any]) -> Any:
    """``value`` if it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")
    return value


TOKENIZER_METHODS = ("encode", "encode_ordinary", "decode", "n_vocab")


def check_tokenizer(tokenizer: Any, name: str = "tokenizer") -> Any:
    """``tokenizer`` if it speaks tiktoken's interface (a tiktoken Encoding or the course's BPETokenizer)."""
    missing = [m for m in TOKENIZER_METHODS if not hasattr(tokenizer, m)]
    if missing:
        raise TypeError(f"{name} must be a tokenizer with tiktoken's interface (a tiktoken Encoding or a "
                        f"BPETokenizer); {type(tokenizer).__name__} lacks {', '.join(missing)}")
    return tokenizer
