"""Chapter 6's measurement command, end to end on a tiny model and a synthetic corpus (seconds, offline)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import tiny_model, tiny_tokenizer

import gpt2_core.course.reference
from gpt2_core.course import spam_runs
from gpt2_core.course.results import read_measurement
from gpt2_core.finetuning import spam

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
    monkeypatch.setattr(gpt2_core.course.reference, "load_base_model",
                        lambda device=None: (tiny_model(drop_rate=0.0, n_layers=2).eval(), tiny_tokenizer(), "tiny"))
    return recipe


def test_learning_curve_command_writes_every_method_seed_and_label_count(tiny_course, tmp_path):
    out = tmp_path / "curve.json"
    assert spam_runs.main(["learning-curve", "--out", str(out), "--labels", "4", "1000", "--seeds", "1", "2"]) == 0
    result = json.loads(out.read_text())
    assert result["command"] == "python -m gpt2_core.course.spam_runs learning-curve --labels 4 1000 --seeds 1 2"
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
    # the counts behind each score, for its sampling error (gpt2_core.finetuning.compare): every score is a share
    n_val, n_test = result["validation_emails"], result["test_emails"]
    assert all((row["validation"][0] * n_val) == pytest.approx(round(row["validation"][0] * n_val))
               and (row["test"][0] * n_test) == pytest.approx(round(row["test"][0] * n_test)) for row in result["rows"])
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


def _curve(labels: list[int], seeds: list[int], command: str, seconds: float, **changes) -> dict:
    """A learning curve as the command writes it; each accuracy encodes its label count, method and seed."""
    methods = {m: {"accuracy": [[n + k / 10 + s / 1000 for s in seeds] for n in labels],
                   "hard_ham": [[n / 100 for _ in seeds] for n in labels],
                   "mean": [n + k / 10 for n in labels], "std": [float(k) for _ in labels]}
               for k, m in enumerate(spam_runs.METHODS)}
    return {"measured": "2026-11-30", "profile": "default", "command": command, "torch_threads": 1,
            "labels": labels, "seeds": seeds, "methods": methods, "base_model": "reference",
            "recipe": {"window": 128}, "test_emails": 713, "seconds": seconds, **changes}


def test_merged_curve_reads_as_one_command_over_every_label_count(tmp_path):
    low = _curve([16, 256], [1, 2], "python -m x learning-curve --labels 16 256", 60.0)
    high = _curve([64, 2501], [1, 2], "python -m x learning-curve --labels 64 100000", 90.0, torch_threads=2,
                  measured="2026-12-01")
    for path, part in (("low.json", low), ("high.json", high)):
        (tmp_path / path).write_text(json.dumps(part))
    out = tmp_path / "curve.json"
    assert spam_runs.main(["merge-curves", "--parts", str(tmp_path / "low.json"), str(tmp_path / "high.json"),
                           "--out", str(out)]) == 0
    merged = read_measurement(out)
    assert merged["labels"] == [16, 64, 256, 2501] and merged["seeds"] == [1, 2]
    assert merged["command"] == ("python -m gpt2_core.course.spam_runs learning-curve --labels 16 64 256 2501 "
                                 "--seeds 1 2")
    assert merged["measured"] == "2026-12-01" and merged["seconds"] == 150.0 and merged["torch_threads"] == 2
    assert [m.split(" (")[0] for m in merged["measured_in"]] == [low["command"], high["command"]]
    for k, method in enumerate(spam_runs.METHODS):  # every value went to its own label count and method
        assert merged["methods"][method]["mean"] == [n + k / 10 for n in (16, 64, 256, 2501)]
        assert merged["methods"][method]["accuracy"][1] == [64 + k / 10 + 0.001, 64 + k / 10 + 0.002]
        assert merged["methods"][method]["hard_ham"][3] == [25.01, 25.01]


def test_merging_curves_refuses_pieces_that_do_not_fit():
    base = _curve([16], [1, 2], "a", 1.0)
    with pytest.raises(ValueError, match="different seeds"):
        spam_runs.merge_curves([base, _curve([64], [1, 3], "b", 1.0)])
    with pytest.raises(ValueError, match="different recipe"):
        spam_runs.merge_curves([base, _curve([64], [1, 2], "b", 1.0, recipe={"window": 64})])
    with pytest.raises(ValueError, match="16 labels are measured in two"):
        spam_runs.merge_curves([base, _curve([16, 64], [1, 2], "b", 1.0)])
    with pytest.raises(ValueError, match="at least 2"):
        spam_runs.merge_curves([base])
