"""Checkers for chapter 1 (the byte-level BPE tokenizer).

- ``ch01.encode_piece``: ``encode_piece(piece: bytes, ranks: dict[bytes, int]) -> list[int]``, encoding by
  rank: repeatedly merge the adjacent pair whose concatenation has the lowest rank (leftmost on ties)
- ``ch01.encode_with_special``: ``encode_with_special(text, encode_ordinary, special_tokens) -> list[int]``:
  every special-token text (``special_tokens`` maps it to its id) becomes exactly its one id, and the text
  between them is encoded by ``encode_ordinary`` as if the special tokens were document boundaries
- ``ch01.stream_decode``: ``stream_decode(ids, vocab: dict[int, bytes]) -> list[str]``, one string per id:
  the text that can be shown once that token has arrived (a character split across tokens appears with
  the token that completes it)

Reference solutions: :mod:`gpt2_core.exercises.solutions.ch01`.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable

from ..text.bpe import BPETokenizer, bpe_encode_piece
from . import ExerciseFailed, exercise, expect_equal


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


# Merges across "<|", "|>" and ".<|" make the special text's ordinary ids depend on its neighbours, so
# "encode everything, then replace the special's ids" cannot work: the text must be split first.
_SPECIAL_TEXTS = [
    "no special token here, the end",
    "<|endoftext|>",
    "",
    "the end.<|endoftext|>The start",
    "<|endoftext|><|endoftext|>",
    " the<|pad|> the <|endoftext|>\n\nthe",
    "almost <|endoftext| and <|pad> and |>.",
    "<|pad|>then<|endoftext|>",
]


def _special_tokenizer() -> BPETokenizer:
    ranks = _toy_ranks()
    for token in [b"<|", b"|>", b".<|", b"|>.", b"en", b"end"]:
        ranks[token] = len(ranks)
    specials = {"<|endoftext|>": len(ranks), "<|pad|>": len(ranks) + 1}  # the ids right after the merges
    return BPETokenizer(ranks, specials)


@exercise("ch01.encode_with_special")
def check_encode_with_special(candidate: Callable) -> None:
    tok = _special_tokenizer()
    specials = tok.special_tokens

    def encode_ordinary(text: str) -> list[int]:
        if not isinstance(text, str):
            raise ExerciseFailed(f"encode_ordinary takes a str, you gave it {type(text).__name__}")
        return tok.encode_ordinary(text)  # special-token text stays ordinary text here

    for text in _SPECIAL_TEXTS:
        got = list(candidate(text, encode_ordinary, dict(specials)))
        want = tok.encode(text, allowed_special="all")
        what = f"text={text!r} with special_tokens={specials}"
        if got != want and text and got == tok.encode_ordinary(text):
            raise ExerciseFailed(f"for {what} you encoded the special-token text as ordinary text; each "
                                 "occurrence must become its one id")
        for name, token_id in specials.items():
            if got.count(token_id) != text.count(name):
                raise ExerciseFailed(f"for {what} {name!r} occurs {text.count(name)} time(s) but its id "
                                     f"{token_id} appears {got.count(token_id)} time(s) in your ids")
        expect_equal(got, want, what)
        expect_equal(tok.decode(got), text, f"decoding your ids of {text!r}")


# Each case is the list of token byte strings of one stream; together they are always valid UTF-8.
_STREAMS = [
    [b"Hello", b" world"],
    [b"\xe2", b"\x82", b"\xac"],  # "€", one byte per token
    [b"caf", b"\xc3", b"\xa9!"],  # "café!": the é is split
    [b"\xf0\x9f", b"\x91\x8d", b" ok"],  # a 4-byte emoji in two halves
    [b"\xe6\x97", b"\xa5\xe6", b"\x9c\xac"],  # "日本": the middle token ends one character, starts the next
    [b"a\xe2\x82", b"\xacb"],  # "a" can be shown at once, the "€" only with the next token
    [],
    [b"x"],
]


@exercise("ch01.stream_decode")
def check_stream_decode(candidate: Callable) -> None:
    pieces = sorted({p for stream in _STREAMS for p in stream})
    vocab = {i: bytes([i]) for i in range(256)} | {1000 + k: p for k, p in enumerate(pieces)}
    index = {p: i for i, p in vocab.items()}
    for stream in _STREAMS:
        ids = [index[p] for p in stream]
        decoder = codecs.getincrementaldecoder("utf-8")()  # strict: it holds back an unfinished character
        want = [decoder.decode(p) for p in stream]
        got = candidate(list(ids), dict(vocab))
        what = f"ids whose tokens are {stream}"
        if not isinstance(got, list) or not all(isinstance(s, str) for s in got):
            raise ExerciseFailed(f"for {what} return a list of str (one per id), got {got!r}")
        if len(got) != len(ids):
            raise ExerciseFailed(f"for {what} return one string per id ({len(ids)}), got {len(got)}")
        if any("\ufffd" in s for s in got):
            raise ExerciseFailed(f"for {what} you showed '\ufffd' (got {got!r}): a token holding part of a "
                                 "character must wait for the rest, not be decoded on its own")
        expect_equal(got, want, what)
