"""Reference solutions of chapter 7's exercises (each is tested to pass its checker)."""

from __future__ import annotations

import random
import re

from ...finetuning.instruction_vocab import vocabulary_split
from ...finetuning.lora import lora_parameter_count
from ...model.config import GPTConfig


def own_prompt_format(record: dict) -> str:
    """One possible format of one's own: the input on a line of its own after ``Input:`` (so where the
    instruction ends is marked), and the same cue, ``Answer:`` on a new line, before every answer."""
    text = f"Task: {record['instruction']}"
    if record.get("input"):
        text += f"\nInput: {record['input']}"
    return text + "\nAnswer:"


def leaked_words(train_records: list[dict], held_out: set[str]) -> set[str]:
    """Held-out words that a training record shows the model anywhere: instruction, input or output,
    compared as lower-case runs of letters (so punctuation and capitals do not hide a leak)."""
    seen = set()
    for record in train_records:
        for field in ("instruction", "input", "output"):
            seen.update(re.findall(r"[a-z]+", record.get(field, "").lower()))
    return held_out & seen


def second_word_record(rng: random.Random) -> dict:
    """A new family: 3-5 words of the training vocabulary (no held-out word leaks), answer the second one."""
    words = rng.sample(vocabulary_split().train.words, rng.randint(3, 5))
    return {"instruction": "What is the second word?", "input": " ".join(words), "output": words[1],
            "family": "second_word"}


def lora_count(cfg: GPTConfig, rank: int) -> int:
    """LoRA parameters for qkv (d->3d), out_proj (d->d), fc (d->4d) and proj (4d->d) of every block."""
    d = cfg.emb_dim
    shapes = ((d, 3 * d), (d, d), (d, 4 * d), (4 * d, d))
    return cfg.n_layers * sum(lora_parameter_count(i, o, rank) for i, o in shapes)


SOLUTIONS = {
    "ch07.own_prompt_format": own_prompt_format,
    "ch07.leaked_words": leaked_words,
    "ch07.second_word": second_word_record,
    "ch07.lora_count": lora_count,
}
