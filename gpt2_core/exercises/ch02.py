"""Checkers for chapter 2 (embeddings and data loading).

- ``ch02.count_windows``: ``count_windows(num_tokens, context_length, stride) -> int``
- ``ch02.never_targets``: ``never_targets(num_tokens, context_length, stride) -> list[int]``, the positions
  of the token sequence that no window ever asks the model to predict
- ``ch02.first_val_window``: ``first_val_window(num_train_windows, context_length, stride) -> int``, the
  first window after the training windows whose targets share no position with any training target
- ``ch02.shift_matrix``: ``shift_matrix(k, dim) -> Tensor (dim, dim)``, the matrix ``M`` with
  ``sinusoidal(pos + k) = sinusoidal(pos) @ M`` for every position, for the fixed sinusoidal position
  encodings of chapter 2 (sin on even dimensions, cos on odd ones, frequencies ``10000 ** (-2i / dim)``)

``ch02.count_windows`` (``count_windows(num_tokens, context_length, stride) -> int``) is no longer asked
in the notebook; its checker stays for code that still calls it.

Reference solutions: :mod:`gpt2_core.exercises.solutions.ch02`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..text.windows import GPTDataset, num_windows
from . import ExerciseFailed, exercise, expect_equal

# (num_tokens, context_length, stride): overlapping, touching, gapped, exactly one window, too short.
_WINDOW_CASES = [(20, 4, 1), (20, 4, 4), (21, 4, 4), (23, 5, 7), (6, 5, 5), (5, 5, 1), (0, 3, 2),
                 (100, 16, 8)]


@exercise("ch02.count_windows")
def check_count_windows(candidate: Callable) -> None:
    for n, c, s in _WINDOW_CASES:
        got = candidate(n, c, s)
        expect_equal(got, num_windows(n, c, s), f"num_tokens={n}, context_length={c}, stride={s}")


def _target_positions(num_tokens: int, context_length: int, stride: int) -> set[int]:
    """Brute force: every position that is the target of some window, read off GPTDataset itself."""
    if num_tokens <= context_length:
        return set()
    dataset = GPTDataset(list(range(num_tokens)), context_length, stride)  # id == position
    return {int(t) for _, targets in dataset for t in targets}


# Adds stride > context_length (gaps) and tails too short for another window to the window cases.
_NEVER_CASES = [*_WINDOW_CASES, (10, 4, 2), (20, 3, 5), (13, 4, 1), (30, 4, 6), (9, 1, 3), (7, 1, 1)]


@exercise("ch02.never_targets")
def check_never_targets(candidate: Callable) -> None:
    for n, c, s in _NEVER_CASES:
        targets = _target_positions(n, c, s)
        want = [p for p in range(n) if p not in targets]
        got = candidate(n, c, s)
        what = f"num_tokens={n}, context_length={c}, stride={s}"
        if not isinstance(got, (list, tuple)):
            raise ExerciseFailed(f"for {what} return a list of positions, got {type(got).__name__}")
        expect_equal(sorted(int(p) for p in got), want, what)


def _first_clean_window(num_train: int, context_length: int, stride: int) -> int:
    """Brute force: walk forward until a window's targets miss every training target."""
    def targets(k: int) -> set[int]:
        return set(range(k * stride + 1, k * stride + context_length + 1))

    seen = set().union(*(targets(k) for k in range(num_train)))
    j = num_train
    while targets(j) & seen:
        j += 1
    return j


@exercise("ch02.first_val_window")
def check_first_val_window(candidate: Callable) -> None:
    # Touching, overlapping by a whole number of strides or not, gapped, and stride 1.
    for m, c, s in [(10, 4, 4), (10, 4, 1), (10, 4, 3), (5, 4, 2), (1, 8, 8), (3, 5, 7), (7, 6, 4), (2, 1, 1),
                    (4, 16, 5), (100, 128, 64)]:
        got = candidate(m, c, s)
        if isinstance(got, bool) or not isinstance(got, int):
            raise ExerciseFailed(f"return a window index (an int), got {type(got).__name__}")
        want = _first_clean_window(m, c, s)
        what = f"num_train_windows={m}, context_length={c}, stride={s}"
        if got < m:
            raise ExerciseFailed(f"for {what} window {got} is itself a training window (0 .. {m - 1})")
        if got < want:
            shared = sorted(set(range(got * s + 1, got * s + c + 1)) & set(range(1, (m - 1) * s + c + 1)))
            raise ExerciseFailed(f"for {what} window {got} still predicts position(s) {shared[:5]}, "
                                 f"which training window(s) predict too; the answer is {want}")
        expect_equal(got, want, what)


def sinusoidal(n_positions: int, dim: int, first: int = 0) -> torch.Tensor:
    """Vaswani et al.'s fixed position encodings, as chapter 2 draws them, of positions ``first ..
    first + n_positions - 1``: row ``pos`` holds ``sin(pos * w_i)`` in dimension ``2i`` and ``cos(pos * w_i)``
    in ``2i + 1``, ``w_i = 10000 ** (-2i / dim)``."""
    pos = torch.arange(first, first + n_positions, dtype=torch.float64)[:, None]
    freq = 10_000 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    table = torch.zeros(n_positions, dim, dtype=torch.float64)
    table[:, 0::2], table[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return table


@exercise("ch02.shift_matrix")
def check_shift_matrix(candidate: Callable) -> None:
    for k, dim in [(1, 2), (3, 4), (0, 6), (5, 8), (-2, 8), (40, 16), (7, 64)]:
        what = f"k={k}, dim={dim}"
        got = candidate(k, dim)
        if not isinstance(got, torch.Tensor):
            raise ExerciseFailed(f"for {what} return a torch.Tensor, got {type(got).__name__}")
        if tuple(got.shape) != (dim, dim):
            raise ExerciseFailed(f"for {what} return a ({dim}, {dim}) matrix, got shape {tuple(got.shape)}")
        moved = sinusoidal(50, dim) @ got.double()  # positions 0 .. 49, moved by the candidate
        after = sinusoidal(50, dim, first=k)
        if torch.allclose(moved, after, atol=1e-6):
            continue
        if torch.allclose(moved, sinusoidal(50, dim, first=-k), atol=1e-6):
            raise ExerciseFailed(f"for {what} your matrix moves every position back by {k} instead of forward "
                                 "(it is the transpose of the answer: check the sign of each sine)")
        worst = int((moved - after).abs().amax(dim=1).argmax())
        raise ExerciseFailed(f"for {what} sinusoidal(pos) @ M should equal sinusoidal(pos + {k}), but at pos = "
                             f"{worst} they differ by up to {float((moved - after).abs().max()):.3g}. "
                             "Hint: dimensions 2i and 2i + 1 hold sin(pos·w_i) and cos(pos·w_i); write "
                             "sin((pos + k)·w_i) and cos((pos + k)·w_i) with the angle-sum formulas")
