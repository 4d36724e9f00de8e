"""Checkers for chapter 1 (the byte-level BPE tokenizer).

- ``ch01.count_pairs``: ``count_pairs(ids) -> dict[(a, b), count]`` of adjacent pairs
- ``ch01.merge_pair``: ``merge_pair(ids, pair, new_id) -> list[int]`` (left to right, non-overlapping)
- ``ch01.encode_piece``: ``encode_piece(piece: bytes, ranks: dict[bytes, int]) -> list[int]``, encoding by
  rank: repeatedly merge the adjacent pair whose concatenation has the lowest rank (leftmost on ties)
"""

from __future__ import annotations

from collections.abc import Callable

from ..tokenizer import bpe_encode_piece, count_pairs, merge_pair
from . import ExerciseFailed, exercise, expect_equal

# Lists that catch the usual slips: empty, one id, repeats at the ends, overlapping runs.
_ID_CASES = [[], [7], [1, 2], [1, 2, 1, 2, 3], [5, 5, 5, 5], [5, 5, 5], [3, 1, 2, 3, 1, 2, 1], [9, 8, 9, 8]]
_MERGE_CASES = [
    ([1, 2, 1, 2, 3], (1, 2), 99),
    ([5, 5, 5], (5, 5), 6),  # overlapping: only the left pair merges
    ([5, 5, 5, 5], (5, 5), 6),
    ([1, 2, 3], (2, 1), 7),  # pair absent: unchanged
    ([2, 1], (1, 2), 7),  # order matters
    ([], (1, 2), 3),
    ([4, 1, 2], (1, 2), 1000),  # pair at the end
]


@exercise("ch01.count_pairs")
def check_count_pairs(candidate: Callable) -> None:
    for ids in _ID_CASES:
        got = candidate(list(ids))
        if not isinstance(got, dict):
            raise ExerciseFailed(f"return a dict of (first, second) -> count, got {type(got).__name__}")
        expect_equal(dict(got), count_pairs(ids), f"ids={ids}")


@exercise("ch01.merge_pair")
def check_merge_pair(candidate: Callable) -> None:
    for ids, pair, new_id in _MERGE_CASES:
        got = candidate(list(ids), pair, new_id)
        expect_equal(list(got), merge_pair(ids, pair, new_id), f"ids={ids}, pair={pair}, new_id={new_id}")


def _toy_ranks() -> dict[bytes, int]:
    ranks = {bytes([b]): b for b in range(256)}
    for token in [b"aa", b"ab", b"aab", b"ba", b"abab", b" t", b"he", b" the", b"th"]:
        ranks[token] = len(ranks)
    return ranks


@exercise("ch01.encode_piece")
def check_encode_piece(candidate: Callable) -> None:
    ranks = _toy_ranks()
    # "aaa" and "aaaa" test leftmost-first on ties; "abab" is a token itself; "x" cannot merge at all.
    pieces = [b"x", b"ab", b"aaa", b"aaaa", b"aaab", b"abab", b"ababa", b"bab", b" the", b" then", b"\xe2"]
    for piece in pieces:
        got = candidate(piece, ranks)
        expect_equal(list(got), bpe_encode_piece(piece, ranks), f"piece={piece!r} with the toy ranks")
