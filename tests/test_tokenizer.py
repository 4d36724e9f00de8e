"""Tests of the byte-level BPE tokenizer: GPT-2 parity with tiktoken, training, errors, exercises."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from functools import lru_cache
from itertools import pairwise
from pathlib import Path

import pytest
import tiktoken
import tiktoken.load
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpt2_core.exercises import check_exercise
from gpt2_core.text.bpe import BPETokenizer, bpe_encode_piece
from gpt2_core.text.bpe_train import count_pairs, merge_pair
from gpt2_core.text.ranks import ENDOFTEXT, ENDOFTEXT_ID, GPT2_PATTERN, gpt2_encoding
from gpt2_core.text.ranks import gpt2_ranks_path as ensure_ranks_file

HYPO = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TRICKY = [
    "",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "I'm you're he's we'll they've I'd DON'T 'tis ''s",
    "   leading and trailing spaces   ",
    "a  b   c    d",
    "\n\n\n\nparagraphs\n\n",
    "line one\r\nline two\r\n\r\n",
    "tabs\tand\t\tmore\ttabs\t",
    " " * 300,
    "\n" * 257 + "x",
    "\t \n \r\n \x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2028\u2029\u202f\u205f\u3000",
    "def f(x):\n    return {'a': x ** 2}  # comment\n",
    "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "👨‍👩‍👧‍👦 family, 🏳️‍🌈 flag, 👍🏽 thumbs",
    "日本語のテキストと中文和한국어",
    "Ünïcödé naïve café résumé",
    "e\u0301 combining accent, \u0915\u094d\u0937 devanagari",
    "مرحبا بالعالم",
    "12345678901234567890 3.14159 1,000,000 ١٢٣",
    "<|endoftext|>",
    "before<|endoftext|>after <|endoftext|> <|endoftext",
    "!!!???... ---- ==== ____ ****",
    "'s's's 's 'll'll've",
    "http://example.com/path?q=1&r=2#frag",
    "\x00\x01\x02 control \x7f",
    "\ufeffBOM and \ufffd replacement",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math letters 𝟙𝟚𝟛",
]

# Pieces that stress the pre-tokenizer's edges when glued together in random orders.
BIASED = [" ", "  ", "\n", "\r\n", "\t", "\u3000", "\xa0", "'", "'s", "'ll", "s", "a", "Z", "é", "1", "42",
          "١", "!", ".", "<|endoftext|>", "👍", "\u200d", "🏽", "\u0301", "日", "_", "\x1c", "\x85", "ab"]


@pytest.fixture(scope="module")
def trained() -> BPETokenizer:
    return BPETokenizer.train(SAMPLE, 320)


@pytest.fixture(scope="module")
def gpt2() -> BPETokenizer:
    return BPETokenizer.from_gpt2()


R50K_URL = "https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken"


@lru_cache(maxsize=1)
def tiktoken_gpt2() -> tiktoken.Encoding:
    """The reference: tiktoken's OWN ``r50k_base`` encoding (GPT-2's ranks with tiktoken's pattern and
    loader; its ``gpt2`` encoding has the same ranks but reads other files), not one built from our
    pattern. Offline: the verified ranks file goes where tiktoken's cache looks for it (TIKTOKEN_CACHE_DIR,
    named by the sha1 of the blob URL); tiktoken checks its own sha256 on it, and any attempt to download
    fails the test run."""
    def no_network(url: str) -> bytes:
        raise AssertionError(f"tiktoken tried to download {url}; the cached ranks file was not used")

    with tempfile.TemporaryDirectory() as cache, pytest.MonkeyPatch.context() as mp:
        shutil.copyfile(ensure_ranks_file(), Path(cache) / hashlib.sha1(R50K_URL.encode()).hexdigest())
        mp.setenv("TIKTOKEN_CACHE_DIR", cache)
        mp.setattr(tiktoken.load, "read_file", no_network)
        return tiktoken.get_encoding("r50k_base")  # read once here; tiktoken keeps it in its registry


def assert_gpt2_parity(tok: BPETokenizer, text: str) -> None:
    want = tiktoken_gpt2().encode(text, disallowed_special=())
    got = tok.encode(text, disallowed_special=())
    assert got == want, f"{text!r}: {got} != tiktoken {want}"
    assert tok.decode(got) == text


# --- GPT-2 parity -------------------------------------------------------------------------------


@pytest.mark.parametrize("text", TRICKY)
def test_gpt2_parity_fixed(gpt2: BPETokenizer, text: str) -> None:
    assert_gpt2_parity(gpt2, text)


@HYPO
@given(st.text(max_size=120))
def test_gpt2_parity_any_unicode(gpt2: BPETokenizer, text: str) -> None:
    assert_gpt2_parity(gpt2, text)


@HYPO
@given(st.text(alphabet=" \t\n\r\x0b\x0c\x85\xa0\u2003\u3000ax'.", max_size=200))
def test_gpt2_parity_whitespace_heavy(gpt2: BPETokenizer, text: str) -> None:
    assert_gpt2_parity(gpt2, text)


@HYPO
@given(st.lists(st.sampled_from(BIASED), max_size=60).map("".join))
def test_gpt2_parity_biased_alphabet(gpt2: BPETokenizer, text: str) -> None:
    assert_gpt2_parity(gpt2, text)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(codec=None, categories=["Cs", "Ll", "Zs"]), max_size=30))
def test_gpt2_parity_lone_surrogates(gpt2: BPETokenizer, text: str) -> None:
    # Lone surrogates cannot be UTF-8 encoded; like tiktoken we encode them as U+FFFD.
    want = tiktoken_gpt2().encode(text, disallowed_special=())
    assert gpt2.encode(text, disallowed_special=()) == want
    assert gpt2.encode_ordinary(text) == want
    assert gpt2.decode(want) == tiktoken_gpt2().decode(want)


def test_gpt2_long_runs_and_large_text(gpt2: BPETokenizer) -> None:
    for text in [" " * 5000, "a" * 3000, "ab" * 1500 + "\n" * 2000, "\U0001f600" * 500, "".join(TRICKY) * 40]:
        assert_gpt2_parity(gpt2, text)


def test_gpt2_special_tokens(gpt2: BPETokenizer) -> None:
    text = "one<|endoftext|>two <|endoftext|><|endoftext|>"
    want = tiktoken_gpt2().encode(text, allowed_special="all")
    assert gpt2.encode(text, allowed_special="all") == want
    assert gpt2.encode(text, allowed_special={ENDOFTEXT}) == want
    assert want.count(ENDOFTEXT_ID) == 3
    assert ENDOFTEXT_ID not in gpt2.encode_ordinary(text)  # ordinary text
    with pytest.raises(ValueError, match="special token"):  # tiktoken's default: special text must be allowed
        gpt2.encode(text)
    with pytest.raises(ValueError, match="special token"):
        tiktoken_gpt2().encode(text)
    assert gpt2.decode(want) == text
    assert gpt2.n_vocab == tiktoken_gpt2().n_vocab and gpt2.eot_token == tiktoken_gpt2().eot_token
    assert gpt2.special_tokens == {ENDOFTEXT: ENDOFTEXT_ID}


def test_gpt2_decode_partial_utf8(gpt2: BPETokenizer) -> None:
    char = "\U0001d518"  # a rare 4-byte character: GPT-2 spells it with several byte-level tokens
    ids = gpt2.encode(char)
    assert len(ids) > 1
    assert gpt2.decode_bytes(ids[:1]) == char.encode()[: len(gpt2.decode_single_token_bytes(ids[0]))]
    assert gpt2.decode(ids[:1]) == tiktoken_gpt2().decode(ids[:1])  # invalid UTF-8 -> U+FFFD, like tiktoken
    assert "\ufffd" in gpt2.decode(ids[:1])
    assert gpt2.decode_bytes(ids) == char.encode()


def test_gpt2_merges_are_consistent(gpt2: BPETokenizer) -> None:
    merges = gpt2.merges
    ranks = gpt2.ranks
    assert len(merges) == len(ranks) - 256
    assert [new_id for _, new_id in merges] == list(range(256, len(ranks)))
    for (left, right), new_id in merges:
        assert ranks[left + right] == new_id
        assert ranks[left] < new_id and ranks[right] < new_id


def test_reference_is_tiktokens_own_encoding_object() -> None:
    from tiktoken_ext.openai_public import r50k_pat_str

    ref = tiktoken_gpt2()
    assert ref.name == "r50k_base" and ref.n_vocab == ENDOFTEXT_ID + 1
    assert ref._pat_str == r50k_pat_str != GPT2_PATTERN  # tiktoken's pattern, not the one we wrote
    assert ref is tiktoken.get_encoding("r50k_base")


@pytest.mark.parametrize("text", TRICKY)
def test_our_gpt2_encoding_equals_tiktokens(text: str) -> None:
    assert gpt2_encoding().encode(text, allowed_special="all") == tiktoken_gpt2().encode(text, allowed_special="all")


def test_gpt2_encoding_is_cached_and_offline() -> None:
    enc = gpt2_encoding()
    assert enc is gpt2_encoding()
    assert enc.n_vocab == ENDOFTEXT_ID + 1
    assert enc.decode(enc.encode("offline")) == "offline"


# --- encoding by rank ------------------------------------------------------------------------------


def slow_encode_piece(piece: bytes, ranks: dict[bytes, int]) -> list[int]:
    """Straight from the definition: rescan every adjacent pair after each merge."""
    if piece in ranks:
        return [ranks[piece]]
    parts = [piece[i : i + 1] for i in range(len(piece))]
    while True:
        candidates = [(ranks[a + b], i) for i, (a, b) in enumerate(pairwise(parts)) if a + b in ranks]
        if not candidates:
            return [ranks[p] for p in parts]
        _, i = min(candidates)
        parts[i : i + 2] = [parts[i] + parts[i + 1]]


TOY_RANKS = {bytes([b]): b for b in range(256)}
for _tok in [b"ab", b"bc", b"aa", b"abc", b"ca", b"aab", b"cab", b"aaa", b"bcab"]:
    TOY_RANKS[_tok] = len(TOY_RANKS)


@HYPO
@given(st.binary(max_size=40), st.text(alphabet="abc", max_size=40))
def test_bpe_encode_piece_matches_definition(gpt2: BPETokenizer, raw: bytes, abc: str) -> None:
    for piece in (raw, abc.encode()):
        assert bpe_encode_piece(piece, TOY_RANKS) == slow_encode_piece(piece, TOY_RANKS)
        assert bpe_encode_piece(piece, gpt2.ranks) == slow_encode_piece(piece, gpt2.ranks)


def test_bpe_encode_piece_needs_all_bytes() -> None:
    with pytest.raises(ValueError, match="256 single bytes"):
        bpe_encode_piece(b"xy", {b"x": 0})


# --- building blocks ---------------------------------------------------------------------------------


def test_count_pairs_examples() -> None:
    assert count_pairs([1, 2, 1, 2, 3]) == {(1, 2): 2, (2, 1): 1, (2, 3): 1}
    assert count_pairs([4, 4, 4]) == {(4, 4): 2}
    assert count_pairs([7]) == {} and count_pairs([]) == {}
    tally = count_pairs([1, 2], weight=3)
    assert count_pairs([1, 2, 2], tally, 2) == {(1, 2): 5, (2, 2): 2}


def test_merge_pair_examples() -> None:
    assert merge_pair([1, 2, 1, 2, 3], (1, 2), 9) == [9, 9, 3]
    assert merge_pair([5, 5, 5], (5, 5), 6) == [6, 5]
    assert merge_pair([2, 1], (1, 2), 6) == [2, 1]


@HYPO
@given(st.lists(st.integers(0, 3), max_size=30), st.integers(0, 3), st.integers(0, 3))
def test_merge_pair_properties(ids: list[int], a: int, b: int) -> None:
    vocab = {i: bytes([65 + i]) for i in range(4)}
    vocab[99] = vocab[a] + vocab[b]
    merged = merge_pair(ids, (a, b), 99)
    assert b"".join(vocab[i] for i in merged) == b"".join(vocab[i] for i in ids)  # nothing lost or reordered
    assert len(ids) - len(merged) == merged.count(99)
    assert (a, b) not in count_pairs(merged)  # every occurrence was merged


# --- training ----------------------------------------------------------------------------------------


SAMPLE = (
    "The cat sat on the mat. The cat ate the rat. That's the thing: the cats and the rats! "
    "A tokenizer learns merges; merges make tokens, tokens make text shorter.\n\n" * 3
    + "<|endoftext|>Numbers 1234 and 5678, then more cats on more mats."
)


@pytest.mark.parametrize("vocab_size", [257, 270, 320, 400])
def test_fast_and_naive_training_agree(vocab_size: int) -> None:
    fast = BPETokenizer.train(SAMPLE, vocab_size)
    naive = BPETokenizer.train(SAMPLE, vocab_size, naive=True)
    assert fast.merges == naive.merges
    assert fast.ranks == naive.ranks
    assert fast.encode_ordinary(SAMPLE) == naive.encode_ordinary(SAMPLE)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(list("aab bc\n'é") + ["the ", "<|endoftext|>"]), max_size=80).map("".join),
       st.integers(256, 330))
def test_fast_and_naive_training_agree_random(text: str, n_tokens: int) -> None:
    fast = BPETokenizer.train(text, n_tokens + 1)
    naive = BPETokenizer.train(text, n_tokens + 1, naive=True)
    assert fast.merges == naive.merges


def test_training_result_shape() -> None:
    tok = BPETokenizer.train(SAMPLE, 300, special_tokens=[ENDOFTEXT, "<|pad|>"])
    assert tok.n_vocab == 300
    assert tok.special_tokens == {ENDOFTEXT: 298, "<|pad|>": 299}
    ranks = tok.ranks
    assert sorted(ranks.values()) == list(range(298))
    assert all(ranks[bytes([b])] == b for b in range(256))
    assert len(tok.merges) == 298 - 256
    for (left, right), new_id in tok.merges:
        assert ranks[left + right] == new_id
    assert all(ENDOFTEXT.encode() not in token for token in ranks)  # specials are never learned as merges
    ids = tok.encode(SAMPLE, allowed_special="all")
    assert ids.count(298) == 1 and tok.decode(ids) == SAMPLE
    assert len(tok.encode_ordinary(SAMPLE)) < len(SAMPLE.encode()) / 2  # the merges compress their own text


def test_training_merges_most_frequent_pair_first() -> None:
    tok = BPETokenizer.train("xyxyxy zz", 258, special_tokens=[])
    assert tok.merges[0] == ((b"x", b"y"), 256)
    assert tok.merges[1] == ((b"xy", b"xy"), 257)


def test_training_stops_when_out_of_pairs() -> None:
    tok = BPETokenizer.train("ab ab", 1000, special_tokens=[ENDOFTEXT])
    # Chunks are "ab" and " ab": merges ab, then " "+ab; nothing is left to merge after that.
    assert [m for m, _ in tok.merges] == [(b"a", b"b"), (b" ", b"ab")]
    assert tok.n_vocab == 256 + 2 + 1


@HYPO
@given(st.text(max_size=80))
def test_trained_tokenizer_round_trips_any_text(trained: BPETokenizer, text: str) -> None:
    tok = trained
    assert tok.decode(tok.encode_ordinary(text)) == text
    assert tok.decode(tok.encode(text, allowed_special="all")) == text


# --- errors --------------------------------------------------------------------------------------------


def test_training_errors() -> None:
    with pytest.raises(ValueError, match="at least 256"):
        BPETokenizer.train("abc", 200)
    with pytest.raises(ValueError, match="258"):
        BPETokenizer.train("abc", 257, special_tokens=["<a>", "<b>"])
    with pytest.raises(TypeError, match="expects a str"):
        BPETokenizer.train(b"bytes", 300)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="vocab_size must be an int"):
        BPETokenizer.train("abc", 300.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="list of strings"):
        BPETokenizer.train("abc", 300, special_tokens="<|endoftext|>")
    with pytest.raises(ValueError, match="duplicates"):
        BPETokenizer.train("abc", 300, special_tokens=["<a>", "<a>"], naive=True)


def test_encode_errors(gpt2: BPETokenizer) -> None:
    with pytest.raises(TypeError, match="decode bytes to str"):
        gpt2.encode(b"hello")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expects a str"):
        gpt2.encode(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown special"):
        gpt2.encode("x", allowed_special={"<|pad|>"})
    with pytest.raises(TypeError, match="did you mean"):
        gpt2.encode("x", allowed_special=ENDOFTEXT)


def test_decode_errors(gpt2: BPETokenizer) -> None:
    with pytest.raises(ValueError, match="unknown token id 50257"):
        gpt2.decode([1, 50257])
    with pytest.raises(ValueError, match="unknown token id -1"):
        gpt2.decode([1, -1])
    with pytest.raises(TypeError, match="must be ints"):
        gpt2.decode([1, 2.0])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="must be ints"):
        gpt2.decode_bytes(["a"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="wrap one id"):
        gpt2.decode(5)  # type: ignore[arg-type]
    assert gpt2.decode(iter([15496, 995])) == gpt2.decode((15496, 995)) == "Hello world"


def test_constructor_errors() -> None:
    with pytest.raises(ValueError, match="single bytes"):
        BPETokenizer({b"a": 0})
    ranks = {bytes([b]): b for b in range(256)}
    with pytest.raises(ValueError, match="distinct"):
        BPETokenizer(ranks, {"<s>": 5})
    with pytest.raises(TypeError, match="must be ints"):
        BPETokenizer({**ranks, b"ab": 256.0})
    with pytest.raises(TypeError, match="dict"):
        BPETokenizer([b"a"])  # type: ignore[arg-type]
    plain = BPETokenizer(ranks)
    assert plain.encode("hé") == list("hé".encode()) and plain.merges == []


# --- exercises -------------------------------------------------------------------------------------------


def _stub(*args: object) -> None:
    raise NotImplementedError


def test_exercise_checkers(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_exercise("ch01.encode_piece", bpe_encode_piece)
    assert check_exercise("ch01.encode_piece", slow_encode_piece)
    # Typical mistakes are caught.
    leftmost_last = lambda piece, ranks: slow_encode_piece(piece[::-1], ranks)[::-1]  # noqa: E731
    assert not check_exercise("ch01.encode_piece", leftmost_last)
    assert not check_exercise("ch01.encode_piece", _stub)
    assert "not attempted" in capsys.readouterr().out


def test_chunk_cache_is_bounded_and_transparent(monkeypatch: pytest.MonkeyPatch) -> None:
    import gpt2_core.text.bpe as tokenizer_module

    tok = BPETokenizer.from_gpt2()
    text = " ".join(TRICKY)
    first = tok.encode_ordinary(text)
    monkeypatch.setattr(tokenizer_module, "_CACHE_LIMIT", 3)
    assert tok.encode_ordinary(text) == first  # served from the cache
    assert tok.encode("hi there") == gpt2_encoding().encode("hi there")
    assert set(tok._cache) == {"hi", " there"}  # the big cache was dropped before this call
