"""Chapter 7's instruction-tuning pieces in one import (a thin front for three small modules).

- :mod:`gpt2_core.instruction_data`     generating, saving, loading and splitting checkable records
- :mod:`gpt2_core.instruction_prompts`  the prompt formats, the encoded dataset, masked batches, the loss
- :mod:`gpt2_core.instruction_eval`     batched greedy answers, exact match, format compliance, baselines
"""

from __future__ import annotations

from .instruction_data import (
    FAMILIES,
    KNOWLEDGE,
    SUPPORTED,
    dump_records,
    family_group,
    fresh_records,
    load_alpaca_json,
    load_instruction_data,
    make_instruction_data,
    split_records,
    write_instruction_data,
)
from .instruction_eval import (
    Answer,
    generate_answers,
    is_correct,
    majority_answers,
    normalise_answer,
    score_answers,
    summarise,
)
from .instruction_prompts import (
    InstructionDataset,
    answer_text,
    format_alpaca,
    format_prompt,
    instruction_collate,
    instruction_loader,
    instruction_loss,
)

__all__ = [
    "FAMILIES", "KNOWLEDGE", "SUPPORTED", "Answer", "InstructionDataset", "answer_text", "dump_records",
    "family_group", "format_alpaca", "format_prompt", "fresh_records", "generate_answers", "instruction_collate",
    "instruction_loader", "instruction_loss", "is_correct", "load_alpaca_json", "load_instruction_data",
    "majority_answers", "make_instruction_data", "normalise_answer", "score_answers", "split_records",
    "summarise", "write_instruction_data",
]
