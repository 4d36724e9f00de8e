"""One fine-tuning loop for every task: the spam classifier (chapter 6), instruction tuning (chapter 7) and
learning from rewards (chapter 8).

Pretraining (:func:`gpt2_core.pretraining.loop.train`) walks a fixed token stream for a set number of
steps, with checkpoints and DDP. Fine-tuning is smaller and more varied: the batches are whatever the
task's collate function builds and the loss is the task's own. So :func:`finetune` takes a ``DataLoader``
(cycled through as many epochs as the steps need) and a ``loss_fn(model, batch) -> loss``; each step is
pretraining's own :func:`~gpt2_core.pretraining.step.train_step` (the same rule for a loss that is not
finite, gradient accumulation and bf16 for free), with what every fine-tune wants:

- AdamW with weight decay on matrices only, over the parameters that still ``require_grad`` (freeze, or
  inject LoRA, before calling it), with linear warmup, then cosine decay;
- gradient clipping;
- an optional ``metrics_fn(model) -> dict`` run every ``eval_every`` steps and at the end, in eval mode and
  without gradients (:func:`~gpt2_core.pretraining.runner.measure`).

The step counter, progress bar, history and evaluations are pretraining's loop shell,
:func:`~gpt2_core.pretraining.runner.run_steps`.

Reference: Howard & Ruder (2018), "Universal Language Model Fine-tuning for Text Classification"
(ULMFiT; warmup-then-decay schedules for fine-tuning).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..checks import check_int, check_number
from ..pretraining.optim import OptimConfig, autocast_for, optimizer_for
from ..pretraining.runner import MetricsFn, RunHistory, check_metrics_fn, measure, run_steps
from ..pretraining.step import LossFn, train_step


@dataclass(kw_only=True)
class FinetuneConfig(OptimConfig):
    """How long and how fast to fine-tune (the shared settings: OptimConfig). ``min_lr`` defaults to ``lr / 10``."""

    steps: int
    betas: tuple[float, float] = (0.9, 0.999)
    eval_every: int = 0  # 0: evaluate only at the end (if a metrics_fn is given)
    desc: str = "fine-tuning"

    def __post_init__(self) -> None:
        self._check(self.steps, "FinetuneConfig.steps")
        check_int(self.eval_every, "FinetuneConfig.eval_every", low=0)


@dataclass
class FinetuneHistory(RunHistory):
    """:class:`RunHistory`'s steps, losses, learning rates and evaluation steps, and ``evals``: the dicts
    ``metrics_fn`` returned."""

    evals: list[dict] = field(default_factory=list)


def epochs_to_steps(loader: DataLoader, epochs: float) -> int:
    """Optimizer steps that make ``epochs`` passes over ``loader`` (at least 1)."""
    if not isinstance(loader, DataLoader):
        raise TypeError(f"loader must be a DataLoader, got {type(loader).__name__}")
    return max(1, round(len(loader) * check_number(epochs, "epochs", positive=True)))


def _cycle(loader: DataLoader) -> Iterator[Any]:
    """Batches of ``loader`` forever, one epoch after another (a shuffling loader reshuffles each epoch)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("the training loader yields no batches; give it at least one example")


def finetune(model: nn.Module, loader: DataLoader, loss_fn: LossFn, config: FinetuneConfig,
             metrics_fn: MetricsFn | None = None) -> FinetuneHistory:
    """Fine-tune ``model`` for ``config.steps`` steps on batches of ``loader``; returns the history.

    ``loss_fn(model, batch)`` returns the scalar loss of one batch. The model is left in eval mode.
    Raises FloatingPointError at the first step whose loss is not finite; that step's update is not applied.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(loader, DataLoader):
        raise TypeError(f"loader must be a DataLoader (with the task's collate_fn), got {type(loader).__name__}")
    if not callable(loss_fn):
        raise TypeError("loss_fn must be a function loss_fn(model, batch) -> scalar loss tensor")
    if not isinstance(config, FinetuneConfig):
        raise TypeError(f"config must be a FinetuneConfig, got {type(config).__name__}")
    check_metrics_fn(metrics_fn)

    torch.manual_seed(config.seed)  # dropout masks (the loader's own generator orders the data)
    optimizer, scheduler = optimizer_for(model, config, config.steps)
    autocast = autocast_for(config, next(model.parameters()).device)
    history = FinetuneHistory()
    batches = _cycle(loader)

    def take_step(step: int) -> list[float]:
        micro_batches = [next(batches) for _ in range(config.grad_accum)]
        return [train_step(model, optimizer, micro_batches, loss_fn=loss_fn, autocast=autocast,
                           grad_clip=config.grad_clip, scheduler=scheduler)]

    def on_eval(step: int) -> None:
        history.evals.append(measure(model, metrics_fn))

    model.train()
    return run_steps(model, optimizer, history, take_step, last_step=config.steps, eval_every=config.eval_every,
                     on_eval=on_eval if metrics_fn is not None else None, desc=config.desc, progress=config.progress,
                     hint=f"Lower the learning rate (lr={config.lr:g}) or check the data and loss_fn.")
