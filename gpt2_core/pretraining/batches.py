"""The batches of a pretraining run: training batches in an order that is a pure function of ``(seed, step)``
(so a resumed run needs no sampler state to continue with the very batch it would have seen), and fixed
evaluation batches spread over a split (so every evaluation is comparable).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Dataset


class StepBatches:
    """Global batch ``b`` of a run, for this rank: ``batch(b) -> (inputs, targets)``.

    Epoch ``e`` visits the dataset in the order ``randperm(n, seed + e)`` (or 0..n-1 unshuffled);
    global batch ``b`` is the ``b``-th slice of ``batch_size * world_size`` windows of that order
    (incomplete tail batches are dropped) and rank ``r`` takes the ``r``-th ``batch_size`` of them.
    A 1-process run with ``batch_size * world_size`` therefore sees exactly the same windows.
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int = 0, shuffle: bool = True,
                 rank: int = 0, world_size: int = 1) -> None:
        self.dataset, self.batch_size, self.seed, self.shuffle = dataset, batch_size, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.global_batch = batch_size * world_size
        self.per_epoch = len(dataset) // self.global_batch
        if self.per_epoch < 1:
            raise ValueError(f"the training set has {len(dataset)} windows, fewer than one global batch of "
                             f"{self.global_batch} (batch_size {batch_size} x {world_size} processes); use a "
                             "smaller batch size or context length, or more text")
        self._epoch, self._order = -1, torch.arange(0)

    def _order_for(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            n = len(self.dataset)
            if self.shuffle:
                self._order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + epoch))
            else:
                self._order = torch.arange(n)
            self._epoch = epoch
        return self._order

    def batch(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, within = divmod(b, self.per_epoch)
        start = within * self.global_batch + self.rank * self.batch_size
        idx = self._order_for(epoch)[start:start + self.batch_size].tolist()
        pairs = [self.dataset[i] for i in idx]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def eval_batches(dataset: Dataset, batch_size: int, num_batches: int | None) -> Iterator:
    """Fixed evaluation batches: ``num_batches`` batches of windows spread evenly over ``dataset``.

    Spreading them (rather than taking the first few) estimates the loss over the whole split;
    fixing them makes every evaluation comparable and uses no random numbers.
    """
    n = len(dataset)
    total = n // batch_size if num_batches is None else min(num_batches, max(1, n // batch_size))
    count = min(n, total * batch_size)
    idx = torch.linspace(0, n - 1, count).round().long().tolist() if count else []
    for i in range(0, len(idx) - batch_size + 1 if len(idx) >= batch_size else len(idx), batch_size):
        pairs = [dataset[j] for j in idx[i:i + batch_size]]
        yield torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
