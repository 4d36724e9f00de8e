"""What the course's command-line tools share: one argparse type for a number in a range."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def number(kind: type, low: float | None = None, high: float | None = None,
           above: bool = False) -> Callable[[str], float]:
    """An argparse type: a ``kind`` (int or float) number ``>= low`` (``> low`` when ``above``) and ``<= high``;
    anything else is a one-line usage error that names the bound."""
    bounds = " and ".join(f"{op} {b:g}" for op, b in (((">" if above else ">="), low), ("<=", high)) if b is not None)

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        too_low = low is not None and (value <= low if above else value < low)
        if too_low or (high is not None and value > high) or value != value:  # value != value: NaN
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse
