"""Checkers for chapter 2 (embeddings and data loading).

- ``ch02.count_windows``: ``count_windows(num_tokens, context_length, stride) -> int``
- ``ch02.make_windows``: ``make_windows(token_ids, context_length, stride) -> list of (inputs, targets)``
- ``ch02.input_embeddings``: ``input_embeddings(idx, tok_weight, pos_weight) -> (batch, tokens, emb_dim)``
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..data import GPTDataset, num_windows
from . import ExerciseFailed, exercise, expect_equal

# (num_tokens, context_length, stride): overlapping, touching, gapped, exactly one window, too short.
_WINDOW_CASES = [(20, 4, 1), (20, 4, 4), (21, 4, 4), (23, 5, 7), (6, 5, 5), (5, 5, 1), (0, 3, 2),
                 (100, 16, 8)]


def _ids(n: int) -> list[int]:
    # Distinct, non-sequential ids so that an off-by-one slice cannot pass by accident.
    return [(7 * i + 3) % 997 for i in range(n)]


@exercise("ch02.count_windows")
def check_count_windows(candidate: Callable) -> None:
    for n, c, s in _WINDOW_CASES:
        got = candidate(n, c, s)
        expect_equal(got, num_windows(n, c, s), f"num_tokens={n}, context_length={c}, stride={s}")


def _as_list(x: object) -> list[int]:
    return [int(v) for v in (x.tolist() if isinstance(x, torch.Tensor) else x)]  # type: ignore[union-attr]


@exercise("ch02.make_windows")
def check_make_windows(candidate: Callable) -> None:
    for n, c, s in _WINDOW_CASES:
        ids = _ids(n)
        what = f"{n} token ids, context_length={c}, stride={s}"
        want = [(_as_list(x), _as_list(y)) for x, y in GPTDataset(ids, c, s)] if n > c else []
        got = list(candidate(list(ids), c, s))
        if len(got) != len(want):
            raise ExerciseFailed(f"for {what} expected {len(want)} windows but got {len(got)}")
        for i, (pair, (want_x, want_y)) in enumerate(zip(got, want, strict=True)):
            if len(pair) != 2:
                raise ExerciseFailed(f"window {i} should be a pair (inputs, targets), got {len(pair)} items")
            expect_equal(_as_list(pair[0]), want_x, f"the inputs of window {i} ({what})")
            expect_equal(_as_list(pair[1]), want_y, f"the targets of window {i} ({what})")


@exercise("ch02.input_embeddings")
def check_input_embeddings(candidate: Callable) -> None:
    gen = torch.Generator().manual_seed(2)
    for batch, tokens, vocab, context, dim in [(2, 5, 11, 8, 3), (1, 8, 20, 8, 4), (3, 1, 7, 4, 6)]:
        tok = torch.randn(vocab, dim, generator=gen)
        pos = torch.randn(context, dim, generator=gen)
        idx = torch.randint(0, vocab, (batch, tokens), generator=gen)
        want = torch.nn.functional.embedding(idx, tok) + pos[:tokens]
        got = candidate(idx.clone(), tok.clone(), pos.clone())
        what = f"a batch of shape {(batch, tokens)} with emb_dim={dim}"
        if not isinstance(got, torch.Tensor):
            raise ExerciseFailed(f"return a tensor, got {type(got).__name__}")
        expect_equal(tuple(got.shape), tuple(want.shape), f"the output shape for {what}")
        if not torch.allclose(got.float(), want, atol=1e-6):
            raise ExerciseFailed(
                f"for {what} the values differ (largest gap {float((got - want).abs().max()):.3g}); "
                "look up each token's row, then add the row of its position (0, 1, 2, ...)"
            )
