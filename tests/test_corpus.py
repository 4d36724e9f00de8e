"""Tests for gpt2_core.download (verified, cached fetching) and gpt2_core.corpus (the SOTU splits)."""

from __future__ import annotations

import errno
import hashlib
import http.client
import io
import urllib.error
import urllib.request

import pytest

from gpt2_core import files
from gpt2_core.files import fetch_verified
from gpt2_core.files import sha256 as sha256_of
from gpt2_core.text import corpus

PAYLOAD = b"four score and seven years ago\n" * 100
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def empty_data(tmp_path, monkeypatch):
    """An empty data folder: nothing is cached."""
    monkeypatch.setenv("GPT2_COURSE_DATA", str(tmp_path))
    corpus.load_addresses.cache_clear()
    yield tmp_path
    corpus.load_addresses.cache_clear()


def serve(monkeypatch, payload: bytes) -> list[str]:
    """Make urlopen return ``payload``; returns the list of URLs requested."""
    requested: list[str] = []

    def fake_urlopen(url, timeout=None):
        requested.append(url)
        return io.BytesIO(payload)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    return requested


def go_offline(monkeypatch) -> None:
    def no_network(url, timeout=None):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)


def test_fetch_verified_downloads_once_then_uses_the_cache(empty_data, monkeypatch):
    requested = serve(monkeypatch, PAYLOAD)
    path = fetch_verified("https://example.org/f.txt", PAYLOAD_SHA, "f.txt")
    assert path.read_bytes() == PAYLOAD and path.parent == empty_data / "cache"
    go_offline(monkeypatch)
    assert fetch_verified("https://example.org/f.txt", PAYLOAD_SHA, "f.txt") == path
    assert requested == ["https://example.org/f.txt"]
    assert sha256_of(path) == PAYLOAD_SHA


def test_checksum_mismatch_is_an_error_and_leaves_nothing_behind(empty_data, monkeypatch):
    serve(monkeypatch, PAYLOAD + b"tampered")
    with pytest.raises(RuntimeError, match="sha256"):
        fetch_verified("https://example.org/f.txt", PAYLOAD_SHA, "f.txt")
    assert list((empty_data / "cache").iterdir()) == []


def test_corrupt_cached_file_is_fetched_again(empty_data, monkeypatch):
    cache = empty_data / "cache"
    cache.mkdir()
    (cache / "f.txt").write_bytes(b"garbage")
    serve(monkeypatch, PAYLOAD)
    assert fetch_verified("https://example.org/f.txt", PAYLOAD_SHA, "f.txt").read_bytes() == PAYLOAD


def test_offline_with_empty_cache_says_what_to_do(empty_data, monkeypatch):
    go_offline(monkeypatch)
    with pytest.raises(RuntimeError, match="could not be downloaded") as err:
        fetch_verified("https://example.org/f.txt", PAYLOAD_SHA, "f.txt")
    assert "internet" in str(err.value) and "f.txt" in str(err.value)
    with pytest.raises(RuntimeError, match=corpus.SOTU_FILENAME):
        corpus.sotu_text("train")
    assert list((empty_data / "cache").iterdir()) == []  # no partial file left


class _Broken(io.BytesIO):
    """A download that delivers ``cut`` bytes, then fails with ``error`` (Ctrl-C, a dropped connection, ...)."""

    def __init__(self, payload: bytes, cut: int, error: BaseException) -> None:
        super().__init__(payload[:cut])
        self.error = error

    def read(self, size: int = -1) -> bytes:
        block = super().read(size)
        if not block:
            raise self.error
        return block


def serve_broken(monkeypatch, payload: bytes, error: BaseException) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: _Broken(payload, len(payload) // 2, error))


@pytest.mark.parametrize("error, raised, match", [
    (KeyboardInterrupt(), KeyboardInterrupt, None),  # the learner stops the cell mid-download
    (http.client.IncompleteRead(b"", 100), RuntimeError, "could not be downloaded"),  # the connection dropped
    (ConnectionResetError(104, "Connection reset by peer"), RuntimeError, "could not be downloaded"),
])
def test_an_interrupted_download_leaves_nothing_and_the_next_run_downloads_again(empty_data, monkeypatch, error,
                                                                                raised, match):
    serve_broken(monkeypatch, PAYLOAD, error)
    with pytest.raises(raised, match=match) as err:
        fetch_verified("https://example.org/f.txt", PAYLOAD_SHA, "f.txt")
    assert "\n" not in str(err.value)
    assert list((empty_data / "cache").iterdir()) == []  # no half file, under its name or another
    serve(monkeypatch, PAYLOAD)
    assert fetch_verified("https://example.org/f.txt", PAYLOAD_SHA, "f.txt").read_bytes() == PAYLOAD


def test_a_download_cut_short_without_an_error_is_refused_then_downloaded_again(empty_data, monkeypatch):
    serve(monkeypatch, PAYLOAD[: len(PAYLOAD) // 2])  # the server closed early: fewer bytes, no exception
    with pytest.raises(RuntimeError, match="cut short.*Run again"):
        fetch_verified("https://example.org/f.txt", PAYLOAD_SHA, "f.txt")
    assert list((empty_data / "cache").iterdir()) == []
    serve(monkeypatch, PAYLOAD)
    assert fetch_verified("https://example.org/f.txt", PAYLOAD_SHA, "f.txt").read_bytes() == PAYLOAD


def test_a_full_disk_while_caching_says_so_and_leaves_nothing(empty_data, monkeypatch):
    class FullDisk(io.BytesIO):
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    serve(monkeypatch, PAYLOAD)
    monkeypatch.setattr(files, "open", lambda path, mode: FullDisk(), raising=False)  # fetch_verified's open()
    with pytest.raises(RuntimeError, match="the disk is full: f.txt could not be cached.*Free some disk space") as err:
        fetch_verified("https://example.org/f.txt", PAYLOAD_SHA, "f.txt")
    assert "internet" not in str(err.value) and "\n" not in str(err.value)
    monkeypatch.delattr(files, "open")
    assert list((empty_data / "cache").iterdir()) == []
    assert fetch_verified("https://example.org/f.txt", PAYLOAD_SHA, "f.txt").read_bytes() == PAYLOAD


def test_a_damaged_cached_copy_is_named_and_downloaded_again(empty_data, monkeypatch, capsys):
    (empty_data / "cache").mkdir()
    (empty_data / "cache" / "f.txt").write_bytes(PAYLOAD[:100])  # cut short by an older copy, say
    serve(monkeypatch, PAYLOAD)
    assert fetch_verified("https://example.org/f.txt", PAYLOAD_SHA, "f.txt").read_bytes() == PAYLOAD
    assert "f.txt is damaged or incomplete" in capsys.readouterr().out


def test_the_corpus_after_an_interrupted_download(empty_data, monkeypatch):
    """The learner stops chapter 1 while the SOTU tarball downloads, then runs the cell again."""
    monkeypatch.delenv("GPT2_COURSE_DATA")
    payload = corpus.fetch_verified(corpus.SOTU_URL, corpus.SOTU_SHA256, corpus.SOTU_FILENAME).read_bytes()  # real
    monkeypatch.setenv("GPT2_COURSE_DATA", str(empty_data))
    serve_broken(monkeypatch, payload, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        corpus.load_addresses()
    assert list((empty_data / "cache").iterdir()) == []
    serve(monkeypatch, payload)
    assert corpus.load_addresses()[0].year == 1790


# ------------------------------------------------------------------------ the real corpus (cached)


def test_splits_are_disjoint_by_address_and_val_is_recent():
    train, val, everything = (corpus.split_addresses(s) for s in ("train", "val", "all"))
    assert train and val
    assert {a.name for a in train}.isdisjoint({a.name for a in val})
    assert sorted(a.name for a in train + val) == sorted(a.name for a in everything)
    assert all(a.year >= corpus.VAL_FROM_YEAR for a in val)
    assert all(a.year < corpus.VAL_FROM_YEAR for a in train)


def test_addresses_are_complete_records():
    addresses = corpus.load_addresses()
    assert addresses[0].year == 1790 and [a.year for a in addresses] == sorted(a.year for a in addresses)
    assert all(a.text and a.president and a.party for a in addresses)


def test_sotu_text_joins_documents_with_endoftext():
    val = corpus.split_addresses("val")
    text = corpus.sotu_text("val")
    assert text.count("<|endoftext|>") == len(val) - 1
    assert text.startswith(val[0].text[:100]) and text.endswith(val[-1].text[-100:])


def test_sample_text_and_errors():
    assert len(corpus.sample_text(500)) == 500
    assert "<|endoftext|>" not in corpus.sample_text(200_000)
    for bad in (0, -3, 2.5, "10"):
        with pytest.raises((TypeError, ValueError), match="n_chars"):
            corpus.sample_text(bad)
    with pytest.raises(ValueError, match="split"):
        corpus.sotu_text("test")
    with pytest.raises(ValueError, match="split"):
        corpus.split_addresses("validation")
