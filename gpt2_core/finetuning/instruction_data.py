"""Instruction records that can be checked exactly: generating, saving, loading and splitting them.

Every record is an instruction whose answer is known (reverse some words, sort numbers, pull the year
out of a sentence, ...), so fine-tuning is scored by exact match, not by taste. Records follow the
Alpaca JSON shape (Taori et al., 2023), ``{"instruction", "input", "output"}``, plus ``family`` (the task)
and ``split`` (what the record is for). Words, numbers, years and sentences come from
:mod:`~gpt2_core.finetuning.instruction_vocab`, which holds a part of them out of training; everything
is seeded, so the same seed always gives the same records, byte for byte.

The families fall into two groups, reported separately:

- :data:`SUPPORTED`: the answer is in the text of the question (copy, reorder, count, extract):
  a model can learn the *procedure* from examples;
- :data:`KNOWLEDGE`: the answer needs a fact the question does not give and the corpus barely teaches
  (a sum, who spoke in a given year, how a number is spelled, upper case letters, English plurals). A sum
  is a fact here: nearly every result of the course's sums is one token of the course tokenizer, so
  ``7 + 5`` is answered by recalling the token ``12``, which the question does not contain. Held-out
  questions of these families ask about items never seen in fine-tuning, so they test memory, not
  procedure; a small model scores little on them, and that is worth seeing.

:func:`make_instruction_data` gives the generated set: ``train`` and ``test`` records of the training
vocabulary (1/8 of each family is test), and ``heldout`` records built only from held-out words, numbers and
years. :func:`extra_training_records` adds more training questions and :func:`fresh_records` questions of
another seed; :mod:`~gpt2_core.finetuning.instruction_sets` puts the course's sets together.

The generated set is not a committed file: it is rebuilt when loaded (a few seconds) and
:data:`INSTRUCTIONS_SHA256` pins its bytes; :func:`write_instruction_data` writes it out to browse.
"""

from __future__ import annotations

import json
import random
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

from ..checks import check_int, check_number
from ..files import json_text, write_json
from ..profile import data_dir
from .instruction_vocab import (
    CANDIDATE_POOL,
    HELD_OUT_FRACTION,
    INSTRUCTIONS,
    VOCAB_SEED,
    WORD_LIST_SIZE,
    Vocabulary,
    VocabularySplit,
    check_disjoint,
    number_to_words,
    plural,
    president_by_year,
    vocabulary_split,
    word_list,
    year_sentences,
)

DATA_FILE = "instructions.json"
DEFAULT_N = 6600  # in-vocabulary records (train + test); the held-out set is about as large as the test
DEFAULT_SEED = 7
TEST_FRACTION = 0.125  # of each family's in-vocabulary records
FRESH_SEED = 2027  # the seed of the "fresh" records: same tasks, new items
EXTRA_TRAIN = 20_000  # default size of extra_training_records()
EXTRA_SEED = 17
MAX_REPEAT = 5  # balance_families repeats a small family at most this many times
BALANCE_SEED = 5
FORBIDDEN_TEXT = "<|endoftext|>"
# sha256 of dump_records(make_instruction_data()) as UTF-8 (1,234,056 bytes); any generator change moves it
INSTRUCTIONS_SHA256 = "1c85b4f828c7fe0c9982c9ed149f9798e0e1f2c928108516ccb93cc0775f9a55"

__all__ = [  # the vocabulary's names are re-exported: one import for the chapters
    "balance_families", "by_split", "CANDIDATE_POOL", "check_disjoint",
    "DEFAULT_N", "DEFAULT_SEED", "dump_records", "EXTRA_TRAIN", "extra_training_records",
    "FAMILIES", "family_group", "FORBIDDEN_TEXT", "fresh_records", "FRESH_SEED", "generate_records",
    "HELD_OUT_FRACTION", "INSTRUCTIONS", "INSTRUCTIONS_SHA256", "KNOWLEDGE", "load_alpaca_json",
    "load_instruction_data", "make_instruction_data", "MAX_REPEAT", "number_to_words", "plural", "president_by_year",
    "Record", "split_records", "SUPPORTED", "VOCAB_SEED", "Vocabulary", "vocabulary_split", "VocabularySplit",
    "word_list", "WORD_LIST_SIZE", "write_instruction_data", "year_sentences",
]

# --------------------------------------------------------------------------- one generator per family
Record = dict[str, str]
Make = Callable[[random.Random, Vocabulary], Record]


def _record(family: str, input_text: str, output: str, **fmt: object) -> Record:
    return {"instruction": INSTRUCTIONS[family].format(**fmt), "input": input_text, "output": output}


def _first(rng: random.Random, v: Vocabulary) -> Record:
    ws = rng.sample(v.words, rng.randint(3, 5))
    return _record("first_word", " ".join(ws), ws[0])


def _last(rng: random.Random, v: Vocabulary) -> Record:
    ws = rng.sample(v.words, rng.randint(3, 5))
    return _record("last_word", " ".join(ws), ws[-1])


def _reverse(rng: random.Random, v: Vocabulary) -> Record:
    ws = rng.sample(v.words, rng.randint(2, 4))
    return _record("reverse_words", " ".join(ws), " ".join(reversed(ws)))


def _count(rng: random.Random, v: Vocabulary) -> Record:
    ws = rng.sample(v.words, rng.randint(2, 7))
    return _record("count_words", " ".join(ws), str(len(ws)))


def _sort(rng: random.Random, v: Vocabulary) -> Record:
    nums = rng.sample([n for n in v.numbers if n >= 1], rng.randint(3, 4))
    return _record("sort_numbers", " ".join(map(str, nums)), " ".join(map(str, sorted(nums))))


def _year(rng: random.Random, v: Vocabulary) -> Record:
    sentence, year = rng.choice(v.sentences)
    return _record("extract_year", sentence, str(year))


def _arithmetic(rng: random.Random, v: Vocabulary) -> Record:
    a, b = rng.choice(v.operands()), rng.choice(v.operands())
    if rng.random() < 0.5:
        return _record("arithmetic", f"{a} + {b}", str(a + b))
    a, b = max(a, b), min(a, b)  # keep differences non-negative
    return _record("arithmetic", f"{a} - {b}", str(a - b))


def _president(rng: random.Random, v: Vocabulary) -> Record:
    presidents = president_by_year()
    year = rng.choice([y for y in v.years if y in presidents])
    return _record("president", "", presidents[year], year=year)


def _spell(rng: random.Random, v: Vocabulary) -> Record:
    n = rng.choice(v.numbers)
    return _record("spell_number", str(n), number_to_words(n))


def _upper(rng: random.Random, v: Vocabulary) -> Record:
    w = rng.choice(v.words)
    return _record("upper_case", w, w.upper())


def _plural(rng: random.Random, v: Vocabulary) -> Record:
    noun = rng.choice(v.nouns)
    return _record("plural", noun, plural(noun))


SUPPORTED: dict[str, Make] = {
    "first_word": _first, "last_word": _last, "reverse_words": _reverse, "count_words": _count,
    "sort_numbers": _sort, "extract_year": _year,
}
# Arithmetic is knowledge for this tokenizer: nearly every sum of two numbers up to 20 is one token, which the
# question does not contain: recalled from an addition table, not copied or counted (chapter 7 counts them).
KNOWLEDGE: dict[str, Make] = {
    "arithmetic": _arithmetic, "president": _president, "spell_number": _spell, "upper_case": _upper,
    "plural": _plural,
}
FAMILIES: dict[str, Make] = {**SUPPORTED, **KNOWLEDGE}


def family_group(family: str) -> str:
    """``supported`` or ``knowledge`` (see the module's docstring); unknown families raise."""
    if family in SUPPORTED:
        return "supported"
    if family in KNOWLEDGE:
        return "knowledge"
    raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")


# --------------------------------------------------------------------------- the sets
def generate_records(counts: dict[str, int], seed: int, vocab: Vocabulary, exclude: Sequence[dict] = (),
                     total: int | None = None) -> list[Record]:
    """Up to ``counts[family]`` records of each family named (and ``total`` in all), round-robin, drawn from
    ``vocab``; no question (instruction + input) twice, none of ``exclude``.

    Each family draws from its own ``random.Random`` (seeded from ``seed`` and its name), so adding a family
    never changes the others. A family with few possible questions (plurals, numbers in words) stops when
    60 tries find nothing new, and the others go on.
    """
    check_int(seed, "seed", low=0)
    unknown = set(counts) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown families {sorted(unknown)}; known: {', '.join(FAMILIES)}")
    seen = {(r["instruction"], r.get("input", "")) for r in exclude}
    rngs = {name: random.Random(f"{seed}-{name}") for name in counts}
    made = dict.fromkeys(counts, 0)
    active = [name for name in FAMILIES if counts.get(name, 0) > 0]
    records: list[Record] = []
    while active and (total is None or len(records) < total):
        for name in list(active):
            if total is not None and len(records) >= total:
                break
            for _ in range(60):  # a few tries to find a question not asked yet
                record = FAMILIES[name](rngs[name], vocab)
                key = (record["instruction"], record["input"])
                if key not in seen:
                    seen.add(key)
                    records.append({**record, "family": name})
                    made[name] += 1
                    break
            else:  # this family has run out of new questions
                active.remove(name)
                continue
            if made[name] >= counts[name]:
                active.remove(name)
    return records


def make_instruction_data(n: int = DEFAULT_N, seed: int = DEFAULT_SEED) -> list[Record]:
    """The generated set, every record with a ``split``: ``n`` in-vocabulary records round-robin over the
    families, of which a stratified :data:`TEST_FRACTION` of each family is ``test`` and the rest ``train``,
    then ``heldout`` records (only held-out words, numbers, years; as many per family as the test has, where
    the family has that many questions)."""
    check_int(n, "n", low=1)
    check_int(seed, "seed", low=0)
    split = vocabulary_split()
    inside = generate_records(dict.fromkeys(FAMILIES, n), seed, split.train, total=n)
    train, test = split_records(inside, TEST_FRACTION, seed)
    heldout = generate_records(dict(Counter(r["family"] for r in test)), seed, split.heldout)
    return ([{**r, "split": "train"} for r in train] + [{**r, "split": "test"} for r in test]
            + [{**r, "split": "heldout"} for r in heldout])


def _check_seen(seen: Sequence[dict]) -> None:
    if len(seen) == 0:
        raise ValueError("seen is empty; pass the records already made (make_instruction_data()), so that "
                         "no question is asked twice")


def extra_training_records(seen: Sequence[dict], n: int = EXTRA_TRAIN, seed: int = EXTRA_SEED) -> list[Record]:
    """``n`` more ``train`` records from the *training* vocabulary, none asking a question of ``seen``
    (pass every record that is tested, so none of them is trained on). Mostly word and number questions:
    the other families soon run out of questions not asked yet."""
    _check_seen(seen)
    check_int(n, "n", low=1)
    check_int(seed, "seed", low=0)
    made = generate_records(dict.fromkeys(FAMILIES, n), seed, vocabulary_split().train, exclude=seen, total=n)
    return [{**r, "split": "train"} for r in made]


def balance_families(records: Sequence[dict], max_repeat: int = MAX_REPEAT, seed: int = BALANCE_SEED) -> list[dict]:
    """The records, then copies of the families smaller than the mean family size: each small family is
    repeated towards the mean, at most ``max_repeat`` times in all (the copies of a last partial round
    are a seeded sample). Larger families are left as they are, so none of them loses a record."""
    check_int(max_repeat, "max_repeat", low=1)
    check_int(seed, "seed", low=0)
    if len(records) == 0:
        raise ValueError("no records to balance")
    families: dict[str, list[dict]] = {}
    for r in records:
        families.setdefault(r.get("family", ""), []).append(r)
    target = len(records) // len(families)
    rng = random.Random(seed)
    out = [dict(r) for r in records]
    for rs in families.values():
        keep = min(target, len(rs) * max_repeat)  # a family's size after balancing, when it is small
        extra = max(0, keep - len(rs))
        copies = rs * (extra // len(rs)) + rng.sample(rs, extra % len(rs))
        out += [dict(r) for r in copies]
    return out


def fresh_records(seen: Sequence[dict], n_per_family: int, seed: int = FRESH_SEED,
                  families: Sequence[str] | None = None) -> list[Record]:
    """``n_per_family`` new records of each of ``families`` (default: the supported ones) from another seed
    and the *whole* vocabulary (held-out and training words mixed), none asking a question of ``seen``;
    ``split`` is ``fresh``."""
    _check_seen(seen)
    check_int(n_per_family, "n_per_family", low=1)
    check_int(seed, "seed", low=0)
    names = list(SUPPORTED) if families is None else list(families)
    if not names:
        raise ValueError(f"families is empty; name some of: {', '.join(FAMILIES)}")
    made = generate_records(dict.fromkeys(names, n_per_family), seed, vocabulary_split().full(), exclude=seen)
    return [{**r, "split": "fresh"} for r in made]


def by_split(records: Sequence[dict]) -> dict[str, list[dict]]:
    """Records grouped by their ``split`` field (``""`` for records without one), in order."""
    out: dict[str, list[dict]] = {}
    for r in records:
        out.setdefault(r.get("split", ""), []).append(r)
    return out


@lru_cache(maxsize=1)
def _generated() -> tuple[Record, ...]:
    return tuple(make_instruction_data())


# --------------------------------------------------------------------------- files
def dump_records(records: Sequence[dict]) -> str:
    """The exact JSON text written to disk (the course's one format, :func:`gpt2_core.files.json_text`)."""
    return json_text(list(records))


def write_instruction_data(path: str | Path | None = None, n: int = DEFAULT_N,
                           seed: int = DEFAULT_SEED) -> Path:
    """Write the generated set as Alpaca-style JSON, to browse it (default ``data/outputs/instructions.json``,
    git-ignored: the course rebuilds the set when it loads it)."""
    target = Path(path) if path is not None else data_dir() / "outputs" / DATA_FILE
    records = list(_generated()) if (n, seed) == (DEFAULT_N, DEFAULT_SEED) else make_instruction_data(n, seed)
    return write_json(target, list(records))  # never half a file


def load_instruction_data(path: str | Path | None = None) -> list[Record]:
    """The course's generated set (:func:`make_instruction_data`, built once per process), or with ``path``
    any Alpaca JSON file (:func:`load_alpaca_json`)."""
    if path is None:
        return [dict(r) for r in _generated()]
    return load_alpaca_json(path)


def load_alpaca_json(path: str | Path) -> list[Record]:
    """Read any Alpaca-format JSON file: a list of objects with string ``instruction`` and ``output``.

    ``input`` is optional (defaults to ``""``); extra fields (such as ``family``) are kept as they are.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no Alpaca JSON file at {file}; check the path (the course's own file "
                                "is made by gpt2_core.instruction_data.write_instruction_data)")
    raw = file.read_bytes()
    if not raw.strip():
        raise ValueError(f"{file} is empty; it must hold a JSON list of records")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{file} is not UTF-8 text (bad byte at offset {err.start}); "
                         "save it with UTF-8 encoding") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{file} is not valid JSON ({err.msg} at line {err.lineno}, "
                         f"column {err.colno})") from err
    if not isinstance(data, list):
        raise ValueError(f"{file} must hold a JSON list of records, got a {type(data).__name__}")
    if not data:
        raise ValueError(f"{file} holds no records (an empty list); fine-tuning needs at least one")
    records = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise ValueError(f"record {i} of {file} must be a JSON object, got {type(item).__name__}")
        for field in ("instruction", "output"):
            if field not in item:
                raise ValueError(f"record {i} of {file} has no {field!r} field; every record needs one")
            if not isinstance(item[field], str):
                raise ValueError(f"record {i} of {file}: field {field!r} must be a string, "
                                 f"got {type(item[field]).__name__}")
        value = "" if item.get("input") is None else item["input"]
        if not isinstance(value, str):
            raise ValueError(f"record {i} of {file}: field 'input' must be a string, "
                             f"got {type(value).__name__}")
        records.append({**item, "input": value})
    return records


def _deduplicate_questions(records: Sequence[dict]) -> list[dict]:
    """The records with every repeated question (same instruction and input) after its first dropped, with a
    warning that says how many: a question in both the training and the test split would score memory."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for record in records:
        key = (record["instruction"], record.get("input", ""))
        if key not in seen:
            seen.add(key)
            kept.append(record)
    if len(kept) < len(records):
        warnings.warn(f"{len(records) - len(kept)} of {len(records)} records repeat a question asked earlier in the "
                      "set and were dropped, so that no question is both trained on and tested", stacklevel=3)
    return kept


def split_records(records: Sequence[dict], test_fraction: float = 0.125,
                  seed: int = DEFAULT_SEED) -> tuple[list[dict], list[dict]]:
    """(train, test), stratified by ``family``: each family gives ``round(test_fraction * size)`` to test.

    Records without a family count as one family ``""``. Order within each split follows the input. A
    question asked twice is kept once (:func:`_deduplicate_questions`), so no question is in both splits.
    """
    if not check_number(test_fraction, "test_fraction", low=0.0) < 1.0:
        raise ValueError(f"test_fraction must be a number in [0, 1), got {test_fraction!r}")
    if len(records) == 0:
        raise ValueError("no records to split; load or generate some first")
    records = _deduplicate_questions(records)
    by_family: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        by_family.setdefault(record.get("family", ""), []).append(i)
    rng = random.Random(seed)
    test_ids: set[int] = set()
    for family in sorted(by_family):
        ids = list(by_family[family])
        rng.shuffle(ids)
        test_ids.update(ids[: round(test_fraction * len(ids))])
    train = [r for i, r in enumerate(records) if i not in test_ids]
    test = [r for i, r in enumerate(records) if i in test_ids]
    return train, test
