"""Every chapter-7 checker accepts its reference solution and rejects a plausible wrong answer."""

from __future__ import annotations

import random

import pytest

from gpt2_core.exercises import check_exercise
from gpt2_core.exercises.solutions import ch07 as solution
from gpt2_core.finetuning.instruction_data import corpus_words


def _first_word_record(rng: random.Random) -> dict:  # answers the first word, not the second
    words = rng.sample(corpus_words(), rng.randint(3, 5))
    return {"instruction": "What is the second word?", "input": " ".join(words), "output": words[0]}


def _fixed_length_record(rng: random.Random) -> dict:  # always three words
    words = rng.sample(corpus_words(), 3)
    return {"instruction": "What is the second word?", "input": " ".join(words), "output": words[1]}


def _unseeded_record(rng: random.Random) -> dict:  # ignores rng: not deterministic per seed
    return solution.second_word_record(random.Random())


# A plausible wrong answer for every checker (tests/test_exercise_solutions.py runs them all)
WRONG = {
    "ch07.format_prompt": lambda r: f"{r['instruction']} Input: {r.get('input', '')} Answer:",
    "ch07.mask_targets": lambda ids, p, eot: [-100] * p + (ids[1:] + [eot])[p:],  # masks one too many
    "ch07.second_word": _first_word_record,
    "ch07.lora_count": lambda c, r: r * c.n_layers * 4 * c.emb_dim,
}


@pytest.mark.parametrize("wrong", [_fixed_length_record, _unseeded_record,
                                   lambda rng: "What is the second word?"])
def test_second_word_checker_catches_more_mistakes(wrong):
    assert not check_exercise("ch07.second_word", wrong)

