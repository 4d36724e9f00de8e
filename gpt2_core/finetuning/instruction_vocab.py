"""The words, numbers and years chapter 7's questions are built from, split so that some are never trained on.

A test question made of words the model was fine-tuned on tells whether it learned the *combination*; it
cannot tell whether it learned the *procedure* ("answer the first word") or only the words. So a part of
the vocabulary is **held out**: no training record mentions it anywhere, and a held-out question is built
from it alone. A model that answers those has learned to copy, not to recall.

- The **word list** (:func:`word_list`): :data:`WORD_LIST_SIZE` corpus words of 3-12 letters, a seeded
  sample of the :data:`CANDIDATE_POOL` most frequent ones, plus the plural family's nouns. Sampling that
  deep gives rare words, and about half of them are several tokens long for the course tokenizer (its
  8,192 tokens hold nearly every frequent word whole: the 2,000 most frequent are 96% one token).
- The **split** (:func:`vocabulary_split`): a seeded :data:`HELD_OUT_FRACTION` of the words, of the numbers
  0-99 (the same share of every decade, so every range of numbers keeps held-out ones) and of the years.
  Words that every record of some family shows (the instructions' own words, number words, presidents'
  names) cannot be kept out of training, so they are never held out. A count or a sum may *equal* a
  held-out number: it is computed, and a model never shown "7" as an answer could not count to seven.
- :func:`check_disjoint` proves the rule on any list of records.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from ..checks import check_int, check_number
from ..text.corpus import load_addresses

WORD_LIST_SIZE = 2400  # words in the list (the plural family's nouns included)
CANDIDATE_POOL = 8000  # the list samples this many most frequent corpus words: rare ones too
HELD_OUT_FRACTION = 0.2  # of the words, numbers and years, never in a training record
VOCAB_SEED = 11  # seeds the word list and the split

# The instruction of every family: its words are in every record of the family, so never held out.
INSTRUCTIONS = {
    "first_word": "What is the first word?",
    "last_word": "What is the last word?",
    "reverse_words": "Reverse the order of the words.",
    "count_words": "How many words are there?",
    "sort_numbers": "Sort the numbers from smallest to largest.",
    "extract_year": "Which year does the text mention?",
    "arithmetic": "Compute the result.",
    "president": "Who gave the State of the Union address in {year}?",
    "spell_number": "Write the number in words.",
    "upper_case": "Write the word in capital letters.",
    "plural": "Give the plural of the noun.",
}
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
_WORD_RE = re.compile(r"[a-z]+")
_NUMBER_RE = re.compile(r"(?<![\w$.,])\d+(?![\w,]|\.\d)")  # a number on its own, not a part of "$1,000" or "3.5"


def _letters(text: str) -> list[str]:
    return _WORD_RE.findall(text.lower())


def _numbers(text: str) -> list[int]:
    return [int(x) for x in _NUMBER_RE.findall(text)]


# --------------------------------------------------------------------------- pieces of the corpus
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
def _president_by_year() -> tuple[tuple[int, str], ...]:
    per_year: dict[int, list[str]] = {}
    for address in load_addresses():
        per_year.setdefault(address.year, []).append(address.president)
    return tuple((year, names[0]) for year, names in sorted(per_year.items()) if len(names) == 1)


def president_by_year() -> dict[int, str]:
    """Year -> president for every year with exactly one address (years with two are ambiguous)."""
    return dict(_president_by_year())


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


# --------------------------------------------------------------------------- the word list and its split
@lru_cache(maxsize=1)
def word_list() -> tuple[str, ...]:
    """:data:`WORD_LIST_SIZE` words, sorted: the plural family's nouns and a seeded sample of the
    :data:`CANDIDATE_POOL` most frequent lowercase ASCII corpus words of 3-12 letters (ties broken
    alphabetically; stop words and the nouns' plurals, which are the plural family's answers, left out)."""
    counts: Counter[str] = Counter()
    for address in load_addresses():
        counts.update(w for w in _WORD_RE.findall(address.text.lower()) if 3 <= len(w) <= 12)
    nouns = sorted(set(_NOUNS))
    left_out = _STOP_WORDS | {plural(noun) for noun in nouns}
    ranked = sorted((w for w in counts if w.isascii() and w not in left_out), key=lambda w: (-counts[w], w))
    pool = [w for w in ranked[:CANDIDATE_POOL] if w not in nouns]
    sampled = random.Random(f"{VOCAB_SEED}-words").sample(pool, WORD_LIST_SIZE - len(nouns))
    return tuple(sorted(nouns + sampled))


@lru_cache(maxsize=1)
def _never_held_out() -> frozenset[str]:
    """Words every record of some family shows, so they cannot be kept out of training."""
    fixed = {"input", "answer", *_ONES, *_TENS[2:]}
    for text in INSTRUCTIONS.values():
        fixed.update(_letters(text))
    for name in president_by_year().values():
        fixed.update(_letters(name))
    return frozenset(fixed)


@dataclass(frozen=True)
class Vocabulary:
    """What one side of the split may use: words, numbers 0-99, years, corpus sentences, nouns."""

    words: tuple[str, ...]
    numbers: tuple[int, ...]
    years: tuple[int, ...]
    sentences: tuple[tuple[str, int], ...]  # (clause, its year) for extract_year
    nouns: tuple[str, ...]

    def operands(self) -> tuple[int, ...]:
        """The arithmetic family's operands (0-20) on this side."""
        return tuple(n for n in self.numbers if n <= 20)


@dataclass(frozen=True)
class VocabularySplit:
    """The training side and the held-out side of the vocabulary, and what is held out."""

    train: Vocabulary
    heldout: Vocabulary
    heldout_words: frozenset[str]
    heldout_numbers: frozenset[int]
    heldout_years: frozenset[int]

    def full(self) -> Vocabulary:
        """Both sides together (fresh records mix them)."""
        t, h = self.train, self.heldout
        return Vocabulary(tuple(sorted(t.words + h.words)), tuple(sorted(t.numbers + h.numbers)),
                          tuple(sorted(t.years + h.years)), tuple(sorted(t.sentences + h.sentences)),
                          tuple(sorted(t.nouns + h.nouns)))


@lru_cache(maxsize=4)
def vocabulary_split(fraction: float = HELD_OUT_FRACTION, seed: int = VOCAB_SEED) -> VocabularySplit:
    """Hold out a seeded ``fraction`` of the words that can be, of the numbers 0-99 (the same share of every
    decade) and of the years. A sentence goes to the side of its year; a training sentence may not contain
    a held-out word or number (the few that do are used nowhere)."""
    check_number(fraction, "fraction", low=0.1, high=0.9)  # below 0.1 a decade would keep no held-out number
    check_int(seed, "seed", low=0)
    rng = random.Random(f"{seed}-split")
    words, never = word_list(), _never_held_out()
    candidates = [w for w in words if w not in never]
    out_words = frozenset(rng.sample(candidates, round(fraction * len(candidates))))
    out_numbers: set[int] = set()
    for decade in range(0, 100, 10):
        out_numbers.update(rng.sample(range(decade, decade + 10), round(fraction * 10)))
    years = sorted({y for _, y in year_sentences()} | set(president_by_year()))
    out_years = frozenset(rng.sample(years, round(fraction * len(years))))
    sentences = {
        "train": tuple((s, y) for s, y in year_sentences() if y not in out_years
                       and not out_words.intersection(_letters(s)) and not out_numbers.intersection(_numbers(s))),
        "heldout": tuple((s, y) for s, y in year_sentences() if y in out_years),
    }
    side = {}
    for name in ("train", "heldout"):
        out = name == "heldout"
        side[name] = Vocabulary(
            words=tuple(w for w in words if (w in out_words) == out),
            numbers=tuple(n for n in range(100) if (n in out_numbers) == out),
            years=tuple(y for y in years if (y in out_years) == out),
            sentences=sentences[name],
            nouns=tuple(n for n in sorted(set(_NOUNS)) if (n in out_words) == out),
        )
    return VocabularySplit(side["train"], side["heldout"], out_words, frozenset(out_numbers), out_years)


def check_disjoint(records: Sequence[dict]) -> list[int]:
    """Indices of the ``train`` records (``split`` field) that mention a held-out word, number or year: none,
    if the split holds. Words are looked for everywhere (instruction, input, output, any letter case);
    numbers in the question, and in the answer where it is copied from the question (a count or a sum is
    computed, so it may equal a held-out number)."""
    split = vocabulary_split()
    bad = []
    for i, r in enumerate(records):
        if r.get("split") != "train":
            continue
        question = f"{r['instruction']} {r.get('input', '')}"
        numbers = _numbers(question)
        if r.get("family") not in ("count_words", "arithmetic"):
            numbers += _numbers(r["output"])
        if (split.heldout_words.intersection(_letters(f"{question} {r['output']}"))
                or any(x in split.heldout_numbers for x in numbers if x < 100)
                or any(x in split.heldout_years for x in numbers if x >= 1000)):
            bad.append(i)
    return bad
