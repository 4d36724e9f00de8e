"""Learning BPE merges (Sennrich et al., 2016): repeatedly fuse the most frequent adjacent pair of tokens.

Text is cut into chunks by the pre-tokenizer regex first (merges never cross a chunk boundary), and each
distinct chunk is counted once with its frequency. Two trainers give the same merges: :func:`train_merges`
with ``naive=True`` recounts every pair over every chunk before each merge (slow, obviously right);
otherwise pair counts are updated incrementally, touching only the chunks that hold the merged pair.
:class:`gpt2_core.text.bpe.BPETokenizer.train` is the way in.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from itertools import pairwise

import regex

from ..checks import check_int

Pair = tuple[int, int]
Merge = tuple[tuple[bytes, bytes], int]

# --- building blocks (also what chapter 1 builds by hand) ---------------------------------------


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


# --- helpers ---------------------------------------------------------------------------------------


def check_text(text: object, what: str) -> str:
    if not isinstance(text, str):
        is_bytes = isinstance(text, bytes | bytearray)
        hint = " (decode bytes to str first, e.g. data.decode('utf-8'))" if is_bytes else ""
        raise TypeError(f"{what} expects a str, got {type(text).__name__}{hint}")
    return text


def utf8_bytes(text: str) -> bytes:
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


def special_token_regex(specials: Iterable[str]) -> regex.Pattern | None:
    """A regex that finds any of ``specials`` (longest first, so overlapping names pick the longest)."""
    names = sorted(specials, key=len, reverse=True)
    if not names:
        return None
    return regex.compile("(" + "|".join(regex.escape(name) for name in names) + ")")


def _training_chunks(text: str, pattern: str, specials: Sequence[str]) -> Counter[bytes]:
    """How often each pre-token chunk (as UTF-8 bytes) occurs; special-token text is cut out first."""
    splitter = special_token_regex(specials)
    segments = splitter.split(text)[::2] if splitter else [text]  # [::2] drops the specials themselves
    compiled = regex.compile(pattern)
    chunks: Counter[str] = Counter()
    for segment in segments:
        chunks.update(compiled.findall(segment))
    return Counter({utf8_bytes(chunk): n for chunk, n in chunks.items()})


def _check_training_args(text: object, vocab_size: object, special_tokens: object) -> list[str]:
    check_text(text, "BPETokenizer.train")
    if isinstance(special_tokens, str):
        raise TypeError(f"special_tokens must be a list of strings, e.g. [{special_tokens!r}], not a str")
    specials = list(special_tokens)  # type: ignore[call-overload]
    for name in specials:
        if not isinstance(name, str) or not name:
            raise TypeError(f"special tokens must be non-empty strings, got {name!r}")
    if len(set(specials)) != len(specials):
        raise ValueError(f"special_tokens has duplicates: {specials}")
    check_int(vocab_size, "vocab_size")
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



def train_merges(text: str, vocab_size: int, special_tokens: Sequence[str], pattern: str, naive: bool = False
                 ) -> tuple[list[bytes], list[Merge], list[str]]:
    """(vocabulary, merges in learned order, special-token names) for ``vocab_size`` tokens, specials included."""
    specials = _check_training_args(text, vocab_size, special_tokens)
    chunks = _training_chunks(text, pattern, specials)
    vocab, merges = (_train_naive if naive else _train_fast)(chunks, vocab_size - len(specials))
    return vocab, merges, specials
