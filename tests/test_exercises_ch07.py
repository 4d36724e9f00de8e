"""Every chapter-7 checker accepts its reference solution and rejects a plausible wrong answer."""

from __future__ import annotations

import random
import re

import pytest

from gpt2_core.exercises import check_exercise
from gpt2_core.exercises.solutions import ch07 as solution
from gpt2_core.finetuning.instruction_prompts import format_alpaca, format_prompt
from gpt2_core.finetuning.instruction_vocab import vocabulary_split


def _first_word_record(rng: random.Random) -> dict:  # answers the first word, not the second
    words = rng.sample(vocabulary_split().train.words, rng.randint(3, 5))
    return {"instruction": "What is the second word?", "input": " ".join(words), "output": words[0]}


def _fixed_length_record(rng: random.Random) -> dict:  # always three words
    words = rng.sample(vocabulary_split().train.words, 3)
    return {"instruction": "What is the second word?", "input": " ".join(words), "output": words[1]}


def _unseeded_record(rng: random.Random) -> dict:  # ignores rng: not deterministic per seed
    return solution.second_word_record(random.Random())


def _leaks(train, held, *, fields=("instruction", "input", "output"), words=lambda t: re.findall(r"[a-z]+", t.lower())):
    """A configurable leak finder, to make the classic slips."""
    return held & {w for r in train for f in fields for w in words(r.get(f, ""))}


# A plausible wrong answer for every checker (tests/test_exercise_solutions.py runs them all)
WRONG = {
    "ch07.own_prompt_format": lambda r: f"{r['instruction']} {r.get('input', '')} Answer:",  # no boundary
    "ch07.leaked_words": lambda train, held: held & {w for r in train for w in r.get("input", "").split()},
    "ch07.second_word": _first_word_record,
    "ch07.lora_count": lambda c, r: r * c.n_layers * 4 * c.emb_dim,
}


@pytest.mark.parametrize("wrong, says", [(_fixed_length_record, "same number of words"),
                                         (_unseeded_record, "same seed"),
                                         (lambda rng: "What is the second word?", "return a dict")])
def test_second_word_checker_catches_more_mistakes(wrong, says, capsys):
    assert not check_exercise("ch07.second_word", wrong)
    assert says in capsys.readouterr().out



@pytest.mark.parametrize("wrong, says", [
    (lambda r: f"{r['instruction']} {r.get('input', '')} Answer:", "mark where the instruction ends"),
    (lambda r: f"{r['instruction']} Input: {r.get('input', '')}".rstrip(), "same cue"),
    (lambda r: f"Q: {r['instruction']} ({r.get('input', '')}) A: ", "ends in whitespace"),
    (lambda r: f"Q: {r['instruction']} A:", "not in your prompt"),
    (lambda r: f"{r['instruction']}<|endoftext|>{r.get('input', '')} A:", "end-of-text"),
    (format_prompt, "compact format"),
    (format_alpaca, "Alpaca"),
    (lambda r: f"{r['instruction']} Input: {r.get('input', '')} {'. ' * 80}Answer:", "context"),
    (lambda r: f"{r['instruction']} Input: {r.get('input', '')} {random.random()} Answer:", "fixed function"),
    (lambda r: None, "str"),
])
def test_own_prompt_format_checker_names_the_mistake(wrong, says, capsys):
    assert not check_exercise("ch07.own_prompt_format", wrong)
    assert says in capsys.readouterr().out


def test_own_prompt_format_reports_the_token_cost(capsys):
    assert check_exercise("ch07.own_prompt_format", lambda r: f"[{r['instruction']}] {r.get('input', '')} =>")
    out = capsys.readouterr().out
    assert "tokens on average" in out and "=>'" in out


@pytest.mark.parametrize("wrong, says", [
    (lambda train, held: _leaks(train, held, fields=("input",)), "answer"),
    (lambda train, held: _leaks(train, held, fields=("input", "output")), "instruction"),
    (lambda train, held: _leaks(train, held, words=lambda t: re.findall(r"[A-Za-z]+", t)), "letter case"),
    (lambda train, held: _leaks(train, held, words=lambda t: t.lower().split()), "punctuation"),
    (lambda train, held: {w for w in held if any(w in str(r).lower() for r in train)}, "whole words"),
    (lambda train, held: {w for r in train for w in r.get("input", "").split()}, "not held-out words"),
    (lambda train, held: len(held), "set of words"),
])
def test_leak_checker_names_the_mistake(wrong, says, capsys):
    assert not check_exercise("ch07.leaked_words", wrong)
    assert says in capsys.readouterr().out


@pytest.mark.parametrize("wrong, says", [
    (_first_word_record, "the first word"),
    (lambda c, r: solution.lora_count(c, r) // c.n_layers, "every block"),
    (lambda c, r: c.n_layers * r * (4 * c.emb_dim + 2 * c.emb_dim), "attention only"),
    (lambda c, r: c.n_layers * 4 * 2 * r * c.emb_dim, "not every layer is d x d"),
    (lambda c, r: c.n_layers * 12 * c.emb_dim**2, "frozen weight"),
])
def test_checkers_say_which_part_is_wrong(wrong, says, capsys):
    name = "ch07.second_word" if wrong is _first_word_record else "ch07.lora_count"
    assert not check_exercise(name, wrong)
    assert says in capsys.readouterr().out
