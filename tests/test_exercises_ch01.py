"""Every chapter-1 checker accepts its reference solution and rejects plausible wrong answers."""

from __future__ import annotations

import pytest

from gpt2_core.exercises import check_exercise
from gpt2_core.exercises.solutions import ch01 as solution


def _ordinary_only(text, encode_ordinary, special_tokens):  # never turns the special text into its id
    return encode_ordinary(text)


def _replace_after_encoding(text, encode_ordinary, special_tokens):
    """Encode everything, then swap each special's ordinary ids for its id: breaks where merges cross it."""
    ids = encode_ordinary(text)
    for name, token_id in special_tokens.items():
        pattern = encode_ordinary(name)
        out, i = [], 0
        while i < len(ids):
            if ids[i : i + len(pattern)] == pattern:
                out.append(token_id)
                i += len(pattern)
            else:
                out.append(ids[i])
                i += 1
        ids = out
    return ids


def _first_special_only(text, encode_ordinary, special_tokens):
    name, token_id = next(iter(special_tokens.items()))
    return solution.encode_with_special(text, encode_ordinary, {name: token_id})


def _stripped_pieces(text, encode_ordinary, special_tokens):  # loses the spaces next to a special token
    return solution.encode_with_special(text, lambda s: encode_ordinary(s.strip()), special_tokens)


def _each_token_alone(ids, vocab):  # shows U+FFFD for a token that holds part of a character
    return [vocab[i].decode("utf-8", errors="replace") for i in ids]


def _wait_for_whole_token(ids, vocab):  # holds a whole token back instead of only the unfinished character
    shown, pending = [], b""
    for i in ids:
        pending += vocab[i]
        try:
            shown.append(pending.decode("utf-8"))
            pending = b""
        except UnicodeDecodeError:
            shown.append("")
    return shown


def _cumulative(ids, vocab):  # the whole text so far, each time
    return ["".join(solution.stream_decode(ids[: n + 1], vocab)) for n in range(len(ids))]


def _rightmost_on_ties(piece, ranks):
    return solution.encode_piece(piece[::-1], {token[::-1]: r for token, r in ranks.items()})[::-1]


# A plausible wrong answer for every checker (tests/test_exercise_solutions.py runs them all)
WRONG = {
    "ch01.encode_piece": _rightmost_on_ties,
    "ch01.encode_with_special": _ordinary_only,
    "ch01.stream_decode": _each_token_alone,
}


@pytest.mark.parametrize("wrong", [_replace_after_encoding, _first_special_only, _stripped_pieces])
def test_special_token_checker_catches_more_mistakes(wrong, capsys):
    assert not check_exercise("ch01.encode_with_special", wrong)
    assert "not quite" in capsys.readouterr().out


@pytest.mark.parametrize("wrong", [_wait_for_whole_token, _cumulative])
def test_stream_decode_checker_catches_more_mistakes(wrong, capsys):
    assert not check_exercise("ch01.stream_decode", wrong)
    assert "not quite" in capsys.readouterr().out

