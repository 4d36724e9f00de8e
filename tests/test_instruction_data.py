"""Tests for gpt2_core.finetuning.instruction_data and instruction_vocab: the word-disjoint generator, the
course's sets, loading and splitting."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter

import pytest

from gpt2_core.finetuning.instruction_data import (
    DEFAULT_N,
    FAMILIES,
    FORBIDDEN_TEXT,
    INSTRUCTIONS_SHA256,
    KNOWLEDGE,
    MAX_REPEAT,
    SUPPORTED,
    WORD_LIST_SIZE,
    balance_families,
    by_split,
    check_disjoint,
    dump_records,
    extra_training_records,
    family_group,
    fresh_records,
    generate_records,
    load_alpaca_json,
    load_instruction_data,
    make_instruction_data,
    number_to_words,
    plural,
    president_by_year,
    split_records,
    vocabulary_split,
    word_list,
    write_instruction_data,
    year_sentences,
)
from gpt2_core.finetuning.instruction_sets import (
    EXTRA_TRAIN,
    PROCEDURE_SHARE,
    course_instructions,
    mentions_unseen,
    procedure_records,
)
from gpt2_core.finetuning.instruction_vocab import _NOUNS, INSTRUCTIONS
from gpt2_core.pretraining.recipes import course_tokenizer

WORD_FAMILIES = ("first_word", "last_word", "reverse_words", "count_words", "upper_case", "plural")


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return make_instruction_data()  # generated here, not through the package's cache


@pytest.fixture(scope="module")
def sets() -> dict[str, list[dict]]:
    return course_instructions()


@pytest.fixture(scope="module")
def split():
    return vocabulary_split()


def _question(r: dict) -> tuple[str, str]:
    return r["instruction"], r["input"]


def test_generated_set_is_pinned_byte_for_byte(records):
    text = dump_records(records)
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == INSTRUCTIONS_SHA256, (
        "the generator changed its output: if that was meant, pin the new sha256 in INSTRUCTIONS_SHA256 "
        "and update data/README.md")
    assert load_instruction_data() == records


def test_generator_is_deterministic_and_seed_dependent():
    assert make_instruction_data(60, seed=3) == make_instruction_data(60, seed=3)
    assert make_instruction_data(60, seed=3) != make_instruction_data(60, seed=4)


def test_sizes_of_every_split_and_family(records, sets):
    counts = {name: Counter(r["family"] for r in rs) for name, rs in by_split(records).items()}
    assert set(counts) == {"train", "test", "heldout"}
    assert sum(counts["train"].values()) + sum(counts["test"].values()) == DEFAULT_N
    for name in ("train", "test", "heldout"):
        assert set(counts[name]) == set(FAMILIES), name
    assert all(counts["test"][f] >= 50 for f in SUPPORTED)
    assert all(counts["heldout"][f] <= counts["test"][f] for f in FAMILIES)
    assert sum(counts["heldout"].values()) >= 0.9 * sum(counts["test"].values())
    assert set(sets) == {"train", "test", "heldout", "fresh", "new", "validation", "validation_new"}
    assert sets["test"] == by_split(records)["test"] and sets["heldout"] == by_split(records)["heldout"]
    assert set(Counter(r["family"] for r in sets["train"])) == set(FAMILIES)
    assert len(sets["train"]) > 25_000
    fresh = Counter(r["family"] for r in sets["fresh"])
    assert set(fresh) == set(SUPPORTED) and all(90 <= n <= 100 for n in fresh.values())


def test_records_are_clean_and_no_question_is_in_two_sets(records, sets):
    assert len({_question(r) for r in records}) == len(records)
    for r in records + sets["fresh"] + sets["validation"]:
        assert set(r) == {"instruction", "input", "output", "family", "split"}
        assert all(isinstance(v, str) for v in r.values()) and r["output"]
        assert not any(FORBIDDEN_TEXT in v for v in r.values())
    questions = {name: {_question(r) for r in rs} for name, rs in sets.items()}
    for a in questions:
        for b in questions:
            assert a == b or not questions[a] & questions[b], (a, b)


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


def test_answers_are_correct(records, sets):
    years = president_by_year()
    checked = records + sets["fresh"] + sets["train"][-3000:] + sets["new"]
    checked += sets["validation"] + sets["validation_new"]
    assert all(_answer_ok(r, years) for r in checked + [r for r in sets["train"] if r.get("source") == "procedure"])


def _items(r: dict) -> tuple[set[str], set[int], set[int]]:
    """(words, numbers 0-99, years) a record shows, read from its family's layout (not by check_disjoint's rule)."""
    fam, x, y = r["family"], r["input"], r["output"]
    words = set(re.findall(r"[a-z]+", f"{r['instruction']} {x} {y}".lower()))
    if fam == "sort_numbers":
        return words, {int(v) for v in x.split() + y.split()}, set()
    if fam == "arithmetic":
        return words, {int(x.split()[0]), int(x.split()[2])}, set()  # the result is computed: it may be held out
    if fam == "spell_number":
        return words, {int(x)}, set()
    if fam == "president":
        return words, set(), {int(r["instruction"].rstrip("?").split()[-1])}
    if fam == "extract_year":
        tokens = [t.strip(".,;:!?()'\"") for t in x.split()]
        numbers = {int(t) for t in tokens if t.isdigit()}
        return words, {n for n in numbers if n < 100}, {int(y)} | {n for n in numbers if n >= 1000}
    return words, set(), set()


def test_no_held_out_word_number_or_year_is_ever_trained_on(records, sets, split):
    assert check_disjoint(records) == [] and check_disjoint(sets["train"]) == []
    for r in sets["train"]:
        words, numbers, years = _items(r)
        assert not words & split.heldout_words, r
        assert not numbers & split.heldout_numbers, r
        assert not years & split.heldout_years, r


def test_heldout_questions_use_only_held_out_items(records, split):
    heldout = by_split(records)["heldout"]
    for r in heldout:
        fam, x = r["family"], r["input"]
        words, numbers, years = _items(r)
        if fam in WORD_FAMILIES:
            assert set(x.split()) <= split.heldout_words, r
        elif fam == "extract_year":
            assert int(r["output"]) in split.heldout_years, r  # the sentence's other words may be any
        else:
            assert numbers <= split.heldout_numbers and years <= split.heldout_years, r
            assert numbers or years, r


def test_check_disjoint_finds_leaks(split):
    word, number, year = min(split.heldout_words), min(split.heldout_numbers - {0}), min(split.heldout_years)
    known = split.train.words[0]
    rows = [
        {"instruction": INSTRUCTIONS["first_word"], "input": f"{known} {word.upper()}", "output": known},
        {"instruction": INSTRUCTIONS["sort_numbers"], "input": f"{number} 1", "output": f"1 {number}"},
        {"instruction": INSTRUCTIONS["president"].format(year=year), "input": "", "output": "X"},
        {"instruction": INSTRUCTIONS["count_words"], "input": " ".join([known] * number), "output": str(number)},
    ]
    rows = [{**r, "family": "x", "split": "train"} for r in rows]
    rows[3]["family"] = "count_words"  # a count may equal a held-out number: it is computed
    assert check_disjoint(rows) == [0, 1, 2]
    assert check_disjoint([{**rows[0], "split": "test"}]) == []


def test_word_list_is_wide_and_half_multi_token():
    words = word_list()
    assert len(words) == WORD_LIST_SIZE == len(set(words)) and list(words) == sorted(words)
    assert set(_NOUNS) <= set(words) and not {plural(n) for n in _NOUNS} & set(words)
    assert all(w.isascii() and w.isalpha() and 3 <= len(w) <= 12 for w in words)
    tokenizer = course_tokenizer("default")
    multi = sum(len(tokenizer.encode_ordinary(" " + w)) > 1 for w in words)
    assert multi / len(words) >= 0.4  # 53% today: rare words, several tokens long


def test_vocabulary_split(split):
    assert set(split.train.words) | set(split.heldout.words) == set(word_list())
    assert not set(split.train.words) & set(split.heldout.words)
    assert 0.15 < len(split.heldout_words) / len(word_list()) < 0.25
    for decade in range(0, 100, 10):
        assert len(split.heldout_numbers & set(range(decade, decade + 10))) == 2
    fixed = {w for text in INSTRUCTIONS.values() for w in re.findall(r"[a-z]+", text.lower())}
    fixed |= {number_to_words(n) for n in range(20)}
    assert not fixed & split.heldout_words
    assert split.heldout.operands() and all(n <= 20 for n in split.heldout.operands())
    assert set(split.full().words) == set(word_list()) and len(split.full().numbers) == 100
    assert vocabulary_split() is split


@pytest.mark.parametrize("kwargs, error, match", [
    ({"fraction": 0.05}, ValueError, "fraction must be >= 0.1"), ({"fraction": 0.95}, ValueError, "<= 0.9"),
    ({"fraction": "0.2"}, TypeError, "fraction"), ({"seed": -1}, ValueError, "seed must be >= 0"),
])
def test_vocabulary_split_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        vocabulary_split(**kwargs)


def _family_rows(sizes: dict[str, int]) -> list[dict]:
    return [{"instruction": f, "input": str(i), "output": "x", "family": f} for f, n in sizes.items() for i in range(n)]


def test_balance_families_repeats_small_families_towards_the_mean():
    rows = _family_rows({"big": 20, "small": 2, "tiny": 1})  # mean family size 23 // 3 = 7
    out = balance_families(rows)
    assert out[:len(rows)] == rows
    assert Counter(r["family"] for r in out) == {"big": 20, "small": 7, "tiny": 5}  # tiny: capped at 5 times
    assert balance_families(rows) == out and balance_families(rows, max_repeat=1) == rows
    rows = _family_rows({"big": 30, "small": 4})  # mean 17: 4 full rounds of small, then 1 of its 4 by seed
    picked = {seed: balance_families(rows, seed=seed)[-1]["input"] for seed in range(10)}
    assert len(set(picked.values())) > 1


def test_course_training_set_is_balanced_as_measured(records, sets):
    file_train = by_split(records)["train"]
    n_procedure = round(PROCEDURE_SHARE * EXTRA_TRAIN)
    asked = records + sets["fresh"] + sets["validation"]
    extra = extra_training_records(asked, EXTRA_TRAIN - n_procedure)
    corpus = [r for r in file_train + extra if not mentions_unseen(r)]
    before = Counter(r["family"] for r in corpus + procedure_records(n_procedure))
    after = Counter(r["family"] for r in sets["train"])
    mean = sum(before.values()) // len(before)
    for family, n in before.items():
        assert after[family] == (n if n >= mean else min(mean, MAX_REPEAT * n)), family
    kept = [r for r in file_train if not mentions_unseen(r)]  # a corpus sentence may hold a new English word
    assert any(after[f] > before[f] for f in before) and sets["train"][:len(kept)] == kept


@pytest.mark.parametrize("kwargs, match", [({"max_repeat": 0}, "max_repeat must be >= 1"),
                                           ({"seed": -2}, "seed must be >= 0")])
def test_balance_families_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        balance_families(_family_rows({"a": 2}), **kwargs)
    with pytest.raises(ValueError, match="no records"):
        balance_families([])


def test_extra_training_records_are_new_and_in_vocabulary(records):
    extra = extra_training_records(records, n=300, seed=3)
    assert len(extra) == 300 and {r["split"] for r in extra} == {"train"}
    assert not {_question(r) for r in extra} & {_question(r) for r in records}
    assert check_disjoint(extra) == [] and extra == extra_training_records(records, n=300, seed=3)


@pytest.mark.parametrize("args, error, match", [
    (([],), ValueError, "seen is empty"), ((None, 0), ValueError, "n must be >= 1"),
    ((None, 10, -1), ValueError, "seed must be >= 0"), ((None, 2.5), TypeError, "n must be an int"),
])
def test_extra_training_records_errors(records, args, error, match):
    args = (records, *args[1:]) if args[0] is None else args
    with pytest.raises(error, match=match):
        extra_training_records(*args)


def test_fresh_records_are_new_and_mix_the_vocabulary(records, sets, split):
    fresh = sets["fresh"]
    assert {r["split"] for r in fresh} == {"fresh"}
    assert not {_question(r) for r in fresh} & {_question(r) for r in records}
    inputs = [set(r["input"].split()) for r in fresh if r["family"] in WORD_FAMILIES]
    assert any(ws & split.heldout_words for ws in inputs) and any(ws - split.heldout_words for ws in inputs)
    assert fresh_records(records, 5) == fresh_records(records, 5)
    assert {r["family"] for r in fresh_records(records, 3, families=["plural"])} == {"plural"}


@pytest.mark.parametrize("args, kwargs, error, match", [
    (([], 10), {}, ValueError, "seen is empty"), ((None, 0), {}, ValueError, "n_per_family must be >= 1"),
    ((None, 5), {"seed": -1}, ValueError, "seed must be >= 0"),
    ((None, 5), {"families": ["poetry"]}, ValueError, "unknown families"),
    ((None, 5), {"families": []}, ValueError, "families is empty"),
])
def test_fresh_records_errors(records, args, kwargs, error, match):
    args = (records, *args[1:]) if args[0] is None else args
    with pytest.raises(error, match=match):
        fresh_records(*args, **kwargs)


def test_course_instructions_returns_copies(sets):
    again = course_instructions()
    again["train"][0]["output"] = "changed"
    again["test"].clear()
    assert course_instructions() == sets


def test_generate_records_errors(split):
    with pytest.raises(ValueError, match="unknown families"):
        generate_records({"poetry": 3}, 1, split.train)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        generate_records({"plural": 3}, -1, split.train)


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
    with pytest.raises(ValueError, match="seed must be >= 0"):
        make_instruction_data(10, seed=-1)
    with pytest.raises(TypeError, match="seed"):
        make_instruction_data(10, seed="x")


def test_write_and_load(tmp_path):
    path = write_instruction_data(tmp_path / "x.json", n=24, seed=1)
    assert load_alpaca_json(path) == make_instruction_data(24, seed=1)
    assert load_instruction_data(path) == load_alpaca_json(path)
    # written atomically: the finished file replaces an old one, and no temporary file is left beside it
    again = write_instruction_data(path, n=12, seed=2)
    assert load_alpaca_json(again) == make_instruction_data(12, seed=2) and list(tmp_path.iterdir()) == [path]


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
