"""Byte-level byte-pair encoding (BPE), the tokenizer of GPT-2.

Text is turned into UTF-8 bytes, so every string can be encoded and there is no "unknown" token: the
256 single bytes are always in the vocabulary. A pre-tokenizer regex (``GPT2_PATTERN``) first cuts the
text into chunks (words with their leading space, numbers, punctuation runs, whitespace); merges never
cross a chunk boundary. Training (Sennrich et al., 2016) repeatedly fuses the most frequent adjacent
pair of tokens into a new token (:mod:`gpt2_core.text.bpe_train`). Encoding follows GPT-2/tiktoken: inside a
chunk, repeatedly merge the adjacent pair whose *concatenated bytes* have the lowest rank (id) in the
vocabulary.

``BPETokenizer.from_gpt2()`` loads GPT-2's real ranks and encodes exactly like tiktoken's ``gpt2``
encoding (:func:`gpt2_core.text.ranks.gpt2_encoding` builds that encoding offline). A ``BPETokenizer``
speaks tiktoken's interface (``encode``, ``encode_ordinary``, ``decode``, ``decode_single_token_bytes``,
``n_vocab``, ``eot_token``, ``special_tokens_set``), so code that takes a tokenizer never needs to ask
which of the two it was given.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from itertools import chain

import regex

from .bpe_train import Merge, check_text, special_token_regex, train_merges, utf8_bytes
from .ranks import ENDOFTEXT, ENDOFTEXT_ID, GPT2_PATTERN, gpt2_ranks

_NO_RANK = sys.maxsize  # "this pair cannot merge"; an int so that min() over ranks stays fast
_CACHE_LIMIT = 200_000  # chunk -> ids cache entries kept before the cache is cleared


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
        self._special_regex = special_token_regex(specials)
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
        naive: bool = False,
    ) -> BPETokenizer:
        """Learn merges from ``text`` until there are ``vocab_size`` tokens (specials included).

        Ids 0-255 are the bytes, merges come next in the order they were learned, and the special
        tokens get the last ids. Special-token text inside ``text`` separates documents and is never
        merged. The vocabulary ends smaller when the text runs out of pairs to merge. ``naive=True``
        gives the same result by recounting all pairs before every merge: a slow reference.
        """
        return cls._from_training(*train_merges(text, vocab_size, special_tokens, pattern, naive), pattern)

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
        return cls(gpt2_ranks(), {ENDOFTEXT: ENDOFTEXT_ID}, GPT2_PATTERN)

    # inspection --------------------------------------------------------------------------------

    @property
    def n_vocab(self) -> int:
        """Number of ids, ordinary and special (tiktoken's name: the largest id + 1)."""
        return len(self._table)

    @property
    def max_token_value(self) -> int:
        return len(self._table) - 1

    @property
    def eot_token(self) -> int:
        """The id of ``<|endoftext|>`` (KeyError if this tokenizer has none, as in tiktoken)."""
        return self._specials[ENDOFTEXT]

    @property
    def special_tokens_set(self) -> set[str]:
        return set(self._specials)

    @property
    def special_tokens(self) -> dict[str, int]:
        """Special-token name -> id."""
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

    def decode_single_token_bytes(self, token_id: int) -> bytes:
        """The bytes of one token (special tokens give their UTF-8 name)."""
        return self.decode_bytes([token_id])

    def __repr__(self) -> str:
        return f"BPETokenizer(n_vocab={self.n_vocab}, special_tokens={list(self._specials)})"

    # encoding ----------------------------------------------------------------------------------

    def encode_ordinary(self, text: str) -> list[int]:
        """Token ids of ``text``, special-token text such as ``<|endoftext|>`` encoded as ordinary text."""
        return self._encode_ordinary(check_text(text, "encode_ordinary"))

    def encode(self, text: str, *, allowed_special: str | Iterable[str] = (),
               disallowed_special: str | Iterable[str] = "all") -> list[int]:
        """Token ids of ``text``, with tiktoken's rules for special-token text such as ``<|endoftext|>``.

        Names in ``allowed_special`` (or ``"all"``) become their special ids. Special text that is neither
        allowed nor left out of ``disallowed_special`` raises ValueError (by default: all of it), because
        text from outside that contains ``<|endoftext|>`` would otherwise end a document in the middle.
        Pass ``disallowed_special=()`` to encode such text as ordinary text (or use :meth:`encode_ordinary`).
        """
        check_text(text, "encode")
        allowed = self._allowed(allowed_special)
        disallowed = (set(self._specials) - allowed if disallowed_special == "all"
                      else self._allowed(disallowed_special))
        if disallowed:
            found = special_token_regex(disallowed).search(text)
            if found:
                raise ValueError(f"the text contains the special token {found.group()!r}; pass "
                                 f"allowed_special={{{found.group()!r}}} to encode it as its special id, or "
                                 "disallowed_special=() to encode it as ordinary text")
        if not allowed:
            return self._encode_ordinary(text)
        splitter = self._special_regex if len(allowed) == len(self._specials) else special_token_regex(allowed)
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
                        ids = cache[chunk] = bpe_encode_piece(utf8_bytes(chunk), ranks)
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

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """The text of ``ids``; bytes that are not valid UTF-8 on their own become U+FFFD (like tiktoken)."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)
