"""The one language-model loss, the one optimizer step and the one mean loss over batches that every run shares.

Pretraining (:func:`gpt2_core.pretraining.loop.train`), every fine-tune (:func:`gpt2_core.finetuning.loop.finetune`)
and GRPO go through :func:`train_step` (inside :func:`gpt2_core.pretraining.runner.run_steps`), so they share one
rule for a loss that is not finite (the update is not applied), gradient accumulation and bf16 autocast.
A batch is whatever the task's data gives; ``loss_fn(model, batch)`` turns it into a scalar loss.
For language modelling a batch is ``(inputs, targets)`` and the loss is :func:`lm_loss`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..model.gpt import GPTModel, eval_mode, unwrap_model
from .distributed import mean_over_processes, rank_and_world

LossFn = Callable[[nn.Module, Any], torch.Tensor]


def lm_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy of the model's next-token predictions: ``batch = (inputs, targets)``, both (B, T).

    ``targets[b, t]`` is the token that follows ``inputs[b, t]`` (-100: not scored, e.g. a prompt or
    padding); the loss averages ``-log p(target | tokens so far)`` over the scored positions.
    """
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise TypeError(f"a language-model batch is (inputs, targets), got {type(batch).__name__}")
    inputs, targets = batch
    for name, t in (("inputs", inputs), ("targets", targets)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of token ids, got {type(t).__name__}")
    if inputs.shape != targets.shape:
        raise ValueError(f"inputs {tuple(inputs.shape)} and targets {tuple(targets.shape)} must have the same "
                         "shape (targets are the inputs shifted by one token)")
    device = next(model.parameters()).device
    inputs, targets = inputs.to(device), targets.to(device)
    if not bool((targets != -100).any()):
        raise ValueError("every target is -100: nothing to learn from in this batch (is the loss mask right?)")
    if isinstance(unwrap_model(model), GPTModel):
        # the model's forward returns the loss, computed fused with its LM head (same value, less time and memory)
        return model(inputs, targets=targets)
    logits = model(inputs)
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def perplexity(loss: float) -> float:
    """exp(loss): the number of equally likely tokens the model is, on average, choosing between."""
    return math.exp(loss)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, micro_batches: Sequence[Any], *,
               loss_fn: LossFn = lm_loss,
               autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
               grad_clip: float | None = 1.0, scheduler: torch.optim.lr_scheduler.LRScheduler | None = None) -> float:
    """One optimizer step: forward and backward over each micro-batch (gradients add up; under DDP only the
    last one all-reduces), then clip, update and step ``scheduler``.

    Returns the step's loss, the mean over micro-batches (and processes). Reading that number is the
    step's only host sync, and it comes before the update: when the loss is not finite, nothing is
    updated (weights, optimizer, scheduler and gradients are left as they are) and the caller decides.
    ``autocast`` makes the context each forward runs in.
    """
    if not micro_batches:
        raise ValueError("train_step needs at least one micro-batch")
    _, world = rank_and_world()
    n = len(micro_batches)
    loss_sum = torch.zeros((), device=next(model.parameters()).device)
    for micro, batch in enumerate(micro_batches):
        # DDP: only the last micro-batch all-reduces gradients; the others just accumulate.
        sync = micro == n - 1 or world == 1
        with (contextlib.nullcontext() if sync else model.no_sync()), autocast():
            loss = loss_fn(model, batch) / n
        loss.backward()
        loss_sum += loss.detach()
    # every rank sees the same all-reduced loss, so all stop together
    step_loss = mean_over_processes(loss_sum, world).item()
    if not math.isfinite(step_loss):
        return step_loss
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return step_loss


def mean_loss(model: nn.Module, batches: Iterable[Any], loss_fn: LossFn = lm_loss,
              autocast: contextlib.AbstractContextManager | None = None) -> float:
    """The mean of ``loss_fn`` over ``batches`` (batches of equal size: the mean over their examples), in
    eval mode and without gradients; the model's mode is restored. NaN when there is no batch."""
    total, count = 0.0, 0
    with eval_mode(model), torch.no_grad(), autocast or contextlib.nullcontext():
        for batch in batches:
            total += loss_fn(model, batch).item()
            count += 1
    return total / count if count else float("nan")


def token_byte_lengths(tokenizer: Any) -> torch.Tensor:
    """Bytes of text each token id stands for (special tokens: the length of their name)."""
    return torch.tensor([len(tokenizer.decode_single_token_bytes(i)) for i in range(tokenizer.n_vocab)])


def bits_per_byte(model: nn.Module, token_ids: torch.Tensor | Sequence[int], tokenizer: Any,
                  context_length: int | None = None, batch_size: int = 32, max_windows: int | None = None
                  ) -> dict[str, float]:
    """Score ``token_ids`` in non-overlapping windows: mean loss (nats per token) and bits per byte.

    Bits per byte divides the total surprise (in bits) by the bytes of text the predicted tokens stand
    for, so models with different tokenizers can be compared on the same text: a tokenizer with longer
    tokens has a higher loss per token but fewer tokens.
    """
    ids = torch.as_tensor(token_ids, dtype=torch.long).flatten()
    t = context_length or model.cfg.context_length
    n_windows = (ids.numel() - 1) // t
    if max_windows is not None:
        n_windows = min(n_windows, max_windows)
    if n_windows < 1:
        raise ValueError(f"need more than {t} tokens to score one window of {t}, got {ids.numel()}")
    inputs = ids[: n_windows * t].view(n_windows, t)
    targets = ids[1: n_windows * t + 1].view(n_windows, t)
    batches = [(inputs[i:i + batch_size], targets[i:i + batch_size]) for i in range(0, n_windows, batch_size)]
    nats = sum(mean_loss(model, [batch]) * batch[1].numel() for batch in batches)
    n_bytes = int(token_byte_lengths(tokenizer)[targets].sum())
    return {"loss": nats / targets.numel(), "bits_per_byte": nats / math.log(2) / n_bytes,
            "tokens": targets.numel(), "bytes": n_bytes}

