"""Tests for gpt2_core.instruction_data: the generator, the committed file, loading and splitting."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from gpt2_core.finetuning.instruction_data import (
    DEFAULT_N,
    FAMILIES,
    FORBIDDEN_TEXT,
    KNOWLEDGE,
    SUPPORTED,
    dump_records,
    family_group,
    fresh_records,
    load_alpaca_json,
    load_instruction_data,
    make_instruction_data,
    number_to_words,
    plural,
    president_by_year,
    split_records,
    write_instruction_data,
    year_sentences,
)
from gpt2_core.profile import data_dir


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return make_instruction_data()


def test_committed_file_equals_regenerated(records):
    committed = (data_dir() / "instructions.json").read_text(encoding="utf-8")
    assert committed == dump_records(records), ("regenerate with: python -c 'from gpt2_core.instruction_data "
                                                "import write_instruction_data as w; w()'")


def test_enough_training_records_in_every_group(records):
    train, test = split_records(records)
    assert len(records) == DEFAULT_N and len(train) >= 5000
    counts = Counter(r["family"] for r in test)
    assert set(counts) == set(FAMILIES)
    assert all(counts[f] >= 50 for f in SUPPORTED)


def test_generator_is_deterministic_and_seed_dependent():
    assert make_instruction_data(60, seed=3) == make_instruction_data(60, seed=3)
    assert make_instruction_data(60, seed=3) != make_instruction_data(60, seed=4)


def test_records_are_unique_and_clean(records):
    keys = [(r["instruction"], r["input"]) for r in records]
    assert len(keys) == len(set(keys))
    for r in records:
        assert set(r) == {"instruction", "input", "output", "family"}
        assert all(isinstance(v, str) for v in r.values()) and r["output"]
        assert not any(FORBIDDEN_TEXT in v for v in r.values())


def _answer_ok(r: dict, years: dict) -> bool:
    fam, x, y = r["family"], r["input"], r["output"]
    words = x.split()
    if fam in ("first_word", "last_word"):
        return y == words[0 if fam == "first_word" else -1]
    if fam == "reverse_words":
        return y.split() == words[::-1]
    if fam == "count_words":
        return int(y) == len(words)
    if fam == "sort_numbers":
        return [int(v) for v in y.split()] == sorted(int(v) for v in words)
    if fam == "extract_year":
        return y in x and len(y) == 4
    if fam == "arithmetic":
        a, op, b = words
        return int(y) == (int(a) + int(b) if op == "+" else int(a) - int(b))
    if fam == "president":
        return years[int(r["instruction"].split()[-1].rstrip("?"))] == y
    if fam == "spell_number":
        return y == number_to_words(int(x))
    if fam == "upper_case":
        return y == x.upper()
    return fam == "plural" and y == plural(x)


def test_answers_are_correct(records):
    years = president_by_year()
    assert all(_answer_ok(r, years) for r in records)


def test_groups():
    assert set(SUPPORTED).isdisjoint(KNOWLEDGE) and set(FAMILIES) == set(SUPPORTED) | set(KNOWLEDGE)
    assert family_group("first_word") == "supported" and family_group("plural") == "knowledge"
    with pytest.raises(ValueError, match="unknown family"):
        family_group("poetry")


def test_year_sentences_have_one_year():
    found = year_sentences()
    assert len(found) > 500
    for sentence, year in found[:50]:
        assert str(year) in sentence and 4 <= len(sentence.split()) <= 12


def test_fresh_records_are_new(records):
    fresh = fresh_records(records, 300)
    seen = {(r["instruction"], r["input"]) for r in records}
    assert len(fresh) == 300 and not seen & {(r["instruction"], r["input"]) for r in fresh}
    assert fresh == fresh_records(records, 300)
    with pytest.raises(ValueError, match="seen is empty"):
        fresh_records([], 10)


def test_president_years_skip_double_addresses():
    from gpt2_core.text.corpus import load_addresses

    per_year = Counter(a.year for a in load_addresses())
    doubles = {y for y, n in per_year.items() if n > 1}
    assert doubles and not doubles & set(president_by_year())


def test_number_to_words_and_plural():
    assert [number_to_words(n) for n in (0, 13, 20, 42, 99)] == [
        "zero", "thirteen", "twenty", "forty-two", "ninety-nine"]
    assert [plural(w) for w in ("nation", "tax", "church", "army", "day")] == [
        "nations", "taxes", "churches", "armies", "days"]
    with pytest.raises(ValueError, match="0-99"):
        number_to_words(100)
    with pytest.raises(ValueError, match="one word"):
        plural("two words")


def test_generator_errors():
    with pytest.raises(ValueError, match=">= 1"):
        make_instruction_data(0)
    with pytest.raises(TypeError, match="seed"):
        make_instruction_data(10, seed="x")


def test_write_and_load(tmp_path):
    path = write_instruction_data(tmp_path / "x.json", n=24, seed=1)
    assert load_alpaca_json(path) == make_instruction_data(24, seed=1)
    assert load_instruction_data(path) == load_alpaca_json(path)


def _write(tmp_path, data, raw: str | None = None):
    path = tmp_path / "d.json"
    path.write_text(raw if raw is not None else json.dumps(data), encoding="utf-8")
    return path


def test_load_alpaca_json_defaults_input(tmp_path):
    data = [{"instruction": "a", "output": "b"}, {"instruction": "c", "input": None, "output": "d"}]
    assert load_alpaca_json(_write(tmp_path, data)) == [{"instruction": "a", "output": "b", "input": ""},
                                                        {"instruction": "c", "input": "", "output": "d"}]


@pytest.mark.parametrize("data, match", [
    ({"instruction": "a"}, "JSON list"),
    (["text"], "record 0 .* JSON object"),
    ([{"instruction": "a", "output": "b"}, {"output": "b"}], "record 1 .*'instruction'"),
    ([{"instruction": "a"}], "record 0 .*'output'"),
    ([{"instruction": 3, "output": "b"}], "record 0 .*'instruction' must be a string"),
    ([{"instruction": "a", "input": 5, "output": "b"}], "record 0 .*'input' must be a string"),
])
def test_load_alpaca_json_errors(tmp_path, data, match):
    with pytest.raises(ValueError, match=match):
        load_alpaca_json(_write(tmp_path, data))


def test_load_alpaca_json_bad_file(tmp_path):
    with pytest.raises(ValueError, match="not valid JSON"):
        load_alpaca_json(_write(tmp_path, None, raw="[{"))
    with pytest.raises(FileNotFoundError, match="no Alpaca JSON"):
        load_alpaca_json(tmp_path / "missing.json")


def test_split_is_stratified_disjoint_and_fixed(records):
    train, test = split_records(records, 0.2, seed=5)
    assert len(train) + len(test) == len(records)
    by_all, by_test = Counter(r["family"] for r in records), Counter(r["family"] for r in test)
    for fam, n in by_all.items():
        assert by_test[fam] == round(0.2 * n)
    assert split_records(records, 0.2, seed=5) == (train, test)
    assert split_records(records, 0.2, seed=6)[1] != test


def test_split_errors(records):
    for bad in (1.0, -0.1, "0.2"):
        with pytest.raises((TypeError, ValueError), match="test_fraction"):
            split_records(records, bad)
    with pytest.raises(ValueError, match="no records"):
        split_records([])


@pytest.mark.parametrize("content, match", [(b"", "is empty"), (b"  \n", "is empty"), (b"[]", "no records"),
                                            (b'[{"instruction": "caf\xe9", "output": "x"}]', "not UTF-8.*offset 21")])
def test_load_alpaca_json_refuses_empty_and_non_utf8_files(tmp_path, content, match):
    path = tmp_path / "records.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        load_alpaca_json(path)


def test_a_question_asked_twice_is_never_in_both_splits():
    """A file with duplicated questions: the split keeps each question once and says how many it dropped."""
    records = [{"instruction": "What is the first word?", "input": f"w{i} x y", "output": f"w{i}",
                "family": "first_word"} for i in range(40)]
    records += [dict(r) for r in records[:10]]  # the same ten questions again, with their answers
    with pytest.warns(UserWarning, match="10 of 50 records repeat a question"):
        train, test = split_records(records, test_fraction=0.5)
    questions = lambda rs: {(r["instruction"], r["input"]) for r in rs}  # noqa: E731
    assert not questions(train) & questions(test)
    assert len(train) + len(test) == 40
