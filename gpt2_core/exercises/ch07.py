"""Checkers for chapter 7 (instruction tuning and LoRA).

- ``ch07.format_prompt``: ``format_prompt(record) -> str``, the Alpaca prompt (``### Input:`` only when
  the record has a non-empty input), ending with ``### Response:`` and a newline
- ``ch07.mask_padding``: ``mask_padding(targets: list[int], pad_id=50256, ignore_index=-100) -> list[int]``,
  keep the first ``pad_id`` (the end-of-text the model must learn to emit) and replace every later one
- ``ch07.lora_count``: ``lora_count(cfg: GPTConfig, rank: int) -> int``, the trainable parameters that
  ``inject_lora(GPTModel(cfg), rank, alpha)`` leaves (qkv, out_proj, fc and proj of every block)
"""

from __future__ import annotations

from collections.abc import Callable

from ..bpe_ranks import ENDOFTEXT_ID
from ..config import GPTConfig
from ..instructions import format_prompt
from ..lora import lora_parameter_count
from . import ExerciseFailed, exercise, expect_equal

_RECORDS = [
    {"instruction": "Convert the word to upper case.", "input": "nation", "output": "NATION"},
    {"instruction": "Who gave the State of the Union address in 1862?", "input": "",
     "output": "Abraham Lincoln"},
    {"instruction": "Sort the numbers.", "input": "3 1 2"},
    {"instruction": "Name a colour."},  # no input field at all
]


@exercise("ch07.format_prompt")
def check_format_prompt(candidate: Callable) -> None:
    for record in _RECORDS:
        expect_equal(candidate(dict(record)), format_prompt(record), f"record={record}")


def mask_padding(targets: list[int], pad_id: int = ENDOFTEXT_ID, ignore_index: int = -100) -> list[int]:
    """Reference: every ``pad_id`` after the first one becomes ``ignore_index``."""
    out, seen = [], False
    for t in targets:
        out.append(ignore_index if t == pad_id and seen else t)
        seen = seen or t == pad_id
    return out


@exercise("ch07.mask_padding")
def check_mask_padding(candidate: Callable) -> None:
    e = ENDOFTEXT_ID
    cases = [[1, 2, 3], [1, e], [1, e, e, e], [e, e], [5, 6, e, e, e, e, e], []]
    for row in cases:
        expect_equal(list(candidate(list(row))), mask_padding(row), f"targets={row}")
    expect_equal(list(candidate([4, 0, 0, 0], pad_id=0, ignore_index=-1)), [4, 0, -1, -1],
                 "targets=[4, 0, 0, 0] with pad_id=0, ignore_index=-1")


def lora_count(cfg: GPTConfig, rank: int) -> int:
    """Reference: LoRA parameters for qkv (d->3d), out_proj (d->d), fc (d->4d), proj (4d->d) per block."""
    d = cfg.emb_dim
    per_block = sum(lora_parameter_count(i, o, rank) for i, o in ((d, 3 * d), (d, d), (d, 4 * d), (4 * d, d)))
    return cfg.n_layers * per_block


@exercise("ch07.lora_count")
def check_lora_count(candidate: Callable) -> None:
    for cfg, rank in [(GPTConfig.preset("tiny"), 1), (GPTConfig.preset("default"), 8),
                      (GPTConfig.preset("gpt2"), 16)]:
        got = candidate(cfg, rank)
        if isinstance(got, bool) or not isinstance(got, int):
            raise ExerciseFailed(f"return an int, got {type(got).__name__}")
        expect_equal(got, lora_count(cfg, rank), f"{cfg.n_layers} layers of width {cfg.emb_dim}, rank={rank}")
