"""Chapter 6's measurement command, end to end on a tiny model and a synthetic corpus (seconds, offline)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import tiny_model, tiny_tokenizer

import gpt2_core.reference
from gpt2_core.finetuning import spam, spam_runs
from gpt2_core.results import read_measurement

HAM = ["Hi Tom, lunch at noon? The meeting is moved to Thursday.", "We the people of the United States."]
SPAM = ["Free money!!! Click here to claim your prize.", "Click here: free prize money, claim it!!!"]


def _table(n: int, offset: int) -> pd.DataFrame:
    rows = []
    for i in range(n):
        label = i % 2
        group = "spam-1" if label else ("hard-ham-1" if i % 4 == 0 else "easy-ham-1")
        rows.append({"text": (SPAM if label else HAM)[i % 4 // 2] + f" ({offset + i})", "label": label,
                     "group": group, "name": f"{offset + i:04d}"})
    return pd.DataFrame(rows)


@pytest.fixture
def tiny_course(monkeypatch):
    recipe = spam_runs.SpamRecipe(window=8, min_steps=2, window_epochs=0.1, lr=1e-3, domain_lm_steps=2)
    monkeypatch.setattr(spam_runs, "profile_recipe", lambda: recipe)
    monkeypatch.setattr(spam, "spam_splits", lambda **_: (_table(16, 0), _table(8, 100), _table(8, 200)))
    monkeypatch.setattr(gpt2_core.reference, "load_base_model",
                        lambda device=None: (tiny_model(drop_rate=0.0, n_layers=2).eval(), tiny_tokenizer(), "tiny"))
    return recipe


def test_learning_curve_command_writes_every_method_seed_and_label_count(tiny_course, tmp_path):
    out = tmp_path / "curve.json"
    assert spam_runs.main(["learning-curve", "--out", str(out), "--labels", "4", "1000", "--seeds", "1", "2"]) == 0
    result = json.loads(out.read_text())
    assert result["command"] == "python -m gpt2_core.finetuning.spam_runs learning-curve --labels 4 1000 --seeds 1 2"
    assert result["labels"] == [4, 16] and result["seeds"] == [1, 2] and result["test_emails"] == 8
    assert result["measured"] and result["recipe"]["window"] == 8
    assert set(result["methods"]) == set(spam_runs.METHODS)
    for method in result["methods"].values():
        assert [len(a) for a in method["accuracy"]] == [2, 2] and len(method["hard_ham"]) == 2
        for accs, mean, std in zip(method["accuracy"], method["mean"], method["std"], strict=True):
            assert mean == pytest.approx(sum(accs) / 2) and std == pytest.approx(abs(accs[0] - accs[1]) / 2 ** 0.5)
            assert all(a in {k / 8 for k in range(9)} for a in accs)  # a share of the 8 test e-mails


def test_recipe_search_command_runs_every_variant(tiny_course, tmp_path):
    out = tmp_path / "search.json"
    spam_runs.main(["recipe-search", "--out", str(out), "--labels", "8", "--seeds", "3"])
    result = json.loads(out.read_text())
    assert [row["variant"] for row in result["rows"]] == [label for *_, readings in spam_runs.VARIANTS
                                                          for label, _ in readings]
    assert all(len(row["validation"]) == len(row["test"]) == 1 for row in result["rows"])
    assert read_measurement(out) == result
    with pytest.raises(FileNotFoundError, match="python -m gpt2_core"):
        read_measurement(tmp_path / "missing.json")


def test_labelled_samples_change_with_the_seed_and_all_means_all(tiny_course):
    data = spam_runs.SpamData.load(tiny_tokenizer(), 8)
    a, _ = data.labelled(8, seed=1)
    b, _ = data.labelled(8, seed=2)
    assert a.n_texts == b.n_texts == 8 and a.ids != b.ids
    assert data.labelled(100, seed=1)[0] is data.train
    recipe = spam_runs.SpamRecipe()
    assert recipe.steps(15_812) == 494 and recipe.steps(10) == recipe.min_steps
