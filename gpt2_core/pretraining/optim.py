"""How weights move: AdamW with weight decay on matrices only, and warmup + cosine learning rates.

:class:`OptimConfig` holds the settings every training run shares, pretraining (``TrainConfig``) and
fine-tuning (``FinetuneConfig``) alike.

References: Kingma & Ba (2015), "Adam: A Method for Stochastic Optimization"; Loshchilov & Hutter
(2019), "Decoupled Weight Decay Regularization" (AdamW); Loshchilov & Hutter (2017), "SGDR" (cosine
schedule).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from torch import nn

from ..checks import check_int, check_number
from ..model.gpt import unwrap_model


@dataclass(kw_only=True)
class OptimConfig:
    """Settings every run shares. ``min_lr`` defaults to ``lr / 10``; ``grad_clip=None`` does not clip."""

    lr: float
    min_lr: float | None = None
    warmup_steps: int = 0
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float | None = 1.0
    grad_accum: int = 1  # micro-batches whose gradients add up to one optimizer step
    bf16: bool | None = None  # bf16 autocast; None: on for CUDA, off elsewhere
    seed: int = 123
    progress: bool = True

    def _check(self, steps: int, steps_name: str) -> None:
        check_int(steps, steps_name, low=1)
        check_int(self.warmup_steps, "warmup_steps", low=0)
        check_int(self.grad_accum, "grad_accum", low=1)
        if self.warmup_steps > steps:
            raise ValueError(f"warmup_steps={self.warmup_steps} is longer than {steps_name}={steps}; shorten it")
        check_number(self.lr, "lr", positive=True)
        if self.min_lr is None:
            self.min_lr = self.lr / 10
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"need 0 <= min_lr <= lr, got min_lr={self.min_lr}, lr={self.lr}")
        check_number(self.weight_decay, "weight_decay", low=0.0)
        if self.grad_clip is not None:
            check_number(self.grad_clip, "grad_clip (None: no clipping)", positive=True)
        self.betas = tuple(self.betas)  # JSON round-trips give lists


def on_for_cuda(setting: bool | None, device: torch.device) -> bool:
    """A ``bf16``/``compile`` setting as training applies it: None means on for CUDA, off elsewhere."""
    return device.type == "cuda" if setting is None else setting


def autocast_for(config: OptimConfig, device: torch.device):  # noqa: ANN201 - a context-manager factory
    """What each forward of a run with ``config`` on ``device`` runs in: bf16 autocast, or nothing."""
    if on_for_cuda(config.bf16, device):
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Split parameters into a decayed group (matrices, embeddings included) and an undecayed one.

    Weight decay pulls weights towards zero. That is a sensible prior for the matrices that mix
    features (linear layers, and the token/position embeddings, which GPT-2 ties to the output
    layer, so they act as a matrix too). Biases and LayerNorm gains/offsets are 1-D: they shift and
    scale, there are few of them, and pulling a LayerNorm gain towards 0 would fight the
    normalisation itself. So: decay every parameter with ``dim >= 2``, nothing else.
    ``named_parameters()`` lists a tied weight once, so it is decayed once.
    """
    decay, no_decay = [], []
    for _, p in unwrap_model(model).named_parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.1,
                   betas: tuple[float, float] = (0.9, 0.95)) -> torch.optim.AdamW:
    """AdamW (Loshchilov & Hutter, 2019) with weight decay on matrices only (see :func:`param_groups`).

    On CPU and CUDA torch's fused kernel is used (one pass over all parameters; about 3x faster
    than the default per-parameter loop on CPU); elsewhere torch's default implementation.
    """
    check_number(lr, "lr", positive=True)
    check_number(weight_decay, "weight_decay", low=0.0)
    groups = param_groups(model, weight_decay)
    if not any(g["params"] for g in groups):
        raise ValueError("the model has no trainable parameters; unfreeze some (requires_grad=True) first")
    fused = next(model.parameters()).device.type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused or None)


def lr_schedule(step: int, max_steps: int, warmup_steps: int, max_lr: float, min_lr: float) -> float:
    """Learning rate at ``step`` (0-based): linear warmup to ``max_lr``, then cosine decay to ``min_lr``.

    Warmup: ``max_lr * (step + 1) / warmup_steps`` for the first ``warmup_steps`` steps (never 0, so
    step 0 already learns). Then half a cosine from ``max_lr`` at ``warmup_steps`` down to ``min_lr``
    at ``max_steps``; after ``max_steps`` it stays at ``min_lr``.
    """
    check_int(step, "step", low=0)
    check_int(max_steps, "max_steps", low=1)
    check_int(warmup_steps, "warmup_steps", low=0)
    if warmup_steps > max_steps:
        raise ValueError(f"warmup_steps={warmup_steps} is longer than max_steps={max_steps}; shorten the warmup")
    if not 0 <= min_lr <= max_lr:
        raise ValueError(f"need 0 <= min_lr <= max_lr, got min_lr={min_lr}, max_lr={max_lr}")
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def make_scheduler(optimizer: torch.optim.Optimizer, max_steps: int, warmup_steps: int, max_lr: float,
                   min_lr: float) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` following :func:`lr_schedule` (its state goes into checkpoints).

    The optimizer's base lr must be ``max_lr``: LambdaLR multiplies the base lr by the lambda.
    """
    lr_schedule(0, max_steps, warmup_steps, max_lr, min_lr)  # validate once, up front
    for group in optimizer.param_groups:
        group["lr"] = max_lr
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_schedule(s, max_steps, warmup_steps, max_lr, min_lr) / max_lr)


def optimizer_for(model: nn.Module, config: OptimConfig, steps: int
                  ) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """The AdamW optimizer and warmup + cosine schedule of ``config`` for a run of ``steps`` steps."""
    optimizer = make_optimizer(model, config.lr, config.weight_decay, config.betas)
    return optimizer, make_scheduler(optimizer, steps, config.warmup_steps, config.lr, config.min_lr)
