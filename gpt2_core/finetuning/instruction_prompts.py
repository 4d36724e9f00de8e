"""From records to training batches: the prompt format, the encoded dataset, masked batches, the loss.

Two prompt formats:

- :func:`format_alpaca`, the Stanford Alpaca prompt (Taori et al., 2023): a header, ``### Instruction:``,
  ``### Input:``, ``### Response:`` on lines of their own. It is the format most instruction sets use,
  and the notebook shows it first.
- :func:`format_prompt`, the course's **compact** prompt, ``"<instruction> Input: <input> Answer:"``,
  with the answer after a space. A small model pretrained on speeches never saw ``###``; it did see
  `` Input`` and `` Answer``. And with the answer after a space, the word ``army`` of the input and of
  the answer are the same token (`` army``), so copying a word is copying a token. Both changes are
  measured in chapter 7.

A training example is ``prompt + answer + <|endoftext|>``. :func:`instruction_collate` pads a batch
with end-of-text, shifts the targets by one, and replaces by ``-100`` (ignored by the loss) every
target after the first end-of-text and, with ``mask_prompt``, every target inside the prompt: only
the answer and the end-of-text that ends it are learned. The loss is then the language-model loss
every run uses (:func:`gpt2_core.pretraining.step.lm_loss`): the model's own ``model(inputs, targets=targets)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ..checks import check_choice, check_int, check_tokenizer
from .instruction_data import FORBIDDEN_TEXT

ALPACA_HEADER = ("Below is an instruction that describes a task. "
                 "Write a response that appropriately completes the request.")
INPUT_MARKER = " Input:"
ANSWER_MARKER = " Answer:"
IGNORE_INDEX = -100


def _check_record(record: Any, need_output: bool = False) -> None:
    if not isinstance(record, dict):
        raise TypeError(f"a record must be a dict with 'instruction', 'input' and 'output', "
                        f"got {type(record).__name__}")
    fields = ("instruction", "input", "output") if need_output else ("instruction", "input")
    for field in fields:
        value = record.get(field, "" if field == "input" else None)
        if not isinstance(value, str):
            raise ValueError(f"a record needs a string {field!r} field, got {value!r}")
        if FORBIDDEN_TEXT in value:
            raise ValueError(f"the {field!r} of a record contains the text {FORBIDDEN_TEXT!r}, which the "
                             "tokenizer reserves for the end-of-text token; remove it from the data")


def format_alpaca(record: dict) -> str:
    """The Alpaca prompt: header, ``### Instruction:``, ``### Input:`` (only if non-empty), ``### Response:``."""
    _check_record(record)
    text = f"{ALPACA_HEADER}\n\n### Instruction:\n{record['instruction']}"
    if record.get("input"):
        text += f"\n\n### Input:\n{record['input']}"
    return text + "\n\n### Response:\n"


def format_prompt(record: dict) -> str:
    """The compact prompt, ``"<instruction> Input: <input> Answer:"`` (`` Input:`` only with an input).

    The answer follows after a space: see :func:`answer_text`.
    """
    _check_record(record)
    text = record["instruction"]
    if record.get("input"):
        text += f"{INPUT_MARKER} {record['input']}"
    return text + ANSWER_MARKER


def answer_text(record: dict) -> str:
    """What the model must write after the prompt: a space, then the output."""
    _check_record(record, need_output=True)
    return " " + record["output"]


class InstructionDataset(Dataset):
    """Records encoded once: item ``i`` is ``(ids, prompt_len)`` for ``prompt + answer`` (no end-of-text yet).

    ``context_length``: every example plus its end-of-text must fit. Too long examples raise a
    ``ValueError`` (``too_long="error"``) or are left out and counted in ``self.skipped``
    (``too_long="skip"``); cutting an answer short would teach a wrong answer, so nothing is truncated.
    """

    def __init__(self, records: Sequence[dict], tokenizer: Any, context_length: int,
                 too_long: str = "error", prompt_format=format_prompt) -> None:  # noqa: ANN001
        if len(records) == 0:
            raise ValueError("no records: an instruction dataset needs at least one record")
        check_int(context_length, "context_length (the model's cfg.context_length)", low=2)
        check_choice(too_long, "too_long", ("error", "skip"))
        self.eot_id = check_tokenizer(tokenizer).eot_token
        self.records: list[dict] = []
        self.items: list[tuple[list[int], int]] = []
        self.skipped = 0
        for i, record in enumerate(records):
            _check_record(record, need_output=True)
            prompt = tokenizer.encode_ordinary(prompt_format(record))
            answer = tokenizer.encode_ordinary(answer_text(record))
            if len(prompt) + len(answer) + 1 > context_length:
                if too_long == "skip":
                    self.skipped += 1
                    continue
                raise ValueError(f"record {i} needs {len(prompt) + len(answer) + 1} tokens with its "
                                 f"end-of-text, more than context_length={context_length}; shorten it "
                                 "or pass too_long='skip'")
            self.records.append(record)
            self.items.append((prompt + answer, len(prompt)))
        if not self.items:
            raise ValueError(f"all {self.skipped} records are longer than context_length={context_length}")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[list[int], int]:
        return self.items[i]

    def lengths(self) -> list[int]:
        """Tokens per example, without the end-of-text the collate function appends."""
        return [len(ids) for ids, _ in self.items]


def instruction_collate(batch: Sequence, eot_id: int, mask_prompt: bool = True,
                        ignore_index: int = IGNORE_INDEX,
                        device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, targets)`` LongTensors of shape (batch, longest example).

    Each example ``(ids, prompt_len)`` gets one end-of-text appended and is padded with end-of-text;
    targets are the sequence shifted left by one. Targets after the first end-of-text become
    ``ignore_index`` (the model learns to stop, not to predict padding); with ``mask_prompt`` the
    targets that predict prompt tokens do too, so only the answer and its end-of-text count.
    """
    if len(batch) == 0:
        raise ValueError("cannot collate an empty batch")
    check_int(eot_id, "eot_id (the tokenizer's end-of-text id, tokenizer.eot_token)", low=0)
    examples = []
    for item in batch:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], int)):
            raise TypeError(f"each example must be (ids, prompt_len) as InstructionDataset gives, "
                            f"got {type(item).__name__}")
        ids, prompt_len = [int(t) for t in item[0]], item[1]
        if not ids or not 0 <= prompt_len <= len(ids):
            raise ValueError(f"an example has {len(ids)} tokens and prompt_len={prompt_len}; need "
                             "at least one token and 0 <= prompt_len <= len(ids)")
        examples.append((ids, prompt_len))
    width = max(len(ids) for ids, _ in examples) + 1  # +1: the appended end-of-text
    inputs, targets = [], []
    for ids, prompt_len in examples:
        seq = ids + [eot_id] * (width - len(ids))
        x, y = seq[:-1], seq[1:]
        y[len(ids):] = [ignore_index] * (len(y) - len(ids))  # y[len(ids) - 1] is the first end-of-text
        if mask_prompt:  # y[j] predicts seq[j + 1]: the prompt's own tokens are y[:prompt_len - 1]
            y[:max(prompt_len - 1, 0)] = [ignore_index] * max(prompt_len - 1, 0)
        inputs.append(x)
        targets.append(y)
    x_t, y_t = torch.tensor(inputs, dtype=torch.long), torch.tensor(targets, dtype=torch.long)
    if device is not None:
        x_t, y_t = x_t.to(device), y_t.to(device)
    return x_t, y_t


def instruction_loader(dataset: InstructionDataset, batch_size: int, shuffle: bool = True,
                       mask_prompt: bool = True, seed: int = 123,
                       device: torch.device | str | None = None) -> DataLoader:
    """A DataLoader of masked ``(inputs, targets)`` batches; the order is fixed by ``seed``."""
    if not isinstance(dataset, InstructionDataset):
        raise TypeError(f"dataset must be an InstructionDataset, got {type(dataset).__name__}")
    check_int(batch_size, "batch_size", low=1)
    eot = dataset.eot_id

    def collate(batch: Sequence) -> tuple[torch.Tensor, torch.Tensor]:
        return instruction_collate(batch, eot, mask_prompt=mask_prompt, device=device)

    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=collate,
                      generator=torch.Generator().manual_seed(seed))
