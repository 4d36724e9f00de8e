"""Conclusions true to their numbers (issue 32): where a notebook says one result beats, or is within the noise of,
another, `gpt2_core.finetuning.compare` decided it, the run recorded the inputs and the verdict under
``conclusions`` in its results/chNN.json, and this test recomputes every verdict and finds its sentence in the
committed notebook's outputs. Below that, the helper itself: its rule by hand, its symmetries, its errors."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
from committed import judge_committed
from hypothesis import given
from hypothesis import strategies as st

from gpt2_core.course.prose import check_conclusions
from gpt2_core.exercises.solutions.ch06 import mcnemar_p
from gpt2_core.finetuning import compare

ROOT = Path(__file__).resolve().parent.parent
RESULTS = sorted((ROOT / "results").glob("ch[0-9][0-9].json"))

# Chapters whose notebook states comparisons: their results must record them. A chapter is PENDING while its
# committed run predates the recording (the reason is shown when skipped). THE LEAD EMPTIES PENDING once the
# notebook is re-executed at the default profile (`make execute`); a pending chapter that passes fails, so that
# it is taken off the list.
STATES_CONCLUSIONS = {6, 7, 8}
PENDING: set[int] = set()


def _notebook(chapter: int) -> Path:
    found = sorted((ROOT / "notebooks").glob(f"{chapter:02d}_*.ipynb"))
    assert len(found) == 1, f"results/ch{chapter:02d}.json has no notebook notebooks/{chapter:02d}_*.ipynb"
    return found[0]


@pytest.mark.parametrize("results", RESULTS, ids=[p.stem for p in RESULTS])
def test_every_recorded_conclusion_follows_from_its_numbers_and_is_shown(results, tmp_path):
    chapter = int(results.stem[2:])
    recorded = json.loads(results.read_text(encoding="utf-8")).get("conclusions")
    # judged on the committed run of the notebook: a learner's saved run shows other sentences
    problems = judge_committed([_notebook(chapter)], lambda nb: check_conclusions(nb[0], results), tmp_path)
    missing = chapter in STATES_CONCLUSIONS and not recorded
    if chapter in PENDING:
        if not (missing or problems):
            pytest.fail(f"chapter {chapter} is in PENDING but its conclusions are recorded and hold: remove it")
        pytest.skip(f"PENDING: re-execute notebook {chapter} at the default profile ({len(problems)} problem(s)"
                    f"{', no conclusions recorded yet' if missing else ''})")
    assert not missing, f"{results.name} records no conclusions, but notebook {chapter} states comparisons"
    assert not problems, "\n".join(str(p) for p in problems)


def test_pending_names_chapters_that_state_conclusions():
    assert PENDING <= STATES_CONCLUSIONS


# --- the checker, on a synthetic notebook and results file ------------------------------------------------------


def _write(tmp_path: Path, records: list[dict], shown: str) -> tuple[Path, Path]:
    notebook = tmp_path / "09_demo.ipynb"
    cell = {"cell_type": "code", "execution_count": 1, "metadata": {}, "source": "x",
            "outputs": [{"output_type": "display_data", "metadata": {},
                         "data": {"text/markdown": shown, "text/plain": "<Markdown>"}}]}
    notebook.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    results = tmp_path / "ch09.json"
    results.write_text(json.dumps({"seconds": 1.0, "conclusions": records}))
    return notebook, results


def test_the_checker_finds_a_wrong_verdict_and_a_sentence_the_notebook_does_not_show(tmp_path):
    good = compare.compare([0.95, 0.96, 0.955], [0.80, 0.81, 0.805], name_a="new", name_b="old", n_a=700, n_b=700)
    paired = compare.mcnemar_counts(12, 3, 713, name_a="A", name_b="B", what="e-mails")
    assert check_conclusions(*_write(tmp_path, [good.record(), paired.record()],
                                     f"So:\n{good.phrase}; and\n{paired.phrase}.")) == []
    # the numbers changed, the sentence did not: a lead of 15 points is recorded, but the rows are now level
    stale = {**good.record(), "values_a": [0.80, 0.81, 0.805]}
    problems = check_conclusions(*_write(tmp_path, [stale], good.phrase))
    assert [p.kind for p in problems] == ["conclusion does not follow"]
    assert "is within the noise of" in problems[0].sentence
    problems = check_conclusions(*_write(tmp_path, [good.record()], "a sentence typed by hand"))
    assert [p.kind for p in problems] == ["conclusion not shown"]
    problems = check_conclusions(*_write(tmp_path, [{"kind": "vibes"}], ""))
    assert [p.kind for p in problems] == ["bad conclusion"]


# --- compare(): the rule ----------------------------------------------------------------------------------------


def test_compare_by_hand():
    a, b = [0.92, 0.93], [0.90, 0.902]
    c = compare.compare(a, b, name_a="first window", name_b="the recipe", n_a=358, n_b=358, what="e-mails")
    seeds = statistics.variance(a) / 2 + statistics.variance(b) / 2
    sampling = 0.925 * 0.075 / 358 + 0.901 * 0.099 / 358
    assert c.difference == pytest.approx(0.024)
    assert c.noise == pytest.approx(math.sqrt(seeds + sampling))
    assert c.threshold == pytest.approx(2 * c.noise) and c.verdict == compare.WITHIN
    assert c.phrase == ("*first window* is within the noise of *the recipe* (92.5% against 90.1%: +2.4 points, "
                        "noise ±4.3 from 2 seeds and the sampling of 358 e-mails)")
    # the seeds alone are a much smaller noise: then the same lead counts
    alone = compare.compare(a, b, name_a="first window", name_b="the recipe")
    assert alone.verdict == compare.BEATS and alone.noise == pytest.approx(math.sqrt(seeds))
    assert alone.phrase.startswith("*first window* beats *the recipe* (") and alone.phrase.endswith("from 2 seeds)")
    assert compare.compare(b, a).verdict == compare.BEATEN


def test_compare_single_runs_need_their_sampling_error_and_plain_numbers_print_plainly():
    c = compare.compare([0.98], [0.94], n_a=713, n_b=713)
    assert c.noise == pytest.approx(math.sqrt(0.98 * 0.02 / 713 + 0.94 * 0.06 / 713)) and c.verdict == compare.BEATS
    assert "from the sampling of 713 examples" in c.phrase
    losses = compare.compare([1.2, 1.3, 1.25], [2.0, 2.1, 2.05], percent=False)
    assert "1.250 against 2.050: -0.800, noise" in losses.phrase and losses.verdict == compare.BEATEN


@pytest.mark.parametrize("kwargs, error, match", [
    ({"a": [], "b": [0.5, 0.6]}, ValueError, "non-empty list"),
    ({"a": "0.5", "b": [0.5, 0.6]}, ValueError, "non-empty list"),
    ({"a": [0.5], "b": [0.5, 0.6]}, ValueError, "one score and no n"),
    ({"a": [0.5, 1.2], "b": [0.5, 0.6], "n_a": 10}, ValueError, "<= 1.0"),
    ({"a": [0.5, 0.6], "b": [0.5, 0.6], "n_b": 0}, ValueError, "n_b must be >= 1"),
    ({"a": [0.5, True], "b": [0.5, 0.6]}, TypeError, "must be a number"),
    ({"a": [0.5, float("nan")], "b": [0.5, 0.6]}, ValueError, "NaN"),
    ({"a": [0.5, 0.6], "b": [0.5, 0.6], "n_a": 1.5}, TypeError, "must be an int"),
])
def test_compare_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        compare.compare(**kwargs)


scores = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=2, max_size=5)
counts = st.one_of(st.none(), st.integers(1, 5000))
MIRROR = {compare.BEATS: compare.BEATEN, compare.BEATEN: compare.BEATS, compare.WITHIN: compare.WITHIN}


@given(scores, scores, counts, counts)
def test_swapping_the_rows_mirrors_the_verdict(a, b, n_a, n_b):
    ab, ba = compare.compare(a, b, n_a=n_a, n_b=n_b), compare.compare(b, a, n_a=n_b, n_b=n_a)
    assert ba.difference == pytest.approx(-ab.difference, abs=1e-12)
    assert ba.noise == pytest.approx(ab.noise) and ba.verdict == MIRROR[ab.verdict]


@given(scores, scores, st.integers(1, 5000))
def test_the_sampling_error_only_adds_noise(a, b, n):
    seeds_only, both = compare.compare(a, b), compare.compare(a, b, n_a=n, n_b=n)
    assert both.noise >= seeds_only.noise - 1e-15
    if both.verdict != compare.WITHIN:  # a lead beyond the larger noise is beyond the smaller one too
        assert seeds_only.verdict == both.verdict


@given(scores, scores, counts, counts)
def test_the_verdict_is_the_difference_against_twice_the_noise(a, b, n_a, n_b):
    c = compare.compare(a, b, n_a=n_a, n_b=n_b)
    assert c.threshold == pytest.approx(compare.Z * c.noise)
    want = compare.BEATS if c.difference > c.threshold else compare.BEATEN if c.difference < -c.threshold \
        else compare.WITHIN
    assert c.verdict == want and (c.verdict == compare.WITHIN) == ("is within the noise of" in c.phrase)
    assert compare.from_record(json.loads(json.dumps(c.record()))) == c  # what results/chNN.json keeps recomputes


@given(scores, scores, st.floats(-5, 5, allow_nan=False))
def test_without_sampling_a_common_shift_changes_nothing(a, b, shift):
    c, shifted = compare.compare(a, b), compare.compare([x + shift for x in a], [x + shift for x in b])
    assert shifted.noise == pytest.approx(c.noise, abs=1e-9)
    assert shifted.difference == pytest.approx(c.difference, abs=1e-9)


# --- mcnemar(): paired predictions ------------------------------------------------------------------------------


def test_mcnemar_by_hand():
    y = [1] * 15 + [0] * 698
    a = [1] * 12 + [0] * 3 + [0] * 698  # right alone on the first 12 spam, wrong on 3
    b = [0] * 12 + [1] * 3 + [0] * 698
    m = compare.mcnemar(y, a, b, name_a="A", name_b="B", what="e-mails")
    assert (m.only_a, m.only_b, m.n) == (12, 3, 713)
    assert m.p_value == pytest.approx(2 * 576 / 2**15) and m.verdict == compare.BEATS
    assert m.phrase == ("*A* beats *B* (on the same 713 e-mails, right where the other is wrong on 12 against 3; "
                        "exact McNemar p = 0.035)")
    assert compare.mcnemar(y, b, a).verdict == compare.BEATEN
    assert compare.mcnemar(y, a, a).p_value == 1.0 and compare.mcnemar(y, a, a).verdict == compare.WITHIN


labels = st.lists(st.integers(0, 1), min_size=1, max_size=60)


@given(st.data())
def test_mcnemar_is_the_exercises_solution_and_symmetric(data):
    y = data.draw(labels)
    a = data.draw(st.lists(st.integers(0, 1), min_size=len(y), max_size=len(y)))
    b = data.draw(st.lists(st.integers(0, 1), min_size=len(y), max_size=len(y)))
    ab, ba = compare.mcnemar(y, a, b), compare.mcnemar(y, b, a)
    assert ab.p_value == pytest.approx(mcnemar_p(y, a, b)) and 0 < ab.p_value <= 1
    assert ba.p_value == ab.p_value and ba.verdict == MIRROR[ab.verdict]
    assert (ab.verdict == compare.WITHIN) == (ab.p_value >= compare.ALPHA)
    assert compare.from_record(json.loads(json.dumps(ab.record()))) == ab


@pytest.mark.parametrize("call, match", [
    (lambda: compare.mcnemar([], [], []), "at least one"),
    (lambda: compare.mcnemar([1, 0], [1], [1, 0]), "as many predictions"),
    (lambda: compare.mcnemar_counts(5, 6, 10), "only_b must be <= 5"),
    (lambda: compare.mcnemar_counts(-1, 0, 10), "only_a must be >= 0"),
    (lambda: compare.from_record({"kind": "seeds?"}), "not a recorded comparison"),
])
def test_mcnemar_and_record_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
