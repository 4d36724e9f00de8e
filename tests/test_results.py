"""Tests for gpt2_core.course.results: chapters' headline numbers as data, and the README generated from them."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpt2_core.course import results
from gpt2_core.course.results import read_results, readme_with_table, results_dir, results_table, write_results

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("GPT2_COURSE_DATA", str(tmp_path / "data"))
    return tmp_path


def test_only_the_recording_run_writes_the_committed_results(data, monkeypatch):
    monkeypatch.delenv(results.RECORD_ENV, raising=False)
    learner = write_results(5, {"seconds": 1.5, "val_loss": 4.0}, profile="default")  # a learner's run
    assert learner == data / "data" / "outputs" / "results" / "default" / "ch05.json"
    assert not (data / "results").exists()
    monkeypatch.setenv(results.RECORD_ENV, "1")  # what `make execute` sets
    path = write_results(5, {"seconds": 1.5, "val_loss": 4.0}, profile="default")
    assert path == data / "results" / "ch05.json"
    assert json.loads(path.read_text()) == {"profile": "default", "seconds": 1.5, "val_loss": 4.0}
    tiny = write_results(5, {"seconds": 0.1}, profile="tiny")
    assert tiny == data / "data" / "outputs" / "results" / "tiny" / "ch05.json"
    assert read_results(results_dir("default")) == {5: {"profile": "default", "seconds": 1.5, "val_loss": 4.0}}


def test_the_profile_is_the_runs_own(data):
    with pytest.raises(ValueError, match="profile must be one of"):
        write_results(5, {"seconds": 1}, profile="huge")
    with pytest.raises(ValueError, match="may not hold 'profile'"):
        write_results(5, {"seconds": 1, "profile": "default"}, profile="tiny")


def test_a_learners_default_run_of_a_chapter_leaves_the_committed_results_alone():
    """Run a chapter as a learner does (default profile, no recording), then check what the test command
    checks: results/ is byte for byte what was committed, and the run's numbers went to data/outputs/."""
    before = {p.name: p.read_bytes() for p in (ROOT / "results").glob("*.json")}
    env = {**os.environ, "GPT2_COURSE_PROFILE": "default", "MPLBACKEND": "Agg"}
    env.pop(results.RECORD_ENV, None)
    done = subprocess.run([sys.executable, "notebooks/scripts/03_attention.py"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert {p.name: p.read_bytes() for p in (ROOT / "results").glob("*.json")} == before
    written = ROOT / "data" / "outputs" / "results" / "default" / "ch03.json"
    assert json.loads(written.read_text())["profile"] == "default"


@pytest.mark.parametrize("values, match", [({"val_loss": 1.0}, "seconds"), ({"seconds": math.nan}, "nan"),
                                           ({"seconds": 1, "x": {"y": [math.inf]}}, r"ch05\.x\.y\[0\]")])
def test_bad_results_are_refused(data, values, match):
    with pytest.raises(ValueError, match=match):
        write_results(5, values, profile="default")
    with pytest.raises(ValueError, match="chapter"):
        write_results(0, {"seconds": 1})
    with pytest.raises(TypeError, match="set"):
        write_results(5, {"seconds": 1, "x": {1, 2}})


def test_table_and_readme_markers():
    table = results_table({5: {"profile": "default", "seconds": 600, "val_loss": 3.5, "val_bits_per_byte": 1.7,
                               "reference_val_bits_per_byte": 1.4, "unigram_bits_per_byte": 2.9}})
    assert "| 5 |" in table and "1.700 bits/byte" in table and "10.0 min" in table
    readme = f"intro\n{results.README_BEGIN}\nold\n{results.README_END}\noutro\n"
    assert readme_with_table(readme, "NEW") == f"intro\n{results.README_BEGIN}\nNEW\n{results.README_END}\noutro\n"
    with pytest.raises(ValueError, match="markers"):
        readme_with_table("no markers", "NEW")
    with pytest.raises(ValueError, match="in that order"):  # an end marker before its begin is no block
        readme_with_table(f"{results.README_END}\n{results.README_BEGIN}\n", "NEW")
    with pytest.raises(ValueError, match="map:end"):  # the map's begin without its end
        results.readme_with_map(f"{results.MAP_BEGIN}\nold\n", {})


def test_readme_results_table_matches_the_committed_results():
    committed = read_results(ROOT / "results")
    assert set(range(1, 9)) <= set(committed), "results/ch01-08.json are written by the notebooks' default runs"
    assert all(r["profile"] == "default" for r in committed.values())
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme_with_table(readme, results_table(committed)) == readme, (
        "README.md's results table is stale: run `python -m gpt2_core.course.results`")


def test_the_readme_is_rewritten_whole_or_not_at_all(tmp_path, monkeypatch, capsys):
    """`python -m gpt2_core.course.results` replaces README.md atomically: a full disk leaves the old one, whole."""
    import errno

    from gpt2_core import files

    monkeypatch.setenv("GPT2_COURSE_DATA", str(tmp_path / "data"))
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "ch09.json").write_text(json.dumps({"profile": "default", "seconds": 60, "x": 1}))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{results.README_BEGIN}\nold\n{results.README_END}\n")
    assert results.main([]) == 0 and "| 9 | x 1 | 1.0 min |" in readme.read_text()
    written = readme.read_bytes()
    (tmp_path / "results" / "ch10.json").write_text(json.dumps({"profile": "default", "seconds": 6, "y": 2}))

    def disk_full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "_write_synced", disk_full)
    with pytest.raises(OSError, match="the disk is full.*README.md"):
        results.main([])
    assert readme.read_bytes() == written and sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "results"]
