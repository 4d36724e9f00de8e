"""Texts for a classifier (chapter 6): encoded, truncated, batched with padding, and language-model windows.

Batches are right-padded with the tokenizer's ``<|endoftext|>`` id and carry each text's last index.
Right padding is harmless under causal attention: positions before the pad never attend to it, so the
last real token's output, and the mean over the real tokens, are what they would be without padding.
:func:`lm_loader` turns the same (unlabelled) texts into next-token windows for ULMFiT's middle step.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ..checks import check_int, check_tokenizer
from ..text.windows import create_dataloader, num_windows


def _check_text(text: object, where: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"{where} must be a str, got {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"{where} is empty; give some text to classify (drop empty texts from the data)")
    return text


def _check_pad_id(pad_id: object) -> int:
    return check_int(pad_id, "pad_id (e.g. tokenizer.eot_token)", low=0)


class ClassificationDataset(Dataset):
    """Texts encoded to token ids (truncated to ``max_length``) with integer labels.

    ``max_length=None`` uses the longest encoded text. Texts longer than ``max_length`` keep their
    first ``max_length`` tokens; how many were cut is in ``n_truncated`` (and a warning says so).
    Batches from :meth:`collate` are right-padded with ``pad_id`` (default: the tokenizer's
    ``<|endoftext|>`` id) and carry each text's last index.
    """

    def __init__(self, texts: Sequence[str], labels: Sequence[int], tokenizer: Any, max_length: int | None = None,
                 pad_id: int | None = None) -> None:
        texts, labels = list(texts), [int(y) for y in labels]
        if len(texts) != len(labels):
            raise ValueError(f"got {len(texts)} texts but {len(labels)} labels; give one label per text")
        if not texts:
            raise ValueError("no texts given; a dataset needs at least one example")
        if min(labels) < 0:
            raise ValueError(f"labels must be class indices 0, 1, ...; got {min(labels)}")
        if max_length is not None:
            check_int(max_length, "max_length (None: the longest text)", low=1)
        self.pad_id = _check_pad_id(check_tokenizer(tokenizer).eot_token if pad_id is None else pad_id)
        # encode_ordinary: an e-mail that contains the text "<|endoftext|>" is just text
        encoded = [tokenizer.encode_ordinary(_check_text(t, f"text {i}")) for i, t in enumerate(texts)]
        self.max_length = max_length or max(len(ids) for ids in encoded)
        self.n_truncated = sum(len(ids) > self.max_length for ids in encoded)
        if self.n_truncated:
            warnings.warn(f"{self.n_truncated} of {len(texts)} texts are longer than max_length="
                          f"{self.max_length} tokens and were truncated to their first {self.max_length}",
                          stacklevel=2)
        self.ids = [ids[: self.max_length] for ids in encoded]
        self.full_lengths = [len(ids) for ids in encoded]
        self.labels = labels

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[list[int], int]:
        return self.ids[i], self.labels[i]

    def subset(self, indices: Sequence[int]) -> ClassificationDataset:
        """A dataset of the examples at ``indices`` (already encoded: nothing is tokenized again)."""
        out = object.__new__(ClassificationDataset)
        indices = [int(i) for i in indices]
        if not indices:
            raise ValueError("indices is empty; a dataset needs at least one example")
        out.ids = [self.ids[i] for i in indices]
        out.full_lengths = [self.full_lengths[i] for i in indices]
        out.labels = [self.labels[i] for i in indices]
        out.max_length, out.pad_id = self.max_length, self.pad_id
        out.n_truncated = sum(n > self.max_length for n in out.full_lengths)
        return out

    def collate(self, batch: Sequence[tuple[list[int], int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(input_ids, labels, last_index)``; see :func:`pad_collate`."""
        return pad_collate(batch, self.pad_id)

    def loader(self, batch_size: int = 8, shuffle: bool = False, seed: int = 123) -> DataLoader:
        """A DataLoader over this dataset using :meth:`collate` (seeded shuffling)."""
        gen = torch.Generator().manual_seed(seed)
        return DataLoader(self, batch_size=batch_size, shuffle=shuffle, collate_fn=self.collate, generator=gen)


def pad_collate(batch: Sequence[tuple[Sequence[int], int]], pad_id: int,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad a batch of ``(ids, label)`` to its longest text with ``pad_id`` (e.g. ``tokenizer.eot_token``).

    Returns ``input_ids`` (batch, longest), ``labels`` (batch,) and ``last_index`` (batch,), the
    position of each text's last real token. Right padding is harmless under causal attention:
    positions before the pad never attend to it.
    """
    _check_pad_id(pad_id)
    if not batch:
        raise ValueError("cannot collate an empty batch")
    if any(len(ids) == 0 for ids, _ in batch):
        raise ValueError("a text in the batch has no tokens; drop empty texts before batching")
    longest = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), longest), pad_id, dtype=torch.long)
    for row, (ids, _) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.as_tensor(list(ids), dtype=torch.long)
    labels = torch.tensor([int(y) for _, y in batch], dtype=torch.long)
    last_index = torch.tensor([len(ids) - 1 for ids, _ in batch], dtype=torch.long)
    return input_ids, labels, last_index


def lm_loader(texts: Sequence[str], tokenizer: Any, context_length: int, batch_size: int = 32,
              shuffle: bool = True, seed: int = 123) -> DataLoader:
    """Next-token windows over ``texts`` joined by ``<|endoftext|>``: language-model data from unlabelled text.

    ULMFiT's middle step continues the pretrained model's language-model training on the task's own
    (training) texts before the classifier is trained (its loss: :func:`gpt2_core.pretraining.step.lm_loss`). The
    windows do not overlap; ``shuffle=False`` keeps their order (for evaluation).
    """
    texts = [_check_text(t, f"text {i}") for i, t in enumerate(texts)]
    if not texts:
        raise ValueError("no texts given; the language-model step needs some unlabelled text")
    ids: list[int] = []
    for text in texts:
        ids += tokenizer.encode_ordinary(text) + [tokenizer.eot_token]
    full_batches = num_windows(len(ids), context_length, context_length) >= batch_size
    return create_dataloader(ids, context_length=context_length, batch_size=batch_size, shuffle=shuffle,
                             drop_last=shuffle and full_batches, seed=seed)
