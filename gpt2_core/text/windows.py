"""Sliding-window training data: one long run of token ids cut into (input, target) windows.

A language model learns to predict the next token at every position, so one training example is a
window of ``context_length`` token ids and its target is the same window shifted one token to the
right. Windows start every ``stride`` tokens: ``stride == context_length`` gives non-overlapping
windows, a smaller stride gives overlapping ones (more examples, but they repeat text).

The ids are stored once as a single 1-D tensor and each window is sliced out when asked for, so a
corpus of millions of tokens costs one tensor, not one copy per window. ``GPTDataset`` is a plain
map-style ``torch.utils.data.Dataset``, so it works with any sampler (``DistributedSampler``
included).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from ..checks import check_bool, check_int, check_tokenizer
from .ranks import ENDOFTEXT


def num_windows(num_tokens: int, context_length: int, stride: int) -> int:
    """How many (input, target) windows a run of ``num_tokens`` ids gives.

    A window starting at ``s`` needs ids ``s .. s + context_length`` (its last target), so the
    starts are ``0, stride, 2 * stride, ...`` up to ``num_tokens - context_length - 1``.
    """
    check_int(num_tokens, "num_tokens", low=0)
    check_int(context_length, "context_length", low=1)
    check_int(stride, "stride", low=1)
    last_start = num_tokens - context_length - 1
    return 0 if last_start < 0 else last_start // stride + 1


def encode_text(text: str, tokenizer) -> list[int]:  # noqa: ANN001 - a tiktoken Encoding or a BPETokenizer
    """Encode ``text`` so that ``<|endoftext|>`` between documents becomes its special token.

    Both kinds of tokenizer speak tiktoken's interface, which refuses special-token text unless it is
    allowed; a tokenizer without ``<|endoftext|>`` encodes that text as ordinary text.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if ENDOFTEXT in check_tokenizer(tokenizer).special_tokens_set:
        return tokenizer.encode(text, allowed_special={ENDOFTEXT})
    return tokenizer.encode_ordinary(text)


def _as_id_tensor(token_ids: object) -> torch.Tensor:
    """A 1-D int64 tensor of non-negative ids from a list/tuple/tensor/array of ints."""
    if isinstance(token_ids, torch.Tensor):
        ids = token_ids.detach().cpu()
    elif isinstance(token_ids, Sequence) or hasattr(token_ids, "__array__"):
        if len(token_ids) == 0:  # type: ignore[arg-type]
            ids = torch.zeros(0, dtype=torch.long)
        else:
            try:
                ids = torch.as_tensor(token_ids)
            except (TypeError, ValueError, RuntimeError) as err:
                raise TypeError(f"token ids must be ints, could not read them as a tensor: {err}") from err
    else:
        raise TypeError(
            "pass token ids as a list or 1-D tensor of ints, or a str together with tokenizer=, "
            f"got {type(token_ids).__name__}"
        )
    if ids.dtype == torch.bool or ids.is_floating_point() or ids.is_complex():
        raise TypeError(f"token ids must be integers, got dtype {ids.dtype}")
    if ids.dim() != 1:
        raise ValueError(
            f"token ids must be one flat 1-D sequence, got shape {tuple(ids.shape)}; "
            "concatenate your documents first (for example separated by <|endoftext|>)"
        )
    if ids.numel() and int(ids.min()) < 0:
        raise ValueError(f"token ids must be non-negative, found {int(ids.min())}")
    return ids.to(torch.long).contiguous()


class GPTDataset(Dataset):
    """Next-token windows over one long token sequence.

    ``GPTDataset(source, context_length, stride, tokenizer=None)``: ``source`` is either token ids
    (a list or 1-D tensor of ints) or a ``str`` that ``tokenizer`` encodes. Item ``i`` is the pair
    ``(ids[s : s + context_length], ids[s + 1 : s + context_length + 1])`` with ``s = i * stride``.
    ``stride`` defaults to ``context_length`` (windows that touch but do not overlap).
    A contiguous int64 CPU tensor is kept as is (not copied), so a big corpus is held only once.
    """

    def __init__(
        self,
        source: str | Sequence[int] | torch.Tensor,
        context_length: int,
        stride: int | None = None,
        *,
        tokenizer=None,  # noqa: ANN001
    ) -> None:
        self.context_length = check_int(context_length, "context_length", low=1)
        self.stride = check_int(context_length if stride is None else stride, "stride", low=1)
        what = "the text has" if isinstance(source, str) else "the token sequence has"
        if isinstance(source, str):
            if tokenizer is None:
                raise TypeError(
                    "got text but no tokenizer: pass tokenizer=gpt2_encoding() (or your BPETokenizer), "
                    "or pass token ids instead of text"
                )
            source = encode_text(source, tokenizer)
        elif tokenizer is not None:
            raise TypeError("tokenizer= is only used with text; you passed token ids, so drop tokenizer=")
        self.token_ids = _as_id_tensor(source)
        n = self.token_ids.numel()
        if n < self.context_length + 1:
            hint = f"use context_length <= {n - 1} or more text" if n >= 2 else "use more text"
            raise ValueError(
                f"{what} only {n} tokens, but one window needs context_length + 1 = "
                f"{self.context_length + 1} tokens (the inputs plus one more for the shifted target); "
                f"{hint}"
            )
        self._len = num_windows(n, self.context_length, self.stride)

    @property
    def num_tokens(self) -> int:
        """Length of the underlying token sequence."""
        return self.token_ids.numel()

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(index, torch.Tensor) and index.numel() == 1:
            index = int(index.item())
        if isinstance(index, bool) or not hasattr(index, "__index__"):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        index = operator.index(index)  # numpy ints too (e.g. from a Subset built with numpy indices)
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError(f"window index out of range: dataset has {self._len} windows")
        start = index * self.stride
        # Slices are views of the one big tensor; clone so a caller editing a window in place
        # cannot corrupt the dataset (a copy of context_length ids is cheap).
        inputs = self.token_ids[start : start + self.context_length].clone()
        targets = self.token_ids[start + 1 : start + self.context_length + 1].clone()
        return inputs, targets

    def __repr__(self) -> str:
        return (
            f"GPTDataset(num_tokens={self.num_tokens}, context_length={self.context_length}, "
            f"stride={self.stride}, windows={self._len})"
        )


def create_dataloader(
    text_or_ids: str | Sequence[int] | torch.Tensor,
    tokenizer=None,  # noqa: ANN001
    *,
    context_length: int,
    batch_size: int = 8,
    stride: int | None = None,
    shuffle: bool = True,
    drop_last: bool = True,
    num_workers: int = 0,
    seed: int | None = None,
) -> DataLoader:
    """A DataLoader of ``(inputs, targets)`` batches, each of shape ``(batch_size, context_length)``.

    ``text_or_ids`` and ``tokenizer`` are as for ``GPTDataset``; ``context_length`` is required
    because it must match the model's. For DDP, build ``GPTDataset`` yourself and give a
    ``DataLoader`` a ``DistributedSampler`` over it.

    ``seed`` makes the shuffle order reproducible (the loader gets its own seeded generator, so
    it does not depend on, or disturb, the global random state).
    """
    check_int(batch_size, "batch_size", low=1)
    check_bool(shuffle, "shuffle")
    check_bool(drop_last, "drop_last")
    check_int(num_workers, "num_workers", low=0)
    if seed is not None:
        check_int(seed, "seed")
    dataset = GPTDataset(text_or_ids, context_length, stride, tokenizer=tokenizer)
    if drop_last and len(dataset) < batch_size:
        raise ValueError(
            f"only {len(dataset)} windows but batch_size={batch_size} with drop_last=True, so the "
            "loader would yield no batches; use a smaller batch_size or stride, more text, or drop_last=False"
        )
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=num_workers,
        generator=generator,
    )
