"""BPE ranks on disk: the one file format every tokenizer of the course is saved in, and GPT-2's ranks offline.

A BPE vocabulary is a table ``token bytes -> rank`` (the rank is the token's id and its merge priority).
tiktoken saves it as one line per token, ``base64(token bytes) rank``, in rank order; the course uses the
same format for its own tokenizers (the reference model's ``tokenizer.tiktoken``), so one reader serves
all. :func:`parse_ranks` checks what it reads: ranks must run 0, 1, 2, ... without a gap or a repeat, so
a file cut short or spliced is refused when it is read, not at some later decode.
:func:`tokenizer_files` and :func:`tokenizer_from_record` save and load a whole tokenizer (ranks, pattern,
special tokens) the way a checkpoint keeps the tokenizer beside its model.

OpenAI's GPT-2 ranks (tiktoken's ``r50k_base``, the same ranks as ``gpt2``) are also shipped inside the
``openai-whisper`` source distribution on PyPI as ``whisper/assets/gpt2.tiktoken``. Set-up (``make lab``
/ ``make test``) fetches that sdist from the package registry once, checks it and the ranks file against
their pinned sha256 and caches the file under ``data/cache/``; ``python -m gpt2_core.text.ranks`` does
the same by hand.
"""

from __future__ import annotations

import base64
import sys
import tarfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import tiktoken

from ..files import fetch_verified, sha256, write_file_atomically
from ..profile import cache_dir

# GPT-2's pre-tokenization pattern: contractions, letter runs, digit runs, other symbols, whitespace.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
ENDOFTEXT = "<|endoftext|>"
ENDOFTEXT_ID = 50256
GPT2_RANKS = 50_000 + 256  # 256 bytes + 50,000 merges; <|endoftext|> is the one special token after them

WHISPER_SDIST_URL = ("https://files.pythonhosted.org/packages/35/8e/d36f8880bcf18ec026a55807d02fe4c7357da9f25aebd"
                     "92f85178000c0dc/openai_whisper-20250625.tar.gz")
WHISPER_SDIST_SHA256 = "37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96"
RANKS_MEMBER = "openai_whisper-20250625/whisper/assets/gpt2.tiktoken"
# tiktoken's published hash for r50k_base, whose ranks are GPT-2's.
GPT2_RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
GPT2_RANKS_FILE = "gpt2.tiktoken"
TOKENIZER_FILE = "tokenizer.tiktoken"  # a saved tokenizer's ranks, beside the description of the rest


def dump_ranks(ranks: dict[bytes, int]) -> bytes:
    """tiktoken's ranks format: one ``base64(token) rank`` line per token, in rank order."""
    lines = [base64.b64encode(token) + b" " + str(rank).encode()
             for token, rank in sorted(ranks.items(), key=lambda item: item[1])]
    return b"\n".join(lines) + b"\n"


def parse_ranks(data: bytes, source: str = "the ranks file", expected: int | None = None) -> dict[bytes, int]:
    """Inverse of :func:`dump_ranks`, checked: ranks run 0 .. n-1 in order (and ``n == expected`` if given)."""
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            token, rank = base64.b64decode(token, validate=True), int(rank)
        except ValueError:
            raise ValueError(f"line {number} of {source} is not 'base64 rank': {line[:60]!r}; the file is "
                             "damaged") from None
        if rank != len(ranks) or token in ranks:
            raise ValueError(f"line {number} of {source} gives rank {rank} where rank {len(ranks)} belongs "
                             "(ranks must run 0, 1, 2, ... once each); the file is damaged")
        ranks[token] = rank
    if expected is not None and len(ranks) != expected:
        raise ValueError(f"{source} holds {len(ranks):,} ranks but {expected:,} are expected; the file is "
                         "incomplete (cut short?); restore or re-make it")
    return ranks


def make_encoding(ranks: dict[bytes, int], special_tokens: dict[str, int], pattern: str = GPT2_PATTERN,
                  name: str = "course-bpe") -> tiktoken.Encoding:
    """A fast tiktoken encoding over ``ranks`` (from chapter 1's trainer, or GPT-2's): the same ids."""
    return tiktoken.Encoding(name=name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=special_tokens)


def gpt2_ranks_path() -> Path:
    """The verified GPT-2 ranks file in ``data/cache/``, fetched once from the PyPI sdist if missing."""
    path = cache_dir() / GPT2_RANKS_FILE
    if path.exists() and sha256(path) == GPT2_RANKS_SHA256:
        return path
    sdist = fetch_verified(WHISPER_SDIST_URL, WHISPER_SDIST_SHA256, "openai_whisper-20250625.tar.gz")
    with tarfile.open(sdist) as tar:
        member = tar.extractfile(RANKS_MEMBER)
        if member is None:
            raise RuntimeError(f"{RANKS_MEMBER} is missing from {sdist}; delete it so it is fetched again")
        data = member.read()
    if sha256(data) != GPT2_RANKS_SHA256:
        raise RuntimeError(f"{RANKS_MEMBER} in {sdist} does not match tiktoken's published sha256; refusing it")
    return write_file_atomically(path, data)


@lru_cache(maxsize=1)
def gpt2_ranks() -> dict[bytes, int]:
    """The 50,256 byte-sequence -> rank entries of GPT-2's vocabulary (``<|endoftext|>`` excluded)."""
    return parse_ranks(gpt2_ranks_path().read_bytes(), GPT2_RANKS_FILE, expected=GPT2_RANKS)


@lru_cache(maxsize=1)
def gpt2_encoding() -> tiktoken.Encoding:
    """tiktoken's GPT-2 encoding, built from the offline ranks (no download from OpenAI's blob store)."""
    return make_encoding(gpt2_ranks(), {ENDOFTEXT: ENDOFTEXT_ID}, GPT2_PATTERN, name="gpt2")


def tokenizer_files(tokenizer: Any) -> tuple[dict, dict[str, bytes]]:
    """(a JSON description, files to write beside it) of a tiktoken Encoding or a BPETokenizer: GPT-2's
    tokenizer by name, any other by its ranks (in :data:`TOKENIZER_FILE`), pattern and special tokens."""
    specials = {name: tokenizer.encode(name, allowed_special={name})[0] for name in tokenizer.special_tokens_set}
    ranks = {tokenizer.decode_single_token_bytes(i): i for i in range(tokenizer.n_vocab)
             if i not in specials.values()}
    pattern = getattr(tokenizer, "pattern", None) or tokenizer._pat_str  # tiktoken keeps its pattern private
    if specials == {ENDOFTEXT: ENDOFTEXT_ID} and pattern == GPT2_PATTERN and ranks == gpt2_ranks():
        return {"name": "gpt2"}, {}
    data = dump_ranks(ranks)
    return ({"file": TOKENIZER_FILE, "n_vocab": tokenizer.n_vocab, "pattern": pattern, "special_tokens": specials,
             "sha256": sha256(data)}, {TOKENIZER_FILE: data})


def tokenizer_from_record(record: dict | None, read: Callable[[str], bytes], n_vocab: int) -> tiktoken.Encoding | None:
    """The tokenizer :func:`tokenizer_files` described (None for no record); ``read(name)`` gives a file's bytes.
    ``n_vocab``: the size to expect when the record does not say (the shipped reference model's)."""
    if record is None:
        return None
    if record.get("name") == "gpt2":
        return gpt2_encoding()
    data = read(record["file"])
    if "sha256" in record and sha256(data) != record["sha256"]:
        raise ValueError(f"{record['file']} does not match the sha256 its description records; the tokenizer "
                         "file was changed or damaged")
    specials = record["special_tokens"]
    ranks = parse_ranks(data, record["file"], expected=record.get("n_vocab", n_vocab) - len(specials))
    return make_encoding(ranks, specials, record["pattern"])


if __name__ == "__main__":
    print(f"GPT-2 BPE ranks verified at {gpt2_ranks_path()}")
    sys.exit(0)
