"""gpt2_core.files under what a learner's runs meet: two runs writing the same file or checkpoint at once, a
reader meanwhile, and a full disk. (Downloads: tests/test_corpus.py; checkpoints cut short: test_checkpoint.py.)"""

from __future__ import annotations

import errno
import os
import threading

import pytest
import torch

from gpt2_core import files
from gpt2_core.model.config import GPTConfig
from gpt2_core.model.gpt import GPTModel
from gpt2_core.pretraining.checkpoint import load_checkpoint, save_checkpoint

CFG = GPTConfig(vocab_size=64, context_length=8, emb_dim=16, n_heads=2, n_layers=1)


def _run_together(*jobs) -> None:
    """Run the jobs in threads at once; re-raise the first error any of them met."""
    errors: list[BaseException] = []

    def guarded(job):
        try:
            job()
        except BaseException as err:  # noqa: BLE001 - handed to the test below
            errors.append(err)

    threads = [threading.Thread(target=guarded, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a writer or reader hung"
    if errors:
        raise errors[0]


def test_two_writers_of_one_file_never_show_a_reader_half_a_file(tmp_path):
    """Two writers in one process share a process id: their temporary names must still differ, or one's
    rename would publish the other's half-written copy."""
    path = tmp_path / "outputs" / "ch05.json"
    size, rounds, seen = 1 << 16, 150, []

    def writer(byte: bytes):
        return lambda: [files.write_file_atomically(path, byte * size) for _ in range(rounds)]

    def reader():
        while len(seen) < rounds:
            if path.exists():
                data = path.read_bytes()
                seen.append(data)
                assert len(data) == size and data in (b"a" * size, b"b" * size), "a reader saw a mixed or short file"

    _run_together(writer(b"a"), writer(b"b"), reader)
    assert sorted(p.name for p in path.parent.iterdir()) == ["ch05.json"]  # no temporary copy left


def _model(value: float) -> GPTModel:
    model = GPTModel(CFG)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)
    return model


def test_two_runs_saving_one_checkpoint_while_a_third_reads_it(tmp_path):
    """Chapters 7 and 8 both save chapter 7's model when neither finds it: each save replaces the directory
    whole, and a load meanwhile reads every file from one save (its step matches its weights)."""
    path, rounds, loads = tmp_path / "ch07-model", 12, []
    save_checkpoint(path, _model(0.0), step=0)

    def saver(value: float, step: int):
        model = _model(value)
        return lambda: [save_checkpoint(path, model, step=step) for _ in range(rounds)]

    def loader():
        while len(loads) < 2 * rounds:
            state = load_checkpoint(path, restore_rng=False)
            weight = state["model"].tok_emb.weight[0, 0].item()
            loads.append((state["step"], weight))
            assert {0: 0.0, 1: 1.0, 2: 2.0}[state["step"]] == weight, "a load mixed files of two saves"

    _run_together(saver(1.0, 1), saver(2.0, 2), loader)
    assert load_checkpoint(path, restore_rng=False)["step"] in (1, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ch07-model"]  # no .tmp-* or .old left


def _disk_full(path, data):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_keeps_the_previous_file_and_says_what_to_do(tmp_path, monkeypatch):
    path = files.write_file_atomically(tmp_path / "results.json", b"previous")
    monkeypatch.setattr(files, "_write_synced", _disk_full)
    with pytest.raises(OSError, match="the disk is full.*results.json.*Free some disk space") as err:
        files.write_file_atomically(path, b"new" * 100)
    assert err.value.errno == errno.ENOSPC and "\n" not in str(err.value)
    assert path.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_a_full_disk_keeps_the_previous_checkpoint_and_says_what_to_do(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "ck", _model(1.0), step=1)
    monkeypatch.setattr(files, "_write_synced", _disk_full)
    with pytest.raises(OSError, match="the disk is full.*ck.*previous version.*kept") as err:
        save_checkpoint(tmp_path / "ck", _model(2.0), step=2)
    assert err.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "ck", restore_rng=False)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]


def test_other_write_errors_are_not_called_a_full_disk(tmp_path, monkeypatch):
    def denied(path, data):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(files, "_write_synced", denied)
    with pytest.raises(PermissionError, match="Permission denied"):
        files.write_file_atomically(tmp_path / "x.json", b"{}")
    assert list(tmp_path.iterdir()) == []


def test_a_stale_temporary_file_of_a_dead_process_is_removed_and_a_live_ones_kept(tmp_path):
    import subprocess
    import sys

    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    target = tmp_path / "f.tgz"
    (tmp_path / f"f.tgz.part-{dead}-0a1b2c3d").write_bytes(b"half a download")
    (tmp_path / f"f.tgz.part-{os.getppid()}-0a1b2c3d").write_bytes(b"someone downloading now")
    files._remove_stale(target, ".part-")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ([f"f.tgz.part-{os.getppid()}-0a1b2c3d"] if os.name == "posix" else [])
    (tmp_path / f"ch05.json.tmp-{dead}-0a1b2c3d").write_bytes(b"half a result")  # a run killed mid-write
    files.write_file_atomically(tmp_path / "ch05.json", b"{}")
    assert not list(tmp_path.glob("ch05.json.tmp-*"))
