"""Checkers for chapter 7 (instruction tuning and LoRA); reference solutions in ``solutions/ch07.py``.

- ``ch07.format_prompt``: ``format_prompt(record) -> str``, the compact prompt
  ``"<instruction> Input: <input> Answer:"`` (`` Input:`` only when the input is non-empty)
- ``ch07.mask_targets``: ``mask_targets(ids, prompt_len, eot_id) -> list[int]``, the targets of one
  example (``ids + [eot_id]`` shifted by one) with every target inside the prompt set to -100
- ``ch07.second_word``: ``second_word_record(rng) -> dict``, the generator of a new task family
  ("What is the second word?"), deterministic for a given ``random.Random``
- ``ch07.lora_count``: ``lora_count(cfg, rank) -> int``, the trainable parameters that
  ``inject_lora(GPTModel(cfg), rank, alpha)`` leaves (qkv, out_proj, fc and proj of every block)
"""

from __future__ import annotations

import random
from collections.abc import Callable

from ..finetuning.instruction_data import FORBIDDEN_TEXT
from ..finetuning.instruction_prompts import format_prompt
from ..model.config import GPTConfig
from . import ExerciseFailed, exercise, expect_equal
from .solutions import ch07 as solution

_RECORDS = [
    {"instruction": "What is the first word?", "input": "nation army law", "output": "nation"},
    {"instruction": "Who gave the State of the Union address in 1862?", "input": "", "output": "Abraham Lincoln"},
    {"instruction": "Sort the numbers from smallest to largest.", "input": "3 1 2"},
    {"instruction": "Name a colour."},  # no input field at all
]


@exercise("ch07.format_prompt")
def check_format_prompt(candidate: Callable) -> None:
    for record in _RECORDS:
        expect_equal(candidate(dict(record)), format_prompt(record), f"record={record}")


@exercise("ch07.mask_targets")
def check_mask_targets(candidate: Callable) -> None:
    cases = [([5, 6, 7, 8, 9], 3, 0), ([5, 6], 1, 99), ([1, 2, 3, 4], 4, 7), ([10, 11, 12], 0, 3)]
    for ids, prompt_len, eot in cases:
        got = candidate(list(ids), prompt_len, eot)
        expect_equal(list(got), solution.mask_targets(ids, prompt_len, eot),
                     f"ids={ids}, prompt_len={prompt_len}, eot_id={eot}")


@exercise("ch07.second_word")
def check_second_word(candidate: Callable) -> None:
    records = [candidate(random.Random(seed)) for seed in range(30)]
    for seed, record in enumerate(records):
        if not isinstance(record, dict):
            raise ExerciseFailed(f"return a dict, got {type(record).__name__}")
        for field in ("instruction", "input", "output"):
            if not isinstance(record.get(field), str) or not record[field].strip():
                raise ExerciseFailed(f"record {record} needs a non-empty string {field!r}")
            if FORBIDDEN_TEXT in record[field]:
                raise ExerciseFailed(f"{field!r} contains {FORBIDDEN_TEXT!r}, the tokenizer's end-of-text text")
        words = record["input"].split()
        if len(words) < 2:
            raise ExerciseFailed(f"the input {record['input']!r} has fewer than two words: there is no second one")
        expect_equal(record["output"], words[1], f"the input {record['input']!r}")
        expect_equal(candidate(random.Random(seed)), record, f"the same seed ({seed}) twice (be deterministic)")
    if len({r["input"] for r in records}) < 20:
        raise ExerciseFailed("30 seeds gave fewer than 20 different inputs; draw the words with rng")
    if len({len(r["input"].split()) for r in records}) < 2:
        raise ExerciseFailed("every input has the same number of words; vary it, so the answer's position "
                             "from the end changes and the model must count from the front")


@exercise("ch07.lora_count")
def check_lora_count(candidate: Callable) -> None:
    for cfg, rank in [(GPTConfig.preset("tiny"), 1), (GPTConfig.preset("default"), 8),
                      (GPTConfig.preset("gpt2"), 16)]:
        got = candidate(cfg, rank)
        if isinstance(got, bool) or not isinstance(got, int):
            raise ExerciseFailed(f"return an int, got {type(got).__name__}")
        expect_equal(got, solution.lora_count(cfg, rank), f"{cfg.n_layers} layers of width {cfg.emb_dim}, rank={rank}")
