"""Instruction records that can be checked exactly: generating, saving, loading and splitting them.

Every record is an instruction whose answer is known (reverse some words, sort numbers, pull the year
out of a sentence, ...), so fine-tuning is scored by exact match, not by taste. Records follow the
Alpaca JSON shape (Taori et al., 2023), ``{"instruction", "input", "output"}``, plus a ``"family"``
naming the task. Words and sentences come from the State of the Union corpus (``gpt2_core.corpus``),
read deterministically, so the same seed always gives the same records.

The families fall into two groups, reported separately:

- :data:`SUPPORTED`: the answer is in the text of the question (copy, reorder, count, extract, add):
  a model can learn the *procedure* from examples;
- :data:`KNOWLEDGE`: the answer needs a fact the question does not give and the corpus barely teaches
  (who spoke in a given year, how a number is spelled, upper case letters, English plurals). Held-out
  questions of these families ask about items never seen in fine-tuning, so they test memory, not
  procedure; a small model scores little on them, and that is worth seeing.
"""

from __future__ import annotations

import json
import random
import re
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

from ..checks import check_int, check_number
from ..profile import data_dir
from ..text.corpus import load_addresses

DATA_FILE = "instructions.json"
DEFAULT_N = 6600  # records in data/instructions.json (about 5,800 of them train)
DEFAULT_SEED = 7
FRESH_SEED = 2027  # the seed of the "fresh" records: same tasks, new items
FORBIDDEN_TEXT = "<|endoftext|>"

_STOP_WORDS = frozenset(
    "that this with have been from will which their they there these those would should could "
    "more than other were such into upon them only also made under must every year years being "
    "what when where while shall most very some your about after before each make many much "
    "over same well great".split()
)
# Regular nouns for the plural task (plural by rule: +s, +es after s/x/z/ch/sh, consonant+y -> ies).
_NOUNS = (
    "nation state army bridge canal church city claim coast colony court duty farm fleet force "
    "harbor law market mine navy office port railway river road school ship tariff tax treaty "
    "union vessel war agency bank box branch bus class coach crash dispatch fox gas loss match "
    "process speech wish witch address ally body company county economy enemy "
    "factory family industry policy territory treasury victory"
).split()
_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


# --------------------------------------------------------------------------- corpus-derived pieces
@lru_cache(maxsize=4)
def corpus_words(n: int = 400) -> tuple[str, ...]:
    """The ``n`` most frequent lowercase words of 4-8 letters in the corpus (ties broken alphabetically)."""
    counts: Counter[str] = Counter()
    for address in load_addresses():
        counts.update(w for w in re.findall(r"[a-z]+", address.text.lower()) if 4 <= len(w) <= 8)
    ranked = sorted((w for w in counts if w not in _STOP_WORDS), key=lambda w: (-counts[w], w))
    return tuple(ranked[:n])


@lru_cache(maxsize=1)
def year_sentences() -> tuple[tuple[str, int], ...]:
    """Short corpus clauses (4-12 words, cut at ``. ! ? , ; :``) that mention exactly one year
    (1700-2029), with that year; about 700 of them."""
    found: dict[str, int] = {}
    for address in load_addresses():
        for clause in re.split(r"(?<=[.!?,;:])\s+", " ".join(address.text.split())):
            clause = clause.rstrip(",;:")
            years = re.findall(r"\b(1[7-9]\d\d|20[0-2]\d)\b", clause)
            if len(years) == 1 and 4 <= len(clause.split()) <= 12 and clause.isascii():
                found.setdefault(clause, int(years[0]))
    return tuple(sorted(found.items()))


@lru_cache(maxsize=1)
def president_by_year() -> dict[int, str]:
    """Year -> president for every year with exactly one address (years with two are ambiguous)."""
    per_year: dict[int, list[str]] = {}
    for address in load_addresses():
        per_year.setdefault(address.year, []).append(address.president)
    return {year: names[0] for year, names in sorted(per_year.items()) if len(names) == 1}


def number_to_words(n: int) -> str:
    """0-99 in English words, e.g. 42 -> ``forty-two``."""
    check_int(n, "n (number_to_words handles 0-99)", low=0, high=99)
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] if ones == 0 else f"{_TENS[tens]}-{_ONES[ones]}"


def plural(noun: str) -> str:
    """The plural of a regular English noun by rule (+s, +es after s/x/z/ch/sh, consonant+y -> ies)."""
    if not isinstance(noun, str) or not noun.isalpha():
        raise ValueError(f"plural expects one word of letters, got {noun!r}")
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and len(noun) > 1 and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


# --------------------------------------------------------------------------- one generator per family
Record = dict[str, str]


def _record(instruction: str, input_text: str, output: str) -> Record:
    return {"instruction": instruction, "input": input_text, "output": output}


def _words(rng: random.Random, low: int, high: int) -> list[str]:
    return rng.sample(corpus_words(), rng.randint(low, high))


def _first(rng: random.Random) -> Record:
    ws = _words(rng, 3, 5)
    return _record("What is the first word?", " ".join(ws), ws[0])


def _last(rng: random.Random) -> Record:
    ws = _words(rng, 3, 5)
    return _record("What is the last word?", " ".join(ws), ws[-1])


def _reverse(rng: random.Random) -> Record:
    ws = _words(rng, 2, 4)
    return _record("Reverse the order of the words.", " ".join(ws), " ".join(reversed(ws)))


def _count(rng: random.Random) -> Record:
    ws = _words(rng, 2, 7)
    return _record("How many words are there?", " ".join(ws), str(len(ws)))


def _sort(rng: random.Random) -> Record:
    nums = rng.sample(range(1, 100), rng.randint(3, 4))
    return _record("Sort the numbers from smallest to largest.", " ".join(map(str, nums)),
                   " ".join(map(str, sorted(nums))))


def _year(rng: random.Random) -> Record:
    sentence, year = rng.choice(year_sentences())
    return _record("Which year does the text mention?", sentence, str(year))


def _arithmetic(rng: random.Random) -> Record:
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    if rng.random() < 0.5:
        return _record("Compute the result.", f"{a} + {b}", str(a + b))
    a, b = max(a, b), min(a, b)  # keep differences non-negative
    return _record("Compute the result.", f"{a} - {b}", str(a - b))


def _president(rng: random.Random) -> Record:
    year, name = rng.choice(sorted(president_by_year().items()))
    return _record(f"Who gave the State of the Union address in {year}?", "", name)


def _spell(rng: random.Random) -> Record:
    n = rng.randint(0, 99)
    return _record("Write the number in words.", str(n), number_to_words(n))


def _upper(rng: random.Random) -> Record:
    w = rng.choice(corpus_words())
    return _record("Write the word in capital letters.", w, w.upper())


def _plural(rng: random.Random) -> Record:
    noun = rng.choice(_NOUNS)
    return _record("Give the plural of the noun.", noun, plural(noun))


SUPPORTED: dict[str, Callable[[random.Random], Record]] = {
    "first_word": _first, "last_word": _last, "reverse_words": _reverse, "count_words": _count,
    "sort_numbers": _sort, "extract_year": _year, "arithmetic": _arithmetic,
}
KNOWLEDGE: dict[str, Callable[[random.Random], Record]] = {
    "president": _president, "spell_number": _spell, "upper_case": _upper, "plural": _plural,
}
FAMILIES: dict[str, Callable[[random.Random], Record]] = {**SUPPORTED, **KNOWLEDGE}


def family_group(family: str) -> str:
    """``supported`` or ``knowledge`` (see the module's docstring); unknown families raise."""
    if family in SUPPORTED:
        return "supported"
    if family in KNOWLEDGE:
        return "knowledge"
    raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")


def make_instruction_data(n: int = DEFAULT_N, seed: int = DEFAULT_SEED,
                          exclude: Sequence[dict] = ()) -> list[Record]:
    """``n`` records, round-robin over :data:`FAMILIES`, deterministic for a given ``seed``.

    Each family draws from its own ``random.Random`` (seeded from ``seed`` and the family's name), so
    adding a family never changes the others. No question (instruction + input) appears twice, nor
    any question of ``exclude``; a family with few possible questions (plurals, numbers in words)
    stops when it runs out and the others fill the gap, so fewer than ``n`` records come back only
    when every family is exhausted.
    """
    check_int(n, "n", low=1)
    check_int(seed, "seed", low=0)
    seen = {(r["instruction"], r.get("input", "")) for r in exclude}
    rngs = {name: random.Random(f"{seed}-{name}") for name in FAMILIES}
    records: list[Record] = []
    exhausted: set[str] = set()
    while len(records) < n and len(exhausted) < len(FAMILIES):
        for name, make in FAMILIES.items():
            if len(records) >= n or name in exhausted:
                continue
            for _ in range(60):  # a few tries to find a question not asked yet
                record = make(rngs[name])
                key = (record["instruction"], record["input"])
                if key not in seen:
                    seen.add(key)
                    records.append({**record, "family": name})
                    break
            else:
                exhausted.add(name)
    return records


def fresh_records(seen: Sequence[dict], n: int, seed: int = FRESH_SEED) -> list[Record]:
    """``n`` new records from another seed, none asking a question of ``seen``: same tasks, new items."""
    if len(seen) == 0:
        raise ValueError("seen is empty; pass the records the model was trained on")
    return make_instruction_data(n, seed, exclude=seen)


# --------------------------------------------------------------------------- files
def dump_records(records: Sequence[dict]) -> str:
    """The exact JSON text written to disk (indent 1, one key order, trailing newline)."""
    return json.dumps(list(records), indent=1, ensure_ascii=False) + "\n"


def write_instruction_data(path: str | Path | None = None, n: int = DEFAULT_N,
                           seed: int = DEFAULT_SEED) -> Path:
    """Generate the records and write them as Alpaca-style JSON (default ``data/instructions.json``)."""
    target = Path(path) if path is not None else data_dir() / DATA_FILE
    target.write_text(dump_records(make_instruction_data(n, seed)), encoding="utf-8")
    return target


def load_instruction_data(path: str | Path | None = None) -> list[Record]:
    """The course's instruction set (``data/instructions.json``), validated."""
    return load_alpaca_json(path if path is not None else data_dir() / DATA_FILE)


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


def deduplicate_questions(records: Sequence[dict]) -> list[dict]:
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
    question asked twice is kept once (:func:`deduplicate_questions`), so no question is in both splits.
    """
    if not check_number(test_fraction, "test_fraction", low=0.0) < 1.0:
        raise ValueError(f"test_fraction must be a number in [0, 1), got {test_fraction!r}")
    if len(records) == 0:
        raise ValueError("no records to split; load or generate some first")
    records = deduplicate_questions(records)
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
