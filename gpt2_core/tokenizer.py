"""Byte-level byte-pair encoding (BPE), the tokenizer of GPT-2.

Text is turned into UTF-8 bytes, so every string can be encoded and there is no "unknown" token: the
256 single bytes are always in the vocabulary. A pre-tokenizer regex (``GPT2_PATTERN``) first cuts the
text into chunks (words with their leading space, numbers, punctuation runs, whitespace); merges never
cross a chunk boundary. Training (Sennrich et al., 2016) repeatedly fuses the most frequent adjacent
pair of tokens into a new token. Encoding follows GPT-2/tiktoken: inside a chunk, repeatedly merge the
adjacent pair whose *concatenated bytes* have the lowest rank (id) in the vocabulary.

``BPETokenizer.from_gpt2()`` loads GPT-2's real ranks and encodes exactly like tiktoken's ``gpt2``
encoding; ``gpt2_encoding()`` builds that tiktoken encoding offline.
"""

from __future__ import annotations

import heapq
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from functools import lru_cache
from itertools import chain, pairwise
from typing import TYPE_CHECKING

import regex

from .bpe_ranks import ENDOFTEXT, ENDOFTEXT_ID, GPT2_PATTERN, load_ranks

if TYPE_CHECKING:
    import tiktoken

__all__ = [
    "BPETokenizer",
    "count_pairs",
    "merge_pair",
    "bpe_encode_piece",
    "gpt2_encoding",
    "GPT2_PATTERN",
    "ENDOFTEXT",
]

Pair = tuple[int, int]
Merge = tuple[tuple[bytes, bytes], int]
_NO_RANK = sys.maxsize  # "this pair cannot merge"; an int so that min() over ranks stays fast
_CACHE_LIMIT = 200_000  # chunk -> ids cache entries kept before the cache is cleared


# --- building blocks (also the reference solutions of the chapter's exercises) -----------------


def count_pairs(
    ids: Sequence[int], counts: dict[Pair, int] | None = None, weight: int = 1
) -> dict[Pair, int]:
    """Count adjacent pairs in ``ids``: ``[1, 2, 1, 2] -> {(1, 2): 2, (2, 1): 1}``.

    Pass ``counts`` to add to an existing tally, and ``weight`` to count each pair that many times
    (used when ``ids`` stands for a chunk that occurs ``weight`` times in the text).
    """
    counts = {} if counts is None else counts
    for pair in pairwise(ids):
        counts[pair] = counts.get(pair, 0) + weight
    return counts


def merge_pair(ids: Sequence[int], pair: Pair, new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids`` (left to right, non-overlapping) by ``new_id``."""
    first, second = pair
    out: list[int] = []
    i, n = 0, len(ids)
    while i < n:
        if i + 1 < n and ids[i] == first and ids[i + 1] == second:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def bpe_encode_piece(piece: bytes, ranks: dict[bytes, int]) -> list[int]:
    """Encode one pre-token chunk by rank, exactly as tiktoken does.

    Start from single bytes; repeatedly merge the adjacent pair whose concatenation has the lowest
    rank (leftmost on ties); stop when no adjacent concatenation is in ``ranks``. A chunk that is
    itself a token is returned whole (tiktoken's shortcut; it can differ from merging step by step).
    """
    whole = ranks.get(piece)
    if whole is not None:
        return [whole]
    # bounds[j] is where part j starts; pair_ranks[j] is the rank of part j + part j+1.
    bounds = list(range(len(piece) + 1))
    pair_ranks = [ranks.get(piece[i : i + 2], _NO_RANK) for i in range(len(piece) - 1)]
    while pair_ranks:
        best = min(pair_ranks)
        if best == _NO_RANK:
            break
        i = pair_ranks.index(best)  # leftmost lowest rank
        del bounds[i + 1]
        del pair_ranks[i]
        # Only the two pairs touching the merged part change.
        if i < len(pair_ranks):
            pair_ranks[i] = ranks.get(piece[bounds[i] : bounds[i + 2]], _NO_RANK)
        if i > 0:
            pair_ranks[i - 1] = ranks.get(piece[bounds[i - 1] : bounds[i + 1]], _NO_RANK)
    try:
        return [ranks[piece[bounds[j] : bounds[j + 1]]] for j in range(len(bounds) - 1)]
    except KeyError as err:
        missing = err.args[0]
        raise ValueError(f"byte {missing!r} has no token: ranks must contain all 256 single bytes") from None


# --- helpers ---------------------------------------------------------------------------------------


def _check_text(text: object, what: str) -> str:
    if not isinstance(text, str):
        is_bytes = isinstance(text, bytes | bytearray)
        hint = " (decode bytes to str first, e.g. data.decode('utf-8'))" if is_bytes else ""
        raise TypeError(f"{what} expects a str, got {type(text).__name__}{hint}")
    return text


def _utf8(text: str) -> bytes:
    """UTF-8 bytes of ``text``; lone surrogates become U+FFFD first, as tiktoken does."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return _fix_surrogates(text).encode("utf-8")


def _fix_surrogates(text: str) -> str:
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _special_splitter(specials: Iterable[str]) -> regex.Pattern | None:
    """A regex that finds any of ``specials`` (longest first, so overlapping names pick the longest)."""
    names = sorted(specials, key=len, reverse=True)
    if not names:
        return None
    return regex.compile("(" + "|".join(regex.escape(name) for name in names) + ")")


def _training_chunks(text: str, pattern: str, specials: Sequence[str]) -> Counter[bytes]:
    """How often each pre-token chunk (as UTF-8 bytes) occurs; special-token text is cut out first."""
    splitter = _special_splitter(specials)
    segments = splitter.split(text)[::2] if splitter else [text]  # [::2] drops the specials themselves
    compiled = regex.compile(pattern)
    chunks: Counter[str] = Counter()
    for segment in segments:
        chunks.update(compiled.findall(segment))
    return Counter({_utf8(chunk): n for chunk, n in chunks.items()})


def _check_training_args(text: object, vocab_size: object, special_tokens: object) -> list[str]:
    _check_text(text, "BPETokenizer.train")
    if isinstance(special_tokens, str):
        raise TypeError(f"special_tokens must be a list of strings, e.g. [{special_tokens!r}], not a str")
    specials = list(special_tokens)  # type: ignore[call-overload]
    for name in specials:
        if not isinstance(name, str) or not name:
            raise TypeError(f"special tokens must be non-empty strings, got {name!r}")
    if len(set(specials)) != len(specials):
        raise ValueError(f"special_tokens has duplicates: {specials}")
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
        raise TypeError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
    if vocab_size < 256 + len(specials):
        raise ValueError(
            f"vocab_size={vocab_size} is too small: it must be at least 256 (one token per byte) + "
            f"{len(specials)} special token(s) = {256 + len(specials)}"
        )
    return specials


# --- the two trainers ------------------------------------------------------------------------------


def _merge_step(vocab: list[bytes], index: dict[bytes, int], pair: Pair) -> tuple[Merge, int]:
    """Register the merge of ``pair``; reuse the id if those bytes are already a token."""
    left, right = vocab[pair[0]], vocab[pair[1]]
    new_bytes = left + right
    new_id = index.get(new_bytes)
    if new_id is None:  # usual case; a byte string reachable by two different splits keeps one id
        new_id = len(vocab)
        vocab.append(new_bytes)
        index[new_bytes] = new_id
    return ((left, right), new_id), new_id


def _train_fast(chunks: Counter[bytes], n_tokens: int) -> tuple[list[bytes], list[Merge]]:
    """Merges until the vocabulary has ``n_tokens`` tokens, updating pair counts incrementally.

    Keeps ``counts`` (pair -> weighted count), ``where`` (pair -> chunks that may contain it) and a
    max-heap of (count, pair) with lazy deletion. A merge only revisits the chunks that contain the
    pair and applies the change in their pair counts, so each step costs about the number of
    occurrences of the pair instead of the size of the whole text.
    """
    words = [list(chunk) for chunk in chunks]
    freqs = list(chunks.values())
    counts: dict[Pair, int] = {}
    where: dict[Pair, set[int]] = defaultdict(set)
    for w, (word, freq) in enumerate(zip(words, freqs, strict=True)):
        for pair in pairwise(word):
            counts[pair] = counts.get(pair, 0) + freq
            where[pair].add(w)
    heap = [(-c, pair) for pair, c in counts.items()]  # ties: smaller (first, second) ids win
    heapq.heapify(heap)
    vocab = [bytes([b]) for b in range(256)]
    index = {tok: i for i, tok in enumerate(vocab)}
    merges: list[Merge] = []
    while len(vocab) < n_tokens and heap:
        neg_count, pair = heapq.heappop(heap)
        if counts.get(pair) != -neg_count:
            continue  # stale heap entry: the count changed after it was pushed
        merge, new_id = _merge_step(vocab, index, pair)
        merges.append(merge)
        delta: dict[Pair, int] = defaultdict(int)
        for w in where.pop(pair):
            word = words[w]
            new_word = merge_pair(word, pair, new_id)
            if len(new_word) == len(word):
                continue  # ``where`` is only pruned lazily: this chunk lost the pair earlier
            freq = freqs[w]
            for old in pairwise(word):
                delta[old] -= freq
            for new in pairwise(new_word):
                delta[new] += freq
                where[new].add(w)
            words[w] = new_word
        for changed, d in delta.items():
            if d == 0:
                continue
            c = counts.get(changed, 0) + d
            if c:
                counts[changed] = c
                heapq.heappush(heap, (-c, changed))
            else:
                del counts[changed]
    return vocab, merges


def _train_naive(chunks: Counter[bytes], n_tokens: int) -> tuple[list[bytes], list[Merge]]:
    """Reference trainer: recount every pair over every chunk before each merge (slow, obviously right)."""
    words = [list(chunk) for chunk in chunks]
    freqs = list(chunks.values())
    vocab = [bytes([b]) for b in range(256)]
    index = {tok: i for i, tok in enumerate(vocab)}
    merges: list[Merge] = []
    while len(vocab) < n_tokens:
        counts: dict[Pair, int] = {}
        for word, freq in zip(words, freqs, strict=True):
            count_pairs(word, counts, freq)
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))  # most frequent; ties: smallest ids
        merge, new_id = _merge_step(vocab, index, pair)
        merges.append(merge)
        words = [merge_pair(word, pair, new_id) for word in words]
    return vocab, merges


# --- the tokenizer -----------------------------------------------------------------------------------


class BPETokenizer:
    """A byte-level BPE tokenizer: ``ranks`` (token bytes -> id) plus special tokens (name -> id).

    Build one with :meth:`train` (from text) or :meth:`from_gpt2` (GPT-2's vocabulary).
    """

    def __init__(
        self,
        ranks: dict[bytes, int],
        special_tokens: dict[str, int] | None = None,
        pattern: str = GPT2_PATTERN,
        merges: list[Merge] | None = None,
    ) -> None:
        if not isinstance(ranks, dict):
            raise TypeError(f"ranks must be a dict of token bytes -> id, got {type(ranks).__name__}")
        missing = [b for b in range(256) if bytes([b]) not in ranks]
        if missing:
            example = bytes([missing[0]])
            raise ValueError(f"ranks lacks {len(missing)} single bytes (e.g. {example!r}); all 256 are "
                             "needed so that any text can be encoded")
        specials = dict(special_tokens or {})
        ids = list(ranks.values()) + list(specials.values())
        if not all(type(i) is int for i in ids):
            raise TypeError("token ids in ranks and special_tokens must be ints")
        if len(set(ids)) != len(ids) or min(ids) < 0:
            raise ValueError("token ids must be distinct non-negative ints across ranks and special tokens")
        self._ranks = ranks
        self._specials = specials
        self.pattern = pattern
        self._regex = regex.compile(pattern)
        self._special_regex = _special_splitter(specials)
        table: list[bytes | None] = [None] * (max(ids) + 1)
        for token, i in ranks.items():
            table[i] = token
        for name, i in specials.items():
            table[i] = name.encode("utf-8")
        self._table = table
        self._merges = merges
        self._cache: dict[str, list[int]] = {}

    # construction ------------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        special_tokens: Sequence[str] = (ENDOFTEXT,),
        pattern: str = GPT2_PATTERN,
    ) -> BPETokenizer:
        """Learn merges from ``text`` until there are ``vocab_size`` tokens (specials included).

        Ids 0-255 are the bytes, merges come next in the order they were learned, and the special
        tokens get the last ids. Special-token text inside ``text`` separates documents and is never
        merged. The vocabulary ends smaller when the text runs out of pairs to merge.
        """
        specials = _check_training_args(text, vocab_size, special_tokens)
        vocab, merges = _train_fast(_training_chunks(text, pattern, specials), vocab_size - len(specials))
        return cls._from_training(vocab, merges, specials, pattern)

    @classmethod
    def train_naive(
        cls,
        text: str,
        vocab_size: int,
        special_tokens: Sequence[str] = (ENDOFTEXT,),
        pattern: str = GPT2_PATTERN,
    ) -> BPETokenizer:
        """Same result as :meth:`train`, recounting all pairs before every merge: a slow reference."""
        specials = _check_training_args(text, vocab_size, special_tokens)
        vocab, merges = _train_naive(_training_chunks(text, pattern, specials), vocab_size - len(specials))
        return cls._from_training(vocab, merges, specials, pattern)

    @classmethod
    def _from_training(
        cls, vocab: list[bytes], merges: list[Merge], specials: list[str], pattern: str
    ) -> BPETokenizer:
        ranks = {token: i for i, token in enumerate(vocab)}
        special_ids = {name: len(vocab) + k for k, name in enumerate(specials)}
        return cls(ranks, special_ids, pattern, merges)

    @classmethod
    def from_gpt2(cls) -> BPETokenizer:
        """GPT-2's tokenizer: its 50,000 merges over 256 bytes, plus ``<|endoftext|>`` = 50256."""
        return cls(load_ranks(), {ENDOFTEXT: ENDOFTEXT_ID}, GPT2_PATTERN)

    # inspection --------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of ids (ordinary tokens + special tokens)."""
        return len(self._ranks) + len(self._specials)

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._specials)

    @property
    def ranks(self) -> dict[bytes, int]:
        """Token bytes -> id for the ordinary (non-special) tokens."""
        return dict(self._ranks)

    @property
    def merges(self) -> list[Merge]:
        """The merges in learned order: ``((left bytes, right bytes), new id)``.

        For a vocabulary loaded from ranks alone (GPT-2), each token's pair is recovered by encoding
        its bytes with only the tokens ranked below it: that leaves exactly two parts.
        """
        if self._merges is None:
            merges: list[Merge] = []
            for token, rank in sorted(self._ranks.items(), key=lambda item: item[1]):
                if len(token) < 2:
                    continue
                pieces = (token[i:j] for i in range(len(token)) for j in range(i + 1, len(token) + 1))
                lower = {t: r for t in pieces if (r := self._ranks.get(t, rank)) < rank}
                parts = bpe_encode_piece(token, lower)
                if len(parts) != 2:
                    raise ValueError(f"token {token!r} (id {rank}) is not a merge of two lower-ranked tokens")
                merges.append(((self._table[parts[0]], self._table[parts[1]]), rank))  # type: ignore[misc]
            self._merges = merges
        return list(self._merges)

    def id_to_bytes(self, token_id: int) -> bytes:
        """The bytes of one token (special tokens give their UTF-8 name)."""
        return self.decode_bytes([token_id])

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size}, special_tokens={list(self._specials)})"

    # encoding ----------------------------------------------------------------------------------

    def encode(self, text: str, allowed_special: str | Iterable[str] = ()) -> list[int]:
        """Token ids of ``text``.

        By default special-token text such as ``<|endoftext|>`` is encoded as ordinary text (like
        tiktoken's ``disallowed_special=()``). Pass ``allowed_special="all"`` or a set of names to
        turn those into their special ids instead.
        """
        _check_text(text, "encode")
        allowed = self._allowed(allowed_special)
        if not allowed:
            return self._encode_ordinary(text)
        splitter = self._special_regex if len(allowed) == len(self._specials) else _special_splitter(allowed)
        assert splitter is not None
        out: list[int] = []
        for k, segment in enumerate(splitter.split(text)):
            if k % 2:
                out.append(self._specials[segment])
            elif segment:
                out.extend(self._encode_ordinary(segment))
        return out

    def _allowed(self, allowed_special: str | Iterable[str]) -> set[str]:
        if allowed_special == "all":
            return set(self._specials)
        if isinstance(allowed_special, str):
            raise TypeError(f"allowed_special must be 'all' or a set of special-token names, got "
                            f"{allowed_special!r} (did you mean {{{allowed_special!r}}}?)")
        allowed = set(allowed_special)
        unknown = allowed - set(self._specials)
        if unknown:
            raise ValueError(f"unknown special tokens {sorted(unknown)}; this tokenizer has "
                             f"{sorted(self._specials)}")
        return allowed

    def _encode_ordinary(self, text: str) -> list[int]:
        cache, ranks = self._cache, self._ranks
        if len(cache) > _CACHE_LIMIT:
            cache.clear()
        chunks = self._regex.findall(text)
        # Look every chunk up first (a C-level loop), then encode only the chunks not seen before.
        pieces = list(map(cache.get, chunks))
        if None in pieces:
            for k, ids in enumerate(pieces):
                if ids is None:
                    chunk = chunks[k]
                    ids = cache.get(chunk)  # the same new chunk may occur twice in this text
                    if ids is None:
                        ids = cache[chunk] = bpe_encode_piece(_utf8(chunk), ranks)
                    pieces[k] = ids
        return list(chain.from_iterable(pieces))

    # decoding ----------------------------------------------------------------------------------

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes that ``ids`` stand for (a token may hold part of a multi-byte character)."""
        if isinstance(ids, int | str | bytes):
            kind = type(ids).__name__
            raise TypeError(f"decode expects a list of token ids, got {kind}; wrap one id as [id]")
        ids = ids if isinstance(ids, list) else list(ids)
        table = self._table
        try:
            if ids and min(ids) < 0:
                raise IndexError
            return b"".join([table[i] for i in ids])  # type: ignore[misc]
        except (IndexError, TypeError):
            for i in ids:  # find the culprit to say exactly what is wrong
                if not hasattr(i, "__index__"):
                    raise TypeError(f"token ids must be ints, got {i!r} ({type(i).__name__})") from None
                if not 0 <= int(i) < len(table) or table[int(i)] is None:
                    last = len(table) - 1
                    raise ValueError(f"unknown token id {int(i)}: ids run from 0 to {last}") from None
            raise

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``; bytes that are not valid UTF-8 on their own become U+FFFD (like tiktoken)."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


@lru_cache(maxsize=1)
def gpt2_encoding() -> tiktoken.Encoding:
    """tiktoken's GPT-2 encoding, built from the offline ranks (no download)."""
    import tiktoken

    return tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=load_ranks(),
        special_tokens={ENDOFTEXT: ENDOFTEXT_ID},
    )
