"""Tests for gpt2_core.results: chapters' headline numbers as data, and the README generated from them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from gpt2_core import results
from gpt2_core.results import read_results, readme_with_table, results_dir, results_table, write_results

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("GPT2_COURSE_DATA", str(tmp_path / "data"))
    return tmp_path


def test_default_profile_writes_results_others_write_outputs(data):
    path = write_results(5, {"seconds": 1.5, "val_loss": 4.0}, profile="default")
    assert path == data / "results" / "ch05.json"
    assert json.loads(path.read_text()) == {"profile": "default", "seconds": 1.5, "val_loss": 4.0}
    tiny = write_results(5, {"seconds": 0.1}, profile="tiny")
    assert tiny == data / "data" / "outputs" / "results" / "tiny" / "ch05.json"
    assert read_results(results_dir("default")) == {5: {"profile": "default", "seconds": 1.5, "val_loss": 4.0}}


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


def test_readme_results_table_matches_the_committed_results():
    committed = read_results(ROOT / "results")
    assert set(range(1, 8)) <= set(committed), "results/ch01-07.json are written by the notebooks' default runs"
    assert all(r["profile"] == "default" for r in committed.values())
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme_with_table(readme, results_table(committed)) == readme, (
        "README.md's results table is stale: run `python -m gpt2_core.results`")
