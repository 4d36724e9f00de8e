"""Scoring instruction following: batched greedy answers, exact match, format compliance, baselines.

- :func:`sample_answers` answers many records, ``k`` answers each, greedy or sampled, with the KV cache
  (:func:`gpt2_core.model.generation.generate`). Prompts of equal token length go in one batch, so no
  row needs padding (padding would shift positions and change the answers); each answer stops at the
  tokenizer's end-of-text. :func:`generate_answers` is its greedy single answer, and
  :func:`answer_question` answers one question a person typed, after checking it.
- An answer is **correct** when it equals the expected output after :func:`normalise_answer`
  (whitespace collapsed, a trailing period dropped); it is **well-formed** (format compliance) when
  it is non-empty and the model ended it with end-of-text.
- :func:`score_answers` gives both per family; :func:`summarise` averages them per group (the
  families the text supports, and those needing knowledge; see :mod:`gpt2_core.instruction_data`).
- :func:`majority_answers` is the baseline every number is compared with: the most common training
  answer of each family, given to every test question of that family.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..checks import check_int, check_tokenizer
from ..model.generation import generate
from .instruction_data import FAMILIES, family_group
from .instruction_prompts import format_prompt


@dataclass(frozen=True)
class Answer:
    """One generated answer: its text (stripped) and whether the model ended it with end-of-text; and its
    token ids, the prompt's and the answer's (end-of-text included when the model stopped), which
    chapter 8 scores and trains on."""

    text: str
    stopped: bool
    prompt_ids: tuple[int, ...] = field(default=(), compare=False)
    answer_ids: tuple[int, ...] = field(default=(), compare=False)

    @property
    def well_formed(self) -> bool:
        return self.stopped and bool(self.text)


def sample_answers(model: Any, tokenizer: Any, records: Sequence[dict], k: int = 1, temperature: float = 0.0,
                   max_new_tokens: int = 12, top_k: int | None = None, generator: torch.Generator | None = None,
                   batch_size: int = 64, prompt_format: Callable[[dict], str] = format_prompt,
                   progress: bool = False) -> list[list[Answer]]:
    """``k`` answers to each record (``result[i]`` holds record ``i``'s), sampled at ``temperature`` (0:
    greedy) with the KV cache, each stopping at end-of-text.

    Prompts of equal token length share a batch (each repeated ``k`` times, about ``batch_size`` rows per
    call), so no row needs padding: padding would shift positions and change the answers.
    """
    if len(records) == 0:
        raise ValueError("no records to answer")
    check_int(k, "k", low=1)
    check_int(batch_size, "batch_size", low=1)
    check_int(max_new_tokens, "max_new_tokens", low=1)
    eot = check_tokenizer(tokenizer).eot_token
    ctx = model.cfg.context_length
    prompts = [tokenizer.encode_ordinary(prompt_format(r)) for r in records]
    too_long = [i for i, p in enumerate(prompts) if len(p) + max_new_tokens > ctx]
    if too_long:
        raise ValueError(f"{len(too_long)} prompts (first: record {too_long[0]}) leave no room for "
                         f"{max_new_tokens} new tokens in context_length={ctx}; shorten them")
    groups: dict[int, list[int]] = {}
    for i, ids in enumerate(prompts):
        groups.setdefault(len(ids), []).append(i)
    per_call = max(1, batch_size // k)
    chunks = [ids[c:c + per_call] for _, ids in sorted(groups.items()) for c in range(0, len(ids), per_call)]
    bar = tqdm(total=len(records), desc="answering", leave=False, disable=not progress)
    answers: list[list[Answer]] = [[] for _ in records]
    for chunk in chunks:
        idx = torch.tensor([prompts[i] for i in chunk for _ in range(k)], dtype=torch.long, device=model.device)
        out = generate(model, idx, max_new_tokens, temperature=temperature, top_k=top_k, eos_id=eot,
                       generator=generator)[:, idx.shape[1]:].tolist()
        for row, new in enumerate(out):
            i = chunk[row // k]
            stopped = eot in new
            ids = new[:new.index(eot) + 1] if stopped else new
            text = tokenizer.decode(ids[:-1] if stopped else ids)
            answers[i].append(Answer(text.strip(), stopped, tuple(prompts[i]), tuple(ids)))
        bar.update(len(chunk))
    bar.close()
    return answers


def generate_answers(model: Any, tokenizer: Any, records: Sequence[dict], max_new_tokens: int = 12,
                     batch_size: int = 64, prompt_format: Callable[[dict], str] = format_prompt,
                     progress: bool = False) -> list[Answer]:
    """Greedy answers to ``records`` (in order): :func:`sample_answers` with one answer at temperature 0."""
    return [group[0] for group in sample_answers(model, tokenizer, records, 1, 0.0, max_new_tokens,
                                                 batch_size=batch_size, prompt_format=prompt_format,
                                                 progress=progress)]


def answer_question(model: Any, tokenizer: Any, instruction: str, input_text: str = "", max_new_tokens: int = 16,
                    prompt_format: Callable[[dict], str] = format_prompt) -> Answer:
    """The greedy answer to one question a person typed, checked first: ``instruction`` must hold some text,
    and the prompt with ``max_new_tokens`` answer tokens must fit the model's context. Runs of whitespace
    become one space (the prompts the model was trained on have single spaces). Any text is accepted, non-ASCII
    too (byte-level BPE encodes every character), though a model trained on English sees such bytes rarely."""
    for value, name in ((instruction, "instruction"), (input_text, "input_text")):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    check_int(max_new_tokens, "max_new_tokens", low=1)
    if not instruction.strip():
        raise ValueError("the instruction is empty: type a question, e.g. 'What is the first word?'")
    record = {"instruction": " ".join(instruction.split()), "input": " ".join(input_text.split()), "output": ""}
    n = len(tokenizer.encode_ordinary(prompt_format(record)))
    context = model.cfg.context_length
    if n + max_new_tokens > context:
        raise ValueError(f"the question is {n} tokens, and with {max_new_tokens} answer tokens it must fit the "
                         f"model's context of {context}: shorten it by {n + max_new_tokens - context} tokens")
    return generate_answers(model, tokenizer, [record], max_new_tokens, prompt_format=prompt_format)[0]


def normalise_answer(text: str) -> str:
    """Collapse whitespace and drop a trailing period: the only leniency exact match allows."""
    if not isinstance(text, str):
        raise TypeError(f"an answer must be a str, got {type(text).__name__}")
    return " ".join(text.split()).rstrip(".").rstrip()


def is_correct(answer: str, expected: str) -> bool:
    """Exact match after :func:`normalise_answer` (case counts)."""
    return normalise_answer(answer) == normalise_answer(expected)


def score_answers(records: Sequence[dict], answers: Sequence[Answer | str]):  # noqa: ANN201 - DataFrame
    """Per family: ``group``, ``n``, ``exact_match`` and ``format_ok`` (fractions), one row each.

    ``answers`` may be :class:`Answer` objects or plain strings (strings count as well-formed when
    non-empty, e.g. the majority baseline's).
    """
    if len(records) == 0:
        raise ValueError("no records to score")
    if len(answers) != len(records):
        raise ValueError(f"got {len(answers)} answers for {len(records)} records; give one per record")
    rows = []
    for record, answer in zip(records, answers, strict=True):
        text, ok = (answer.text, answer.well_formed) if isinstance(answer, Answer) else (answer, bool(answer))
        family = record.get("family", "")
        rows.append({"family": family, "group": family_group(family), "correct": is_correct(text, record["output"]),
                     "format_ok": ok})
    frame = pd.DataFrame(rows)
    table = frame.groupby(["group", "family"], sort=False).agg(
        n=("correct", "size"), exact_match=("correct", "mean"), format_ok=("format_ok", "mean")).reset_index()
    order = [f for f in FAMILIES if f in set(table["family"])]
    return table.set_index("family").loc[order]


def summarise(table: Any) -> dict[str, float]:
    """From :func:`score_answers`' table: the mean exact match of each group's families (each family
    weighs the same), the record-weighted overall exact match, and the overall format compliance."""
    if len(table) == 0:
        raise ValueError("the score table is empty")
    out = {}
    for group in ("supported", "knowledge"):
        part = table[table["group"] == group]
        if len(part):
            out[group] = float(part["exact_match"].mean())
    weights = table["n"] / table["n"].sum()
    out["overall"] = float((table["exact_match"] * weights).sum())
    out["format_compliance"] = float((table["format_ok"] * weights).sum())
    return out


def majority_answers(train: Sequence[dict], test: Sequence[dict]) -> list[str]:
    """For every test record, the most common training output of its family (ties: the first seen)."""
    if len(train) == 0:
        raise ValueError("no training records to count answers in")
    counts: dict[str, Counter] = {}
    for record in train:
        counts.setdefault(record.get("family", ""), Counter())[record["output"]] += 1
    return [counts[r.get("family", "")].most_common(1)[0][0] if r.get("family", "") in counts else ""
            for r in test]
