"""Reference solutions of chapter 7's exercises (each is tested to pass its checker)."""

from __future__ import annotations

import random

from ...finetuning.instruction_data import corpus_words
from ...finetuning.lora import lora_parameter_count
from ...model.config import GPTConfig


def format_prompt(record: dict) -> str:
    """The compact prompt: ``"<instruction> Input: <input> Answer:"``, `` Input:`` only with an input."""
    text = record["instruction"]
    if record.get("input"):
        text += " Input: " + record["input"]
    return text + " Answer:"


def mask_targets(ids: list[int], prompt_len: int, eot_id: int) -> list[int]:
    """Targets of one example: ``ids + [eot]`` shifted left by one, the prompt's own tokens set to -100."""
    targets = ids[1:] + [eot_id]
    keep_from = max(prompt_len - 1, 0)  # targets[j] predicts token j + 1; the first answer token is ids[prompt_len]
    return [-100] * keep_from + targets[keep_from:]


def second_word_record(rng: random.Random) -> dict:
    """A new family: 3-5 corpus words, answer the second one."""
    words = rng.sample(corpus_words(), rng.randint(3, 5))
    return {"instruction": "What is the second word?", "input": " ".join(words), "output": words[1],
            "family": "second_word"}


def lora_count(cfg: GPTConfig, rank: int) -> int:
    """LoRA parameters for qkv (d->3d), out_proj (d->d), fc (d->4d) and proj (4d->d) of every block."""
    d = cfg.emb_dim
    shapes = ((d, 3 * d), (d, d), (d, 4 * d), (4 * d, d))
    return cfg.n_layers * sum(lora_parameter_count(i, o, rank) for i, o in shapes)


SOLUTIONS = {
    "ch07.format_prompt": format_prompt,
    "ch07.mask_targets": mask_targets,
    "ch07.second_word": second_word_record,
    "ch07.lora_count": lora_count,
}
