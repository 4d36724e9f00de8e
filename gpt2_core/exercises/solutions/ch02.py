"""Reference solutions of chapter 2's exercises (see :mod:`gpt2_core.exercises.ch02` for the checkers).

Try each exercise in the notebook first; these are here to compare with afterwards.
"""

from __future__ import annotations

import math

import torch


def count_windows(num_tokens: int, context_length: int, stride: int) -> int:
    """Starts 0, s, 2s, ... while ``start + context_length`` (the last target) is still a token."""
    if num_tokens <= context_length:
        return 0
    return (num_tokens - context_length - 1) // stride + 1


def never_targets(num_tokens: int, context_length: int, stride: int) -> list[int]:
    """Window ``k`` predicts positions ``k*stride + 1 .. k*stride + context_length``; list the others."""
    predicted = [False] * num_tokens
    for k in range(count_windows(num_tokens, context_length, stride)):
        for p in range(k * stride + 1, k * stride + context_length + 1):
            predicted[p] = True
    return [p for p in range(num_tokens) if not predicted[p]]


def first_val_window(num_train_windows: int, context_length: int, stride: int) -> int:
    """Window ``j``'s first target ``j*s + 1`` must lie beyond the last training target ``(m-1)*s + c``.

    ``j*s + 1 > (m-1)*s + c``  <=>  ``j > m - 1 + (c - 1) / s``, so ``j = m + (c - 1) // s``.
    """
    return num_train_windows + (context_length - 1) // stride


def shift_matrix(k: int, dim: int) -> torch.Tensor:
    """A rotation by the angle ``k * w_i`` in each plane of dimensions (2i, 2i + 1).

    With ``s = sin(pos·w)``, ``c = cos(pos·w)`` and the angle-sum formulas,
    ``sin((pos + k)·w) = s cos(kw) + c sin(kw)`` and ``cos((pos + k)·w) = c cos(kw) - s sin(kw)``:
    linear in (s, c), with coefficients that depend on ``k`` alone, not on ``pos``.
    """
    m = torch.zeros(dim, dim)
    for i in range(dim // 2):
        angle = k * 10_000 ** (-2 * i / dim)
        cos, sin = math.cos(angle), math.sin(angle)
        m[2 * i, 2 * i], m[2 * i + 1, 2 * i] = cos, sin  # the new sine: s cos + c sin
        m[2 * i, 2 * i + 1], m[2 * i + 1, 2 * i + 1] = -sin, cos  # the new cosine: -s sin + c cos
    return m


SOLUTIONS = {
    "ch02.count_windows": count_windows,
    "ch02.never_targets": never_targets,
    "ch02.first_val_window": first_val_window,
    "ch02.shift_matrix": shift_matrix,
}
