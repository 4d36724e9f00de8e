"""Reference solutions of chapter 1's exercises (see :mod:`gpt2_core.exercises.ch01` for the checkers).

Try each exercise in the notebook first; these are here to compare with afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import pairwise


def encode_piece(piece: bytes, ranks: dict[bytes, int]) -> list[int]:
    """Merge the adjacent parts whose concatenation has the lowest rank (leftmost on ties) until none is a token."""
    parts = [piece[i : i + 1] for i in range(len(piece))]
    while True:
        candidates = [(ranks[a + b], i) for i, (a, b) in enumerate(pairwise(parts)) if a + b in ranks]
        if not candidates:
            return [ranks[p] for p in parts]
        _, i = min(candidates)  # (rank, position): the lowest rank, then the leftmost
        parts[i : i + 2] = [parts[i] + parts[i + 1]]


def encode_with_special(text: str, encode_ordinary: Callable[[str], list[int]],
                        special_tokens: dict[str, int]) -> list[int]:
    """Cut ``text`` at the special tokens *before* encoding, so no chunk or merge ever spans one."""
    if not special_tokens:
        return encode_ordinary(text)
    # Longest names first, so a name that starts another one cannot win; the group keeps the separators.
    names = sorted(special_tokens, key=len, reverse=True)
    pieces = re.split("(" + "|".join(map(re.escape, names)) + ")", text)
    ids: list[int] = []
    for k, piece in enumerate(pieces):
        if k % 2:  # odd positions are the separators re.split kept: the special tokens
            ids.append(special_tokens[piece])
        elif piece:
            ids.extend(encode_ordinary(piece))
    return ids


def _utf8_length(lead: int) -> int:
    """How many bytes the character starting with byte ``lead`` has (from its leading bits)."""
    if lead < 0x80:
        return 1
    if lead >> 5 == 0b110:
        return 2
    if lead >> 4 == 0b1110:
        return 3
    return 4


def stream_decode(ids: list[int], vocab: dict[int, bytes]) -> list[str]:
    """After each token, show every character whose bytes are complete; hold back an unfinished one."""
    shown: list[str] = []
    pending = b""
    for token_id in ids:
        pending += vocab[token_id]
        end = 0  # pending[:end] is made of whole characters
        while end < len(pending) and end + _utf8_length(pending[end]) <= len(pending):
            end += _utf8_length(pending[end])
        shown.append(pending[:end].decode("utf-8"))
        pending = pending[end:]
    return shown


SOLUTIONS = {
    "ch01.encode_piece": encode_piece,
    "ch01.encode_with_special": encode_with_special,
    "ch01.stream_decode": stream_decode,
}
