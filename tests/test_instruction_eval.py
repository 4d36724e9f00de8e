"""Tests for gpt2_core.instruction_eval: batched greedy answers, exact match, compliance, baselines."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import CharTokenizer, tiny_char_model

from gpt2_core.finetuning.instruction_eval import (
    Answer,
    answer_question,
    generate_answers,
    is_correct,
    majority_answers,
    normalise_answer,
    score_answers,
    summarise,
)
from gpt2_core.finetuning.instruction_prompts import format_prompt
from gpt2_core.model.generation import generate

RECS = [
    {"instruction": "What is the first word?", "input": "a b c", "output": "a", "family": "first_word"},
    {"instruction": "What is the first word?", "input": "dd ee", "output": "dd", "family": "first_word"},
    {"instruction": "Give the plural of the noun.", "input": "tax", "output": "taxes", "family": "plural"},
    {"instruction": "How many words are there?", "input": "x y", "output": "2", "family": "count_words"},
]


def test_batched_answers_equal_one_by_one():
    model, tok = tiny_char_model(), CharTokenizer()
    batched = generate_answers(model, tok, RECS, max_new_tokens=5, batch_size=3)
    for record, got in zip(RECS, batched, strict=True):
        ids = torch.tensor([tok.encode(format_prompt(record))])
        new = generate(model, ids, 5, eos_id=tok.eot_token)[0, ids.shape[1]:].tolist()
        stopped = tok.eot_token in new
        text = tok.decode(new[:new.index(tok.eot_token)] if stopped else new).strip()
        assert got == Answer(text, stopped)


def test_answers_stop_at_the_tokenizers_eot():
    tok = CharTokenizer()
    model = tiny_char_model()
    with torch.no_grad():  # make end-of-text the only likely token: every answer is empty and stopped
        model.out_head.weight.zero_()
        model.out_head.weight[tok.eot_token] = 1.0
        model.final_norm.bias.fill_(1.0)
    answers = generate_answers(model, tok, RECS[:2], max_new_tokens=4)
    assert answers == [Answer("", True)] * 2 and not answers[0].well_formed


def test_generate_answers_errors():
    model, tok = tiny_char_model(context_length=40), CharTokenizer()
    with pytest.raises(ValueError, match="no records"):
        generate_answers(model, tok, [])
    with pytest.raises(ValueError, match="batch_size"):
        generate_answers(model, tok, RECS, batch_size=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate_answers(model, tok, RECS, max_new_tokens=0)
    with pytest.raises(ValueError, match="no room"):
        generate_answers(model, tok, RECS, max_new_tokens=10)
    with pytest.raises(TypeError, match="tiktoken's interface"):
        generate_answers(model, object(), RECS)


def test_normalise_and_is_correct():
    assert normalise_answer("  forty-two. ") == "forty-two"
    assert normalise_answer("a\n b") == "a b"
    assert is_correct(" law.", "law") and not is_correct("LAW", "law")
    with pytest.raises(TypeError, match="str"):
        normalise_answer(None)


def test_score_and_summarise():
    answers = [Answer("a", True), Answer("wrong", True), Answer("taxes", False), "2"]
    table = score_answers(RECS, answers)
    assert list(table.index) == ["first_word", "count_words", "plural"]  # the order of FAMILIES
    assert table.loc["first_word", "n"] == 2 and table.loc["first_word", "exact_match"] == 0.5
    assert table.loc["plural", "exact_match"] == 1.0 and table.loc["plural", "format_ok"] == 0.0
    assert table.loc["plural", "group"] == "knowledge"
    s = summarise(table)
    assert math.isclose(s["supported"], (0.5 + 1.0) / 2)  # each family weighs the same
    assert s["knowledge"] == 1.0
    assert math.isclose(s["overall"], 3 / 4) and math.isclose(s["format_compliance"], 3 / 4)


def test_score_errors():
    with pytest.raises(ValueError, match="no records"):
        score_answers([], [])
    with pytest.raises(ValueError, match="one per record"):
        score_answers(RECS, ["a"])
    with pytest.raises(ValueError, match="unknown family"):
        score_answers([{**RECS[0], "family": "poetry"}], ["a"])
    with pytest.raises(ValueError, match="empty"):
        summarise(score_answers(RECS, ["a"] * 4).iloc[:0])


def test_majority_answers():
    train = [{"output": "x", "family": "f"}, {"output": "y", "family": "f"}, {"output": "y", "family": "f"},
             {"output": "z", "family": "g"}]
    test = [{"output": "?", "family": "g"}, {"output": "?", "family": "f"}, {"output": "?", "family": "h"}]
    assert majority_answers(train, test) == ["z", "y", ""]
    with pytest.raises(ValueError, match="no training records"):
        majority_answers([], test)


def test_answer_question_equals_the_batched_answer_and_collapses_whitespace():
    model, tok = tiny_char_model(), CharTokenizer()
    got = answer_question(model, tok, "  What is the first word? ", "a   b c", max_new_tokens=5)
    assert got == generate_answers(model, tok, [RECS[0]], max_new_tokens=5)[0]


@pytest.mark.parametrize("instruction, input_text, max_new, error, match", [
    ("", "a b", 4, ValueError, "the instruction is empty"),
    ("   ", "", 4, ValueError, "the instruction is empty"),
    ("What is the first word?", "a " * 60, 4, ValueError, "shorten it by"),
    ("What?", "a", 0, ValueError, "max_new_tokens must be >= 1"),
    (None, "a", 4, TypeError, "instruction must be a str"),
    ("What?", 3, 4, TypeError, "input_text must be a str"),
])
def test_answer_question_errors(instruction, input_text, max_new, error, match):
    model, tok = tiny_char_model(context_length=64), CharTokenizer()
    with pytest.raises(error, match=match):
        answer_question(model, tok, instruction, input_text, max_new)
