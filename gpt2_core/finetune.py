"""One fine-tuning loop for every task: the spam classifier (chapter 6) and instruction tuning (chapter 7).

Pretraining (:func:`gpt2_core.training.train`) walks a fixed token stream for a set number of steps,
with checkpoints and DDP. Fine-tuning is smaller and more varied: the batches are whatever the task's
collate function builds and the loss is the task's own. So :func:`finetune` takes a ``DataLoader``
(cycled through as many epochs as the steps need) and a ``loss_fn(model, batch) -> loss``, and adds
what every fine-tune wants:

- AdamW with weight decay on matrices only (:func:`gpt2_core.training.make_optimizer`), over the
  parameters that still ``require_grad`` (freeze, or inject LoRA, before calling it);
- linear warmup, then cosine decay (:func:`gpt2_core.training.lr_schedule`);
- gradient clipping;
- an optional ``evaluate(model) -> dict`` run every ``eval_every`` steps and at the end, in eval
  mode and without gradients, the model's mode restored afterwards even if evaluation fails.

Reference: Howard & Ruder (2018), "Universal Language Model Fine-tuning for Text Classification"
(ULMFiT; warmup-then-decay schedules for fine-tuning).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from .training import make_optimizer, make_scheduler


@dataclass
class FinetuneConfig:
    """How long and how fast to fine-tune. ``min_lr`` defaults to ``lr / 10``."""

    steps: int
    lr: float
    min_lr: float | None = None
    warmup_steps: int = 0
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = 1.0
    eval_every: int = 0  # 0: evaluate only at the end (if an evaluate function is given)
    seed: int = 123
    progress: bool = True
    desc: str = "fine-tuning"

    def __post_init__(self) -> None:
        for name, low in (("steps", 1), ("warmup_steps", 0), ("eval_every", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"FinetuneConfig.{name} must be an int >= {low}, got {value!r}")
        if self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps={self.warmup_steps} is longer than steps={self.steps}; shorten it")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.min_lr is None:
            self.min_lr = self.lr / 10
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"need 0 <= min_lr <= lr, got min_lr={self.min_lr}, lr={self.lr}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None (no clipping), got {self.grad_clip!r}")
        self.betas = tuple(self.betas)


@dataclass
class FinetuneHistory:
    """Per step: ``steps``, ``losses``, ``lrs``. Per evaluation: ``eval_steps`` and ``evals`` (the dicts
    ``evaluate`` returned). ``seconds``: wall time of the whole run, evaluations included."""

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def epochs_to_steps(loader: DataLoader, epochs: float) -> int:
    """Optimizer steps that make ``epochs`` passes over ``loader`` (at least 1)."""
    if not isinstance(loader, DataLoader):
        raise TypeError(f"loader must be a DataLoader, got {type(loader).__name__}")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, float)) or not epochs > 0:
        raise ValueError(f"epochs must be a positive number, got {epochs!r}")
    return max(1, round(len(loader) * epochs))


def _cycle(loader: DataLoader) -> Iterator[Any]:
    """Batches of ``loader`` forever, one epoch after another (a shuffling loader reshuffles each epoch)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("the training loader yields no batches; give it at least one example")


def run_evaluation(model: nn.Module, evaluate: Callable[[nn.Module], dict]) -> dict:
    """``evaluate(model)`` in eval mode without gradients; the model's previous mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            result = evaluate(model)
    finally:
        model.train(was_training)
    if not isinstance(result, dict):
        raise TypeError(f"evaluate(model) must return a dict of numbers, got {type(result).__name__}")
    return result


def finetune(model: nn.Module, loader: DataLoader, loss_fn: Callable[[nn.Module, Any], torch.Tensor],
             config: FinetuneConfig, evaluate: Callable[[nn.Module], dict] | None = None) -> FinetuneHistory:
    """Fine-tune ``model`` for ``config.steps`` steps on batches of ``loader``; returns the history.

    ``loss_fn(model, batch)`` returns the scalar loss of one batch. The model is left in eval mode.
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
    optimizer = make_optimizer(model, config.lr, config.weight_decay, config.betas)
    scheduler = make_scheduler(optimizer, config.steps, config.warmup_steps, config.lr, config.min_lr)
    trainable = [p for group in optimizer.param_groups for p in group["params"]]
    history = FinetuneHistory()
    bar = None
    if config.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, desc=config.desc, unit="step")
    start = time.perf_counter()
    batches = _cycle(loader)
    model.train()
    try:
        for step in range(1, config.steps + 1):
            loss = loss_fn(model, next(batches))
            if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
                raise TypeError("loss_fn must return a scalar tensor (e.g. F.cross_entropy(...)), "
                                f"got {type(loss).__name__}")
            loss.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip)
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            value = loss.item()
            if value != value or value in (float("inf"), float("-inf")):
                raise FloatingPointError(f"the loss became {value} at step {step}; lower lr (now {lr:.2e}) "
                                         "or check the data")
            history.steps.append(step)
            history.losses.append(value)
            history.lrs.append(lr)
            if evaluate is not None and ((config.eval_every and step % config.eval_every == 0)
                                         or step == config.steps):
                history.eval_steps.append(step)
                history.evals.append(run_evaluation(model, evaluate))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{value:.3f}", lr=f"{lr:.1e}")
    finally:
        if bar is not None:
            bar.close()
        history.seconds = time.perf_counter() - start
        model.eval()
    return history
