"""Tests for gpt2_core.finetuning.instruction_sets: procedure records, new words, validation, the course's sets."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from gpt2_core.finetuning.instruction_data import SUPPORTED, check_disjoint, word_list
from gpt2_core.finetuning.instruction_sets import (
    ENGLISH_WORDS,
    EXTRA_TRAIN,
    PROCEDURE_FAMILIES,
    WORD_FAMILIES,
    course_instructions,
    mentions_unseen,
    new_word_records,
    new_words,
    procedure_records,
    procedure_vocabulary,
    token_words,
    unseen_words,
    validation_records,
    validation_words,
)
from gpt2_core.finetuning.instruction_vocab import vocabulary_split
from gpt2_core.pretraining.recipes import course_tokenizer


def test_new_words_are_outside_the_word_list_and_apart_from_validation():
    made_up, english = new_words()
    listed = set(word_list())
    assert len(made_up) == 300 and len(english) > 200
    assert not (set(made_up) | set(english)) & listed
    assert set(english) <= set(ENGLISH_WORDS) and "telescope" in english
    assert not set(validation_words()) & (set(made_up) | set(english) | listed)


def test_token_words_are_single_tokens_of_the_course_tokenizer():
    enc = course_tokenizer()
    words = token_words()
    assert len(words) > 4000
    assert all(len(enc.encode_ordinary(" " + w)) == 1 for w in words[::50])


def test_procedure_vocabulary_mixes_three_kinds_and_no_unseen_word():
    vocab = procedure_vocabulary()
    assert len(vocab.words) == 12_000 and len(set(vocab.words)) > 11_900  # a token may also be a drawn word
    assert unseen_words().isdisjoint(vocab.words)
    tokens = set(token_words())
    assert 3000 < sum(w in tokens for w in vocab.words) < 6000  # the token third, plus made-up words that are tokens
    assert min(vocab.numbers) == 100 and max(vocab.numbers) == 999


def test_procedure_records_teach_the_word_families_and_sorting():
    made = procedure_records(500)
    assert len(made) == 500 and {r["source"] for r in made} == {"procedure"}
    assert Counter(r["family"] for r in made) == dict.fromkeys(PROCEDURE_FAMILIES, 100)
    assert not any(mentions_unseen(r) for r in made) and check_disjoint(made) == []
    first = next(r for r in made if r["family"] == "first_word")
    assert first["output"] == first["input"].split()[0]
    assert procedure_records(0) == [] and procedure_records(20) == procedure_records(20)


def test_new_and_validation_records_use_only_their_words():
    made_up, english = new_words()
    new = new_word_records(10)
    assert Counter(r["words"] for r in new) == {"made-up": 40, "English": 40}
    for r in new:
        pool = set(made_up) if r["words"] == "made-up" else set(english)
        assert set(r["input"].split()) <= pool and r["family"] in WORD_FAMILIES and r["split"] == "new"
    val = validation_records(5)
    assert all(set(r["input"].split()) <= set(validation_words()) for r in val)


def test_no_training_record_mentions_an_unseen_word():
    sets = course_instructions()
    train = sets["train"]
    assert check_disjoint(train) == []
    letters = (set(re.findall(r"[a-z]+", f"{r['instruction']} {r['input']} {r['output']}".lower())) for r in train)
    assert all(unseen_words().isdisjoint(ws) for ws in letters)
    assert vocabulary_split().heldout_words <= unseen_words()
    # extract_year has no question left that is not asked already: validation has every other supported family
    assert {r["family"] for r in sets["validation"]} == set(SUPPORTED) - {"extract_year"}


def test_procedure_share_sets_how_many_procedure_records_train():
    half = course_instructions(0.5)["train"]
    none = course_instructions(0.0)["train"]
    assert sum(r.get("source") == "procedure" for r in half) == EXTRA_TRAIN // 2
    assert not any(r.get("source") == "procedure" for r in none)
    assert course_instructions(0.0)["test"] == course_instructions(0.5)["test"]


@pytest.mark.parametrize("share", [-0.1, 1.0, "half", None])
def test_procedure_share_errors(share):
    with pytest.raises(ValueError, match="procedure_share must be a number in"):
        course_instructions(share)


def test_record_count_errors():
    with pytest.raises(ValueError, match="n must be >= 0"):
        procedure_records(-1)
    with pytest.raises(ValueError, match="n_per_family must be >= 1"):
        new_word_records(0)
    with pytest.raises(TypeError, match="n_per_family must be an int"):
        validation_records(2.5)
