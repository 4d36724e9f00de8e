"""The GPT-2 BPE merge ranks, available offline.

OpenAI's GPT-2 ranks (the ``r50k_base``/``gpt2`` file tiktoken downloads from a blob store) are
also shipped inside the ``openai-whisper`` source distribution on PyPI as
``whisper/assets/gpt2.tiktoken``. Set-up (``make lab``/``make test``) fetches that sdist from the
package registry once, checks the file against tiktoken's published sha256 and caches it under
``data/cache/``. Run ``python -m gpt2_core.bpe_ranks`` to do this by hand.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from .profile import cache_dir

WHISPER_VERSION = "20250625"
WHISPER_SDIST_SHA256 = "37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96"
# tiktoken's published hash for r50k_base, whose ranks are GPT-2's.
RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
RANKS_MEMBER = f"openai_whisper-{WHISPER_VERSION}/whisper/assets/gpt2.tiktoken"
RANKS_FILENAME = "gpt2.tiktoken"

# GPT-2's pre-tokenization pattern: contractions, letter runs, digit runs, other symbols, whitespace.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
ENDOFTEXT = "<|endoftext|>"
ENDOFTEXT_ID = 50256


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ranks_path() -> Path:
    return cache_dir() / RANKS_FILENAME


def _fetch_from_pypi() -> bytes:
    """Download the pinned openai-whisper sdist with pip and pull out the ranks file."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
               f"openai-whisper=={WHISPER_VERSION}", "-d", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        sdists = list(Path(tmp).glob("openai_whisper-*.tar.gz"))
        if done.returncode != 0 or not sdists:
            raise OSError(f"pip could not download openai-whisper=={WHISPER_VERSION}: {done.stderr.strip()[-500:]}")
        sdist = sdists[0].read_bytes()
        if _sha256(sdist) != WHISPER_SDIST_SHA256:
            raise OSError("the openai-whisper sdist does not match its pinned sha256; refusing to use it")
        with tarfile.open(sdists[0]) as tar:
            member = tar.extractfile(RANKS_MEMBER)
            if member is None:
                raise OSError(f"{RANKS_MEMBER} is missing from the openai-whisper sdist")
            return member.read()


def _fetch_from_tiktoken() -> bytes:
    """Fallback when online: the file tiktoken itself downloads (and caches) for r50k_base."""
    from tiktoken.load import read_file_cached

    return read_file_cached("https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken")


def ensure_ranks_file() -> Path:
    """Return the path of the verified ranks file, fetching it once if it is not cached yet."""
    path = ranks_path()
    if path.exists() and _sha256(path.read_bytes()) == RANKS_SHA256:
        return path
    errors = []
    for fetch in (_fetch_from_pypi, _fetch_from_tiktoken):
        try:
            data = fetch()
        except Exception as err:  # noqa: BLE001 - every failure is reported together below
            errors.append(f"{fetch.__name__}: {err}")
            continue
        if _sha256(data) != RANKS_SHA256:
            errors.append(f"{fetch.__name__}: checksum mismatch")
            continue
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(path)
        return path
    raise RuntimeError(
        "The GPT-2 BPE ranks are not cached and could not be fetched. Run `make setup` (or "
        "`python -m gpt2_core.bpe_ranks`) once with access to PyPI. Details: " + "; ".join(errors)
    )


def load_ranks() -> dict[bytes, int]:
    """The 50,000 byte-sequence -> rank entries of GPT-2's vocabulary (specials excluded)."""
    ranks: dict[bytes, int] = {}
    for line in ensure_ranks_file().read_text("ascii").splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


if __name__ == "__main__":
    print(f"GPT-2 BPE ranks verified at {ensure_ranks_file()}")
