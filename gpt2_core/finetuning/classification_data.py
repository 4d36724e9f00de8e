"""Texts for a classifier (chapter 6): encoded and cut into windows, batched with padding, and language-model
windows.

A text longer than the model's context can still be read whole: :class:`WindowedTexts` cuts each one into
windows of at most ``window`` tokens, and every window becomes an example carrying its text's label (the
classifier's :func:`~gpt2_core.finetuning.classification.classifier_metrics` pools them back into one answer;
``first_windows()`` keeps each text's first window, the text as a truncating reader sees it).

Batches are right-padded with the tokenizer's ``<|endoftext|>`` id and carry each text's last index.
Right padding is harmless under causal attention: positions before the pad never attend to it, so the
last real token's output, and the mean over the real tokens, are what they would be without padding.
:func:`lm_loader` turns the same (unlabelled) texts into next-token windows for ULMFiT's middle step.
"""

from __future__ import annotations

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


def split_windows(ids: Sequence[int], window: int) -> list[list[int]]:
    """``ids`` cut into consecutive windows of ``window`` tokens (the last one shorter); one window if it fits."""
    check_int(window, "window (tokens per window, at most the model's context)", low=1)
    ids = list(ids)
    return [ids[start:start + window] for start in range(0, max(len(ids), 1), window)]


class WindowedTexts(Dataset):
    """Texts read whole: each is encoded and cut into windows of at most ``window`` tokens.

    Item ``i`` is window ``i`` with its text's label, ``(ids, label)``; ``owner[i]`` says which text it
    comes from, ``windows[t]`` holds text ``t``'s windows, ``ids[t]`` its tokens, ``labels[t]`` its label.
    Training on every window, each with its text's label, is the simplest way to learn from whole texts.
    """

    def __init__(self, texts: Sequence[str], labels: Sequence[int], tokenizer: Any, window: int,
                 pad_id: int | None = None) -> None:
        texts, labels = list(texts), [int(y) for y in labels]
        if len(texts) != len(labels) or not texts:
            raise ValueError(f"got {len(texts)} texts and {len(labels)} labels; give one label per text (at least one)")
        if min(labels) < 0:
            raise ValueError(f"labels must be class indices 0, 1, ...; got {min(labels)}")
        self.pad_id = _check_pad_id(check_tokenizer(tokenizer).eot_token if pad_id is None else pad_id)
        self.window = check_int(window, "window (tokens per window, at most the model's context)", low=1)
        self.ids = [tokenizer.encode_ordinary(_check_text(t, f"text {i}")) for i, t in enumerate(texts)]
        self.labels = labels
        self._cut()

    def _cut(self) -> None:
        self.windows = [split_windows(ids, self.window) for ids in self.ids]
        self.owner = [t for t, ws in enumerate(self.windows) for _ in ws]
        self._flat = [w for ws in self.windows for w in ws]

    @property
    def n_texts(self) -> int:
        return len(self.ids)

    def windows_per_text(self) -> list[int]:
        return [len(ws) for ws in self.windows]

    def __len__(self) -> int:
        return len(self._flat)

    def __getitem__(self, i: int) -> tuple[list[int], int]:
        return self._flat[i], self.labels[self.owner[i]]

    def subset(self, indices: Sequence[int]) -> WindowedTexts:
        """The texts at ``indices``, with their windows (nothing is tokenized again)."""
        indices = [int(i) for i in indices]
        if not indices:
            raise ValueError("indices is empty; a dataset needs at least one text")
        out = object.__new__(WindowedTexts)
        out.pad_id, out.window = self.pad_id, self.window
        out.ids, out.labels = [self.ids[i] for i in indices], [self.labels[i] for i in indices]
        out._cut()
        return out

    def first_windows(self) -> WindowedTexts:
        """Each text's first window only: the text as a truncating reader sees it."""
        out = self.subset(range(self.n_texts))
        out.ids = [ws[0] for ws in self.windows]
        out._cut()
        return out

    def loader(self, batch_size: int = 16, shuffle: bool = False, seed: int = 123) -> DataLoader:
        """Batches of windows as ``(input_ids, labels, last_index)`` (:func:`pad_collate`), seeded shuffling."""
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(self, batch_size=batch_size, shuffle=shuffle,
                          collate_fn=lambda b: pad_collate(b, self.pad_id), generator=generator)


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
