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
- an optional ``evaluate(model) -> dict`` run every ``eval_every`` steps and at the end, in eval mode and
  without gradients, the model's mode restored afterwards even if evaluation fails.

Reference: Howard & Ruder (2018), "Universal Language Model Fine-tuning for Text Classification"
(ULMFiT; warmup-then-decay schedules for fine-tuning).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..checks import check_int, check_number
from ..model.gpt import eval_mode
from ..pretraining.optim import OptimConfig, autocast_for, optimizer_for
from ..pretraining.step import LossFn, RunHistory, train_step


@dataclass(kw_only=True)
class FinetuneConfig(OptimConfig):
    """How long and how fast to fine-tune (the shared settings: OptimConfig). ``min_lr`` defaults to ``lr / 10``."""

    steps: int
    betas: tuple[float, float] = (0.9, 0.999)
    eval_every: int = 0  # 0: evaluate only at the end (if an evaluate function is given)
    desc: str = "fine-tuning"

    def __post_init__(self) -> None:
        self._check(self.steps, "FinetuneConfig.steps")
        check_int(self.eval_every, "FinetuneConfig.eval_every", low=0)


@dataclass
class FinetuneHistory(RunHistory):
    """:class:`RunHistory`'s steps, losses, learning rates and evaluation steps, and ``evals``: the dicts
    ``evaluate`` returned."""

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


def evaluation(model: nn.Module, evaluate: Callable[[nn.Module], dict]) -> dict:
    """``evaluate(model)`` in eval mode without gradients (the model's mode restored after), checked to be a dict:
    what every training loop of the package records as one evaluation."""
    with eval_mode(model), torch.no_grad():
        result = evaluate(model)
    if not isinstance(result, dict):
        raise TypeError(f"evaluate(model) must return a dict of numbers, got {type(result).__name__}")
    return result


def finetune(model: nn.Module, loader: DataLoader, loss_fn: LossFn, config: FinetuneConfig,
             evaluate: Callable[[nn.Module], dict] | None = None) -> FinetuneHistory:
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
    if evaluate is not None and not callable(evaluate):
        raise TypeError("evaluate must be a function evaluate(model) -> dict, or None")

    torch.manual_seed(config.seed)  # dropout masks (the loader's own generator orders the data)
    optimizer, scheduler = optimizer_for(model, config, config.steps)
    autocast = autocast_for(config, next(model.parameters()).device)
    history = FinetuneHistory()
    bar = tqdm(total=config.steps, desc=config.desc, unit="step", disable=not config.progress)
    start = time.perf_counter()
    batches = _cycle(loader)
    model.train()
    try:
        for step in range(1, config.steps + 1):
            lr = optimizer.param_groups[0]["lr"]
            micro_batches = [next(batches) for _ in range(config.grad_accum)]
            loss = train_step(model, optimizer, micro_batches, loss_fn=loss_fn, autocast=autocast,
                              grad_clip=config.grad_clip, scheduler=scheduler)
            if loss != loss or loss in (float("inf"), float("-inf")):
                raise FloatingPointError(f"the loss became {loss} at step {step}, so its update was not applied; "
                                         f"lower lr (now {lr:.2e}) or check the data")
            history.steps.append(step)
            history.losses.append(loss)
            history.lrs.append(lr)
            if evaluate is not None and ((config.eval_every and step % config.eval_every == 0)
                                         or step == config.steps):
                history.eval_steps.append(step)
                history.evals.append(evaluation(model, evaluate))
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.1e}")
    finally:
        bar.close()
        history.seconds = time.perf_counter() - start
        model.eval()
    return history
