"""The one loop around :func:`~gpt2_core.pretraining.step.train_step` that every run shares: pretraining
(:func:`~gpt2_core.pretraining.loop.train`), fine-tuning (:func:`~gpt2_core.finetuning.loop.finetune`) and
GRPO (:func:`~gpt2_core.finetuning.grpo.train_grpo`).

The runs differ in what one step is (a batch of the token stream; a batch of the task's loader; sampling
answers, then a few updates on them) and in what they measure, so those come in as functions. Everything
around them is the same, and lives here once, in :func:`run_steps`:

- the step counter and the progress bar (the loss and learning rate of each step);
- the record of every step in a :class:`RunHistory`: its number, loss and learning rate, the steps that
  were evaluated, the wall time;
- an evaluation every ``eval_every`` steps and after the last one;
- one rule for a loss that is not finite. ``train_step`` has already refused to apply that update, so the
  weights are the last good ones; the run stops with a FloatingPointError that names the step, the loss and
  the learning rate, and says what to do (the caller's ``hint``).

"Evaluate" means one thing in the package: compute numbers about the model without training it, in eval
mode and without gradients. :func:`measure` is how every loop runs a task's ``metrics_fn(model) -> dict``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TypeVar

import torch
from torch import nn
from tqdm.auto import tqdm

from ..model.gpt import eval_mode

MetricsFn = Callable[[nn.Module], dict]


@dataclass
class RunHistory:
    """What every run records. Per step: ``steps``, ``losses``, ``lrs`` (the learning rate the step was taken
    with). Per evaluation: ``eval_steps``. ``seconds``: wall time of the run, evaluations included."""

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RunHistory:
        return cls(**data)


H = TypeVar("H", bound=RunHistory)


def measure(model: nn.Module, metrics_fn: MetricsFn) -> dict:
    """``metrics_fn(model)`` in eval mode without gradients (the model's mode restored after, even if it
    fails), checked to be a dict: one evaluation, as every training loop of the package records it."""
    with eval_mode(model), torch.no_grad():
        result = metrics_fn(model)
    if not isinstance(result, dict):
        raise TypeError(f"metrics_fn(model) must return a dict of numbers, got {type(result).__name__}")
    return result


def check_metrics_fn(metrics_fn: object) -> None:
    """The argument check every loop that takes a ``metrics_fn`` shares."""
    if metrics_fn is not None and not callable(metrics_fn):
        raise TypeError("metrics_fn must be a function metrics_fn(model) -> dict of numbers, or None")


def _not_finite_error(step: int, loss: float, lr: float, hint: str) -> FloatingPointError:
    """The one error of a run whose loss stopped being a number."""
    return FloatingPointError(f"the loss at step {step} is {loss} (not finite, lr {lr:.3g}): the run diverged, and "
                              f"this step's update was not applied. {hint}")


def run_steps(model: nn.Module, optimizer: torch.optim.Optimizer, history: H,
              take_step: Callable[[int], Sequence[float]], *, last_step: int, done: int = 0, eval_every: int = 0,
              on_eval: Callable[[int], None] | None = None, after_step: Callable[[int], None] | None = None,
              postfix: Callable[[], dict[str, str]] | None = None, desc: str = "training", progress: bool = True,
              hint: str = "Lower the learning rate or check the data.") -> H:
    """Take steps ``done + 1 .. last_step`` with ``take_step(step)``, recording each in ``history``.

    ``take_step`` returns the losses of the ``train_step`` calls it made (usually one; none when a GRPO
    step found nothing to learn from, recorded as NaN): the step's loss is their mean. It stops at a loss
    that is not finite, and the run stops there. ``on_eval(step)`` records an evaluation, every
    ``eval_every`` steps (0: never) and after ``last_step``; ``after_step(step)`` runs last (a checkpoint).
    ``postfix()`` adds fields to the progress bar. The history's ``seconds`` continue from its value (a
    resumed run); ``model`` is left in eval mode.
    """
    bar = tqdm(total=last_step, initial=done, desc=desc, unit="step", disable=not progress)
    start = time.perf_counter() - history.seconds
    try:
        for step in range(done + 1, last_step + 1):
            lr = optimizer.param_groups[0]["lr"]
            losses = take_step(step)
            for loss in losses:
                if not math.isfinite(loss):
                    raise _not_finite_error(step, loss, lr, hint)
            loss = sum(losses) / len(losses) if losses else float("nan")
            history.steps.append(step)
            history.losses.append(loss)
            history.lrs.append(lr)
            if on_eval is not None and ((eval_every and step % eval_every == 0) or step == last_step):
                history.eval_steps.append(step)
                on_eval(step)
            history.seconds = time.perf_counter() - start
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", **(postfix() if postfix else {}))
            if after_step is not None:
                after_step(step)
    finally:
        bar.close()
        history.seconds = time.perf_counter() - start
        model.eval()
    return history
