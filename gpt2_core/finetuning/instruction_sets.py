"""Chapter 7's sets: the training mix, with records that teach a *procedure*, and the sets it is scored on.

A model fine-tuned only on questions about the corpus word list can pass its tests by learning *answers*
("army" is an answer it has written many times) instead of the *procedure* ("copy the first word of the
input"). Two things here tell the two apart and push towards the procedure:

- **procedure records** (:func:`procedure_records`): the word families and ``sort_numbers`` over inputs
  that cannot be memorised: made-up words (syllables put together), random letter strings, and single
  tokens of the course tokenizer (so that nearly every word-like token is some answer's token), and numbers
  from 100 to 999 for sorting. None of them is a held-out word, a new word of the test, or a validation word.
- **new words** (:func:`new_word_records`): the word families over words the corpus word list never
  contains, half made up (another seed) and half everyday English (:data:`ENGLISH_WORDS`, a hand-made list
  of common words, the ones in the corpus word list left out). No training record mentions any of them.
- **validation** (:func:`validation_records`): made-up words of a third seed, to choose the training mix
  on, so that neither the test nor the held-out or new words are ever used to choose anything.

:func:`course_instructions` puts them together, the sets chapters 7 and 8 use:

- ``train``: the generated set's training records, :data:`EXTRA_TRAIN` more, of which a share
  (``procedure_share``, :data:`PROCEDURE_SHARE` by default) are procedure records and the rest questions from
  the training vocabulary, with the small families repeated (:func:`balance_families`);
- ``test``: questions of the training vocabulary that are not trained on (1/8 of each family);
- ``heldout``: questions built only from held-out words, numbers and years;
- ``fresh``: another seed, the whole corpus vocabulary mixed, none of them a question of the generated set;
- ``new``: the word families over new words (:func:`new_word_records`);
- ``validation`` and ``validation_new``: questions of the training vocabulary and of validation words, never
  trained on, to choose the recipe on.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

from ..checks import check_int
from ..pretraining.checkpoint import load_tokenizer
from .instruction_data import (
    SUPPORTED,
    balance_families,
    by_split,
    extra_training_records,
    fresh_records,
    generate_records,
    load_instruction_data,
)
from .instruction_vocab import Vocabulary, vocabulary_split, word_list

WORD_FAMILIES = ("first_word", "last_word", "reverse_words", "count_words")
PROCEDURE_FAMILIES = (*WORD_FAMILIES, "sort_numbers")
KINDS = ("made-up", "letters", "token")  # the three sources of procedure words, in equal shares
NEW_SEED = 31  # the made-up half of the new words
VALIDATION_SEED = 43  # the validation words
PROCEDURE_SEED = 59  # the procedure records
NEW_WORDS_PER_HALF = 300  # made-up new words (and at most as many English ones)
FRESH_PER_FAMILY = 100  # fresh records per supported family
NEW_PER_FAMILY = 100  # new-word records per word family, for each half (made up, English)
VALIDATION_PER_FAMILY = 100  # validation records per family, each of the two validation sets
EXTRA_TRAIN = 20_000  # more training records than the generated set has: many distinct questions
PROCEDURE_SHARE = 0.75  # of EXTRA_TRAIN, procedure records (chosen on validation, chapter 7 section 8)
PROCEDURE_WORDS = 12_000  # distinct procedure words drawn (a third of each kind, fewer tokens if they run out)
BIG_NUMBERS = tuple(range(100, 1000))  # sort_numbers beyond the 0-99 of the corpus questions

# Everyday English words, typed for this course: nouns, verbs and adjectives a learner would try first.
# Those the corpus word list contains are dropped by new_words(), so the list needs no care about the corpus.
ENGLISH_WORDS = tuple(sorted(set("""
    apple banana cherry grape lemon mango melon orange peach pear plum berry carrot potato tomato onion
    garlic pepper cabbage lettuce pumpkin bread butter cheese cookie cake pancake waffle muffin pizza pasta
    noodle soup salad sandwich candy sugar honey jam marmalade yogurt cereal coffee tea juice milk
    giraffe zebra elephant tiger lion monkey rabbit turtle dolphin whale shark penguin parrot owl eagle
    kitten puppy hamster pony donkey goat sheep chicken duck goose frog snake lizard spider butterfly bee
    ant mosquito squirrel raccoon fox wolf bear moose camel kangaroo koala panda octopus jellyfish
    telescope microscope umbrella pillow blanket mattress sofa couch carpet curtain lamp mirror kettle
    toaster blender fridge oven spoon fork knife plate bowl cup mug bottle jar basket bucket ladder
    hammer wrench screwdriver scissors pencil crayon marker eraser notebook envelope stamp backpack wallet
    purse suitcase helmet glove sock sweater jacket scarf boot sandal sneaker slipper hat cap necklace
    ring bracelet earring button zipper velvet cotton wool silk denim leather plastic rubber glitter
    guitar piano violin drum trumpet flute banjo harp ukulele keyboard laptop tablet phone camera robot
    rocket satellite planet comet galaxy asteroid volcano glacier canyon meadow jungle desert island
    beach wave sand pebble shell cloud rainbow thunder lightning snowflake puddle breeze storm tornado
    bicycle scooter skateboard tractor truck taxi subway helicopter balloon kite sailboat canoe kayak
    castle tower cottage cabin tent igloo garage attic basement kitchen bathroom bedroom hallway balcony
    doctor nurse dentist teacher farmer baker chef pilot plumber painter dancer singer actor wizard
    pirate knight dragon unicorn monster ghost zombie vampire giant dwarf elf fairy mermaid princess
    happy sleepy grumpy silly fuzzy fluffy shiny sticky crunchy juicy spicy salty sweet sour bitter
    purple yellow pink turquoise crimson golden silver orange brown gray
    jump skip hop dance sing laugh giggle sneeze yawn whistle knit bake fry boil chop stir sip nibble
    chew swallow hug kiss wink blink juggle paddle surf ski skate climb crawl wiggle tickle
""".split())))

# The course tokenizer as the repository ships it, wherever GPT2_COURSE_DATA points: the sets never change with it.
SHIPPED_MODEL = Path(__file__).resolve().parents[2] / "data" / "course-model"
_CONSONANTS = "b c d f g h j k l m n p r s t v w z br ch cl dr fl gr pl sh sk st th tr".split()
_VOWELS = "a e i o u ai ea oo ou".split()
_CODAS = ["", "", "", "n", "r", "l", "s", "m", "t", "ck", "nd", "st"]
_TOKEN_RE = re.compile(r" [a-z]{2,12}")
_LETTERS_RE = re.compile(r"[a-z]+")


def _made_up_word(rng: random.Random) -> str:
    """A pronounceable made-up word: two or three syllables of consonant + vowel (+ an ending)."""
    syllables = [rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(rng.randint(2, 3))]
    return "".join(syllables) + rng.choice(_CODAS)


def _random_letters(rng: random.Random) -> str:
    """3 to 8 random lowercase letters: unpronounceable, split into short tokens."""
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 8)))


@lru_cache(maxsize=1)
def token_words() -> tuple[str, ...]:
    """Every token of the course tokenizer that is a space and 2-12 lowercase letters, without its space:
    a word that is exactly one token, so copying it is copying that token."""
    tokenizer = load_tokenizer(SHIPPED_MODEL)
    found = (tokenizer.decode([i]) for i in range(tokenizer.n_vocab) if i != tokenizer.eot_token)
    return tuple(sorted({t[1:] for t in found if _TOKEN_RE.fullmatch(t)}))


def _draw(make: Callable[[random.Random], str], rng: random.Random, n: int, banned: set[str]) -> list[str]:
    """``n`` distinct words from ``make(rng)``, none in ``banned`` (which grows with them)."""
    out: list[str] = []
    for _ in range(50 * n):
        if len(out) == n:
            break
        word = make(rng)
        if word not in banned:
            banned.add(word)
            out.append(word)
    return out


@lru_cache(maxsize=1)
def new_words() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(made-up, English): the test's new words, none in the corpus word list; no training record has one."""
    listed = set(word_list())
    english = tuple(w for w in ENGLISH_WORDS if w not in listed)
    made_up = _draw(_made_up_word, random.Random(f"{NEW_SEED}-new"), NEW_WORDS_PER_HALF, listed | set(english))
    return tuple(sorted(made_up)), english


@lru_cache(maxsize=1)
def validation_words() -> tuple[str, ...]:
    """Made-up words of their own seed, to choose the training mix on; never a training or test word."""
    made_up, english = new_words()
    banned = set(word_list()) | set(made_up) | set(english)
    return tuple(sorted(_draw(_made_up_word, random.Random(f"{VALIDATION_SEED}-validation"), NEW_WORDS_PER_HALF,
                              banned)))


def unseen_words() -> frozenset[str]:
    """Words that no training record may contain: held out, new (test) and validation words."""
    made_up, english = new_words()
    return vocabulary_split().heldout_words | frozenset(made_up) | frozenset(english) | frozenset(validation_words())


def mentions_unseen(record: dict) -> bool:
    """Whether a record's question or answer contains an unseen word (as a whole run of letters)."""
    text = f"{record['instruction']} {record.get('input', '')} {record['output']}".lower()
    return not unseen_words().isdisjoint(_LETTERS_RE.findall(text))


@lru_cache(maxsize=1)
def procedure_vocabulary() -> Vocabulary:
    """The procedure records' words (a third made up, a third random letters, a third course-tokenizer tokens,
    :data:`PROCEDURE_WORDS` in all; a token that is also a drawn word is in twice) and numbers
    (:data:`BIG_NUMBERS`); no unseen word among them."""
    rng = random.Random(f"{PROCEDURE_SEED}-words")
    banned = set(unseen_words())
    per_kind = PROCEDURE_WORDS // len(KINDS)
    tokens = [w for w in token_words() if w not in banned]
    words = (_draw(_made_up_word, rng, per_kind, banned) + _draw(_random_letters, rng, per_kind, banned)
             + rng.sample(tokens, min(per_kind, len(tokens))))
    return Vocabulary(words=tuple(words), numbers=BIG_NUMBERS, years=(), sentences=(), nouns=())


def _word_vocabulary(words: Sequence[str]) -> Vocabulary:
    return Vocabulary(words=tuple(words), numbers=(), years=(), sentences=(), nouns=())


def _records(counts: dict[str, int], seed: int, vocab: Vocabulary, split: str, exclude: Sequence[dict] = (),
             **fields: str) -> list[dict]:
    return [{**r, "split": split, **fields} for r in generate_records(counts, seed, vocab, exclude=exclude)]


def procedure_records(n: int, seed: int = PROCEDURE_SEED) -> list[dict]:
    """``n`` training records of :data:`PROCEDURE_FAMILIES` (round-robin) over :func:`procedure_vocabulary`."""
    check_int(n, "n", low=0)
    if n == 0:
        return []
    per_family = -(-n // len(PROCEDURE_FAMILIES))
    made = _records(dict.fromkeys(PROCEDURE_FAMILIES, per_family), seed, procedure_vocabulary(), "train",
                    source="procedure")
    return made[:n]


def new_word_records(n_per_family: int) -> list[dict]:
    """``n_per_family`` records of each word family over made-up new words and as many over English ones
    (``words`` says which), split ``new``."""
    check_int(n_per_family, "n_per_family", low=1)
    made_up, english = new_words()
    counts = dict.fromkeys(WORD_FAMILIES, n_per_family)
    return (_records(counts, NEW_SEED, _word_vocabulary(made_up), "new", words="made-up")
            + _records(counts, NEW_SEED + 1, _word_vocabulary(english), "new", words="English"))


def validation_records(n_per_family: int) -> list[dict]:
    """``n_per_family`` records of each word family over the validation words, split ``validation_new``."""
    check_int(n_per_family, "n_per_family", low=1)
    return _records(dict.fromkeys(WORD_FAMILIES, n_per_family), VALIDATION_SEED, _word_vocabulary(validation_words()),
                    "validation_new")


@lru_cache(maxsize=4)
def _course_sets(procedure_share: float) -> tuple[tuple[str, tuple[dict, ...]], ...]:
    records = load_instruction_data()
    sets = by_split(records)
    fresh = fresh_records(records, FRESH_PER_FAMILY)
    validation = _records(dict.fromkeys(SUPPORTED, VALIDATION_PER_FAMILY), VALIDATION_SEED, vocabulary_split().train,
                          "validation", exclude=records + fresh)
    n_procedure = round(procedure_share * EXTRA_TRAIN)
    corpus = sets["train"] + extra_training_records(records + fresh + validation, EXTRA_TRAIN - n_procedure)
    train = balance_families([r for r in corpus if not mentions_unseen(r)] + procedure_records(n_procedure))
    named = {"train": train, "test": sets["test"], "heldout": sets["heldout"], "fresh": fresh,
             "new": new_word_records(NEW_PER_FAMILY), "validation": validation,
             "validation_new": validation_records(VALIDATION_PER_FAMILY)}
    return tuple((name, tuple(rs)) for name, rs in named.items())


def course_instructions(procedure_share: float = PROCEDURE_SHARE) -> dict[str, list[dict]]:
    """The course's sets (see the module's docstring), built once per process and share (a few seconds);
    each call returns its own copies."""
    if not isinstance(procedure_share, float | int) or not 0 <= procedure_share < 1:
        raise ValueError(f"procedure_share must be a number in [0, 1), got {procedure_share!r}")
    return {name: [dict(r) for r in rs] for name, rs in _course_sets(float(procedure_share))}
