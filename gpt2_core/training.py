"""Pretraining: next-token loss, AdamW with weight-decay groups, warmup + cosine LR, and a training loop.

The loop (:func:`train`) is one function that runs the same way on a laptop CPU, on a GPU (bf16
autocast and ``torch.compile`` switch on there by default) and under ``torchrun`` with
DistributedDataParallel (one process per device; each process sees its own slice of every global
batch, gradients are averaged across processes, only rank 0 prints and writes checkpoints).

Resuming is exact: the data order is a pure function of ``(seed, step)`` (each epoch's permutation is
drawn from a generator seeded with ``seed + epoch``), so a resumed run skips straight to the batch it
would have seen next, and the checkpoint restores weights, optimizer, LR schedule and RNG states.
On CPU a run stopped at step k and resumed to step n gives the very same losses as one that never
stopped. To keep that promise a resumed run must be the same run: the settings that change it (batch
size, seed, schedule, processes, data, ...) are saved in the checkpoint and compared on resume; a
difference is an error unless ``TrainConfig.allow_config_change`` is set, and then it is printed.

Everything that can be checked before the first step is (output directory, resume checkpoint, batch
size against the data), so a bad run fails in seconds, not at its end. A step whose loss is not
finite stops the run with a FloatingPointError before that step's update is applied or saved.
Under torchrun each process draws its dropout masks from its own stream, re-seeded every step from
``(seed, rank, step)``, so masks differ across processes and a resumed run repeats them exactly.

References: Kingma & Ba (2015), "Adam: A Method for Stochastic Optimization"; Loshchilov & Hutter
(2019), "Decoupled Weight Decay Regularization" (AdamW); Loshchilov & Hutter (2017), "SGDR" (cosine
schedule); Radford et al. (2019), "Language Models are Unsupervised Multitask Learners" (GPT-2).
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

from .checkpoint import check_checkpoint_path, checkpoint_info, load_checkpoint, save_checkpoint
from .model import GPTModel, unwrap_model

# ---------------------------------------------------------------------------------------------
# Loss
# ---------------------------------------------------------------------------------------------


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def calc_loss_batch(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the model's next-token predictions: ``inputs`` (B, T) -> ``targets`` (B, T).

    ``targets[b, t]`` is the token that follows ``inputs[b, t]``; the loss averages
    ``-log p(target | tokens so far)`` over all B * T positions.
    """
    for name, t in (("inputs", inputs), ("targets", targets)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of token ids, got {type(t).__name__}")
    if inputs.shape != targets.shape:
        raise ValueError(f"inputs {tuple(inputs.shape)} and targets {tuple(targets.shape)} must have the same "
                         "shape (targets are the inputs shifted by one token)")
    device = _model_device(model)
    inputs, targets = inputs.to(device), targets.to(device)
    if isinstance(unwrap_model(model), GPTModel):
        # the model computes the loss fused with its LM head (same value, less time and memory)
        return model(inputs, targets=targets)
    logits = model(inputs)
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def calc_loss_loader(model: nn.Module, loader: DataLoader, num_batches: int | None = None) -> float:
    """Average :func:`calc_loss_batch` over the first ``num_batches`` batches of ``loader`` (all if None).

    Runs under ``torch.no_grad()``; it does not switch the model to eval mode (do that yourself, so
    dropout is off). Returns NaN for an empty loader.
    """
    if num_batches is not None and (isinstance(num_batches, bool) or not isinstance(num_batches, int)
                                    or num_batches < 1):
        raise ValueError(f"num_batches must be a positive int or None (all batches), got {num_batches!r}")
    total, count = 0.0, 0
    with torch.no_grad():
        for i, (inputs, targets) in enumerate(loader):
            if num_batches is not None and i >= num_batches:
                break
            total += calc_loss_batch(model, inputs, targets).item()
            count += 1
    return total / count if count else float("nan")


def perplexity(loss: float) -> float:
    """exp(loss): the number of equally likely tokens the model is, on average, choosing between."""
    return math.exp(loss)


# ---------------------------------------------------------------------------------------------
# Optimizer and learning-rate schedule
# ---------------------------------------------------------------------------------------------


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
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a number >= 0, got {weight_decay!r}")
    groups = param_groups(model, weight_decay)
    if not any(g["params"] for g in groups):
        raise ValueError("the model has no trainable parameters; unfreeze some (requires_grad=True) first")
    fused = _model_device(model).type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused or None)


def lr_schedule(step: int, max_steps: int, warmup_steps: int, max_lr: float, min_lr: float) -> float:
    """Learning rate at ``step`` (0-based): linear warmup to ``max_lr``, then cosine decay to ``min_lr``.

    Warmup: ``max_lr * (step + 1) / warmup_steps`` for the first ``warmup_steps`` steps (never 0, so
    step 0 already learns). Then half a cosine from ``max_lr`` at ``warmup_steps`` down to ``min_lr``
    at ``max_steps``; after ``max_steps`` it stays at ``min_lr``.
    """
    for name, value in (("step", step), ("max_steps", max_steps), ("warmup_steps", warmup_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
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


# ---------------------------------------------------------------------------------------------
# Distributed helpers (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)
# ---------------------------------------------------------------------------------------------


def setup_distributed(device: torch.device | None = None) -> tuple[int, int, torch.device]:
    """Join the process group when launched by torchrun; return ``(rank, world_size, device)``.

    Without torchrun (no ``WORLD_SIZE`` > 1 in the environment) this does nothing and returns
    ``(0, 1, device or get_device())``. Uses NCCL with one GPU per process, gloo on CPU.
    """
    from .profile import get_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 and not dist.is_initialized():
        return 0, 1, device or get_device()
    if not dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available() and (device is None or device.type == "cuda"):
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", device_id=device)
        else:
            device = torch.device("cpu")
            dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size(), device or get_device()


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_reduce_mean(value: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= world
    return value


# ---------------------------------------------------------------------------------------------
# Data order: a pure function of (seed, batch number), so resuming needs no sampler state
# ---------------------------------------------------------------------------------------------


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


def eval_loader(dataset: Dataset, batch_size: int, num_batches: int | None) -> Iterator:
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


# ---------------------------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """Everything :func:`train` needs besides the model and the data.

    ``max_steps`` is the length of the LR schedule; ``stop_at_step`` ends this run earlier (a run can
    then be resumed to ``max_steps``). ``bf16``/``compile`` ``None`` mean "on for CUDA, off
    elsewhere". ``out_dir`` is a checkpoint directory, written every ``checkpoint_every`` steps (0:
    only at the end) when set; ``resume_from`` loads one before training, refusing settings that
    differ from the saved run's unless ``allow_config_change`` (then the new settings apply).
    """

    max_steps: int
    lr: float = 5e-4
    min_lr: float | None = None  # default lr / 10
    warmup_steps: int = 0
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float | None = 1.0
    grad_accum: int = 1
    eval_every: int = 0  # 0: evaluate only at the end
    eval_batches: int | None = 10
    seed: int = 123
    shuffle: bool = True
    bf16: bool | None = None
    compile: bool | None = None
    out_dir: str | None = None
    checkpoint_every: int = 0
    resume_from: str | None = None
    stop_at_step: int | None = None
    progress: bool = True
    # resuming with settings that change the run (see EXACT_SETTINGS) is an error unless this is set
    allow_config_change: bool = False

    def __post_init__(self) -> None:
        ints = {"max_steps": 1, "warmup_steps": 0, "grad_accum": 1, "eval_every": 0, "checkpoint_every": 0}
        for name, low in ints.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"TrainConfig.{name} must be an int >= {low}, got {value!r}")
        if self.warmup_steps > self.max_steps:
            raise ValueError(f"warmup_steps={self.warmup_steps} > max_steps={self.max_steps}; shorten the warmup")
        if self.min_lr is None:
            self.min_lr = self.lr / 10
        lr_schedule(0, self.max_steps, self.warmup_steps, self.lr, self.min_lr)
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None (no clipping), got {self.grad_clip!r}")
        if self.eval_batches is not None and (not isinstance(self.eval_batches, int) or self.eval_batches < 1):
            raise ValueError(f"eval_batches must be a positive int or None (whole split), got {self.eval_batches!r}")
        if self.stop_at_step is not None and not 0 < self.stop_at_step <= self.max_steps:
            raise ValueError(f"stop_at_step must be in 1..max_steps={self.max_steps}, got {self.stop_at_step!r}")
        if self.checkpoint_every and self.out_dir is None:
            raise ValueError("checkpoint_every is set but out_dir is not; give out_dir (a checkpoint directory)")
        self.betas = tuple(self.betas)  # JSON round-trips give lists


@dataclass
class History:
    """What a run measured. Per optimizer step: ``steps``, ``losses`` (training loss of that step's
    global batch), ``lrs``, ``tokens`` (tokens seen after it). Per evaluation: ``eval_steps``,
    ``eval_tokens``, ``train_losses`` and ``val_losses`` (eval mode, fixed batches). ``seconds``: wall time
    of the run(s), evaluations included; ``step_seconds``: the time of each optimizer step alone (its
    batches, forward, backward and update; no evaluation or checkpoint), one per step of the runs that
    recorded it (the last ``len(step_seconds)`` steps: older checkpoints did not)."""

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval_tokens: list[int] = field(default_factory=list)
    train_losses: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    step_seconds: list[float] = field(default_factory=list)

    @property
    def tokens_seen(self) -> int:
        return self.tokens[-1] if self.tokens else 0

    @property
    def tokens_per_second(self) -> float:
        """Tokens over the whole wall time: evaluations, checkpoints and compile warm-up included."""
        return self.tokens_seen / self.seconds if self.seconds > 0 else float("nan")

    @property
    def steady_tokens_per_second(self) -> float:
        """Tokens per second of a typical training step: the median over the timed steps of each step's
        tokens / seconds. The median leaves out the few slow steps (torch.compile's first steps, a
        resumed run's warm-up), wherever they fall; evaluations and checkpoints are not in the step times
        at all. NaN when no step was timed."""
        timed = len(self.step_seconds)
        if not timed:
            return float("nan")
        before = [0, *self.tokens][-timed - 1:-1]  # tokens seen before each timed step
        rates = [(after - b) / max(sec, 1e-12)
                 for after, b, sec in zip(self.tokens[-timed:], before, self.step_seconds, strict=True)]
        return statistics.median(rates)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> History:
        return cls(**data)


def _dataset_of(data: DataLoader | Dataset, what: str) -> tuple[Dataset, int | None, bool]:
    if isinstance(data, DataLoader):
        return data.dataset, data.batch_size, isinstance(data.sampler, RandomSampler)
    if isinstance(data, Dataset):
        return data, None, True
    raise TypeError(f"{what} must be a DataLoader (e.g. from create_dataloader) or a Dataset, "
                    f"got {type(data).__name__}")


def evaluate(model: nn.Module, train_ds: Dataset, val_ds: Dataset | None, batch_size: int,
             num_batches: int | None, autocast: contextlib.AbstractContextManager | None = None
             ) -> tuple[float, float]:
    """(train loss, val loss) in eval mode on fixed batches (see :func:`eval_loader`); restores the mode."""
    was_training = model.training
    model.eval()
    with autocast or contextlib.nullcontext():
        train_loss = calc_loss_loader(model, eval_loader(train_ds, batch_size, num_batches))
        val_loss = (calc_loss_loader(model, eval_loader(val_ds, batch_size, num_batches))
                    if val_ds is not None else float("nan"))
    model.train(was_training)
    return train_loss, val_loss


class TrainSetupError(ValueError):
    """What :func:`train` found wrong before its first step (nothing was trained or written)."""


# What makes a resumed run differ from the uninterrupted one: these TrainConfig fields, and facts of
# the run that train() records beside them (effective shuffle, batch size per process, number of
# processes, training windows and their length, bf16). The other fields (progress, out_dir,
# checkpoint_every, stop_at_step, eval_every, eval_batches, compile) change what is reported or
# saved, not the trained weights, so they never block a resume.
EXACT_SETTINGS = ("max_steps", "lr", "min_lr", "warmup_steps", "weight_decay", "betas", "grad_clip",
                  "grad_accum", "seed")


def _run_settings(config: TrainConfig, **facts: object) -> dict:
    settings = {name: getattr(config, name) for name in EXACT_SETTINGS}
    settings["betas"] = list(config.betas)  # as JSON gives it back
    return {**settings, **facts}


def _changed_settings(saved: dict, now: dict) -> list[str]:
    """``name: old -> new`` for every setting the checkpoint recorded that differs now."""
    return [f"{k}: {saved[k]!r} -> {now[k]!r}" for k in now if k in saved and saved[k] != now[k]]


def _check_out_dir(out_dir: str) -> None:
    try:
        check_checkpoint_path(out_dir)
    except ValueError as err:
        raise TrainSetupError(f"out_dir: {err}") from None


def _resume_info(resume_from: str) -> dict:
    """The checkpoint's JSON parts, read before anything is built, so a bad path fails first."""
    if not Path(resume_from).is_dir():
        raise TrainSetupError(f"resume_from={resume_from!r}: no checkpoint directory there; check the path, "
                              "or leave resume_from unset to start a new run")
    try:
        return checkpoint_info(resume_from)
    except (OSError, ValueError) as err:
        raise TrainSetupError(f"resume_from={resume_from!r} is not a usable checkpoint: {err}") from None


def _apply_changed_settings(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LambdaLR,
                            config: TrainConfig) -> None:
    """After loading an old run's optimizer/scheduler state, put this run's hyper-parameters back in
    (load_state_dict restores the saved lr, betas and weight decay, which were allowed to change)."""
    decays = (config.weight_decay, 0.0)  # the groups of param_groups(): decayed, then not
    lr = lr_schedule(scheduler.last_epoch, config.max_steps, config.warmup_steps, config.lr, config.min_lr)
    for group, decay in zip(optimizer.param_groups, decays, strict=True):
        group.update(weight_decay=decay, betas=config.betas, initial_lr=config.lr, lr=lr)
    scheduler.base_lrs = [config.lr] * len(optimizer.param_groups)
    scheduler._last_lr = [lr] * len(optimizer.param_groups)  # what get_last_lr() reports


def _dropout_seed(seed: int, rank: int, step: int) -> int:
    """Seed of process ``rank``'s torch RNG for ``step`` under DDP: distinct per rank and step, and a pure
    function of them, so dropout differs across processes and a resumed run draws the same masks."""
    return ((seed * 1_000_003 + rank) * 1_000_000_007 + step) % 2**63


def on_for_cuda(setting: bool | None, device: torch.device) -> bool:
    """A ``bf16``/``compile`` setting as :func:`train` applies it: None means on for CUDA, off elsewhere."""
    return device.type == "cuda" if setting is None else setting


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer,
               micro_batches: Sequence[tuple[torch.Tensor, torch.Tensor]], *,
               autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
               grad_clip: float | None = 1.0, scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
               loss_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> float:
    """One optimizer step of :func:`train`: forward and backward over each ``(inputs, targets)`` micro-batch
    (gradients add up; under DDP only the last one all-reduces), then clip, update and step ``scheduler``.

    Returns the step's loss, the mean over micro-batches (and processes). Reading that number is the
    step's only host sync, and it comes before the update: when the loss is not finite, nothing is
    updated (weights, optimizer, scheduler and gradients are left as they are) and the caller decides.
    ``loss_fn(model, inputs, targets)`` (None: :func:`calc_loss_batch`); the benchmark passes
    another model's loss through the same step. ``autocast`` makes the context each forward runs in.
    """
    if not micro_batches:
        raise ValueError("train_step needs at least one (inputs, targets) micro-batch")
    _, world = _dist_info()
    loss_fn = loss_fn or calc_loss_batch
    n = len(micro_batches)
    loss_sum = torch.zeros((), device=_model_device(model))
    for micro, (inputs, targets) in enumerate(micro_batches):
        # DDP: only the last micro-batch all-reduces gradients; the others just accumulate.
        sync = micro == n - 1 or world == 1
        with (contextlib.nullcontext() if sync else model.no_sync()), autocast():
            loss = loss_fn(model, inputs, targets) / n
        loss.backward()
        loss_sum += loss.detach()
    # every rank sees the same all-reduced loss, so all stop together
    step_loss = _all_reduce_mean(loss_sum, world).item()
    if not math.isfinite(step_loss):
        return step_loss
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return step_loss


def _divergence_error(step: int, loss: float, config: TrainConfig) -> FloatingPointError:
    kept = (f"; the last checkpoint in {config.out_dir} was not overwritten" if config.out_dir else "")
    return FloatingPointError(
        f"the training loss at step {step} is {loss} (not finite): the run diverged, and this step's update "
        f"was not applied{kept}. Lower the learning rate (lr={config.lr:g}), lengthen the warmup or keep "
        "gradient clipping on, then start again (or resume from the last checkpoint with "
        "allow_config_change=True)")


def train(model: nn.Module, train_data: DataLoader | Dataset, val_data: DataLoader | Dataset | None,
          config: TrainConfig, batch_size: int | None = None) -> History:
    """Train ``model`` for ``config.max_steps`` optimizer steps; return the :class:`History`.

    ``train_data``/``val_data`` are DataLoaders (their dataset and batch size are used; the order
    comes from :class:`StepBatches` so runs resume exactly) or Datasets with ``batch_size`` given.
    Under torchrun, ``batch_size`` is per process and the model is wrapped in DDP here.

    Raises :class:`TrainSetupError` (a ValueError) before the first step for a bad ``out_dir``, a missing
    or invalid ``resume_from``, resume settings that differ (see ``allow_config_change``), or too little
    data for one batch; FloatingPointError at the first step whose loss is not finite.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    train_ds, loader_bs, loader_shuffles = _dataset_of(train_data, "train_data")
    val_ds = _dataset_of(val_data, "val_data")[0] if val_data is not None else None
    batch_size = batch_size or loader_bs
    if not batch_size:
        raise ValueError("batch_size is unknown: pass DataLoaders or give batch_size=")
    shuffle = config.shuffle and (loader_shuffles or not isinstance(train_data, DataLoader))

    rank, world = _dist_info()
    main = rank == 0
    raw = unwrap_model(model)
    device = _model_device(raw)
    cuda = device.type == "cuda"
    use_bf16, use_compile = on_for_cuda(config.bf16, device), on_for_cuda(config.compile, device)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if use_bf16 else contextlib.nullcontext

    # Fail early: everything below is checked before any training work (every rank checks the same
    # things, so under torchrun all processes stop together instead of some waiting forever).
    if config.out_dir is not None:
        _check_out_dir(config.out_dir)
    try:
        batches = StepBatches(train_ds, batch_size, config.seed, shuffle, rank, world)
    except ValueError as err:
        raise TrainSetupError(str(err)) from None
    window = _window_length(train_ds)
    context = getattr(getattr(raw, "cfg", None), "context_length", None)
    if context is not None and window > context:
        raise TrainSetupError(f"training windows have {window} tokens but the model's context_length is "
                              f"{context}; build the data with context_length <= {context}")
    settings = _run_settings(config, shuffle=shuffle, batch_size=batch_size, world_size=world,
                             train_windows=len(train_ds), window_length=window, bf16=use_bf16)
    changes: list[str] = []
    if config.resume_from is not None:
        saved = _resume_info(config.resume_from)["extra"].get("run_settings", {})
        changes = _changed_settings(saved, settings)
        if changes and not config.allow_config_change:
            raise TrainSetupError(f"resuming {config.resume_from} with other settings than the saved run "
                                  f"({'; '.join(changes)}) would not continue the same run; use the saved "
                                  "settings, or set allow_config_change=True (--allow-config-change) to "
                                  "continue with the new ones")

    optimizer = make_optimizer(raw, config.lr, config.weight_decay, config.betas)
    scheduler = make_scheduler(optimizer, config.max_steps, config.warmup_steps, config.lr, config.min_lr)
    history, step = History(), 0
    if config.resume_from is not None:
        try:
            state = load_checkpoint(config.resume_from, raw, optimizer, scheduler, map_location=device)
        except ValueError as err:  # e.g. the model's config differs from the checkpoint's
            raise TrainSetupError(f"cannot resume from {config.resume_from}: {err}") from None
        step = state["step"]
        history = History.from_dict(state["extra"].get("history", History().to_dict()))
        if changes:
            _apply_changed_settings(optimizer, scheduler, config)
            if main:
                print(f"resuming {config.resume_from} at step {step} with changed settings: {'; '.join(changes)}")
    if world > 1:
        ddp_ids = [device.index] if cuda else None
        model = nn.parallel.DistributedDataParallel(raw, device_ids=ddp_ids)
    else:
        model = raw
    if use_compile:
        model = torch.compile(model)

    tokens_per_step = batch_size * world * config.grad_accum * window
    stop = config.stop_at_step or config.max_steps
    bar = _progress(step, stop, config.progress and main)

    def save() -> None:
        if main and config.out_dir is not None:

            save_checkpoint(config.out_dir, raw, optimizer, scheduler, step,
                            extra={"history": history.to_dict(), "train_config": _jsonable(config),
                                   "run_settings": settings})
        if world > 1:
            dist.barrier()  # nobody races ahead while rank 0 writes

    model.train()
    start = time.perf_counter() - history.seconds
    while step < stop:
        if world > 1:
            torch.manual_seed(_dropout_seed(config.seed, rank, step))
        lr = optimizer.param_groups[0]["lr"]
        step_start = time.perf_counter()
        micro_batches = [batches.batch(step * config.grad_accum + m) for m in range(config.grad_accum)]
        step_loss = train_step(model, optimizer, micro_batches, autocast=autocast, grad_clip=config.grad_clip,
                               scheduler=scheduler)
        if not math.isfinite(step_loss):  # not applied: the weights (and any checkpoint) stay the last good ones
            if bar is not None:
                bar.close()
            raise _divergence_error(step + 1, step_loss, config)
        history.step_seconds.append(time.perf_counter() - step_start)
        step += 1

        history.steps.append(step)
        history.losses.append(step_loss)
        history.lrs.append(lr)
        history.tokens.append(history.tokens_seen + tokens_per_step)
        if (config.eval_every and step % config.eval_every == 0) or step == stop:
            # every rank evaluates the same fixed batches, so no communication is needed
            tr, va = evaluate(model, train_ds, val_ds, batch_size, config.eval_batches, autocast())
            history.eval_steps.append(step)
            history.eval_tokens.append(history.tokens_seen)
            history.train_losses.append(tr)
            history.val_losses.append(va)
            if bar is not None:
                bar.write(f"step {step:>5}  tokens {history.tokens_seen:>10,}  train {tr:.3f}  val {va:.3f}")
        history.seconds = time.perf_counter() - start
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.3f}", lr=f"{lr:.2e}")
        if config.checkpoint_every and step % config.checkpoint_every == 0 and step != stop:
            save()
    if bar is not None:
        bar.close()
    if config.out_dir is not None:
        save()
    raw.eval()
    return history


def _window_length(dataset: Dataset) -> int:
    return int(dataset[0][0].numel())


def _progress(initial: int, total: int, enabled: bool):  # noqa: ANN202 - a tqdm bar or None
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="training", unit="step")


def _jsonable(config: TrainConfig) -> dict:
    data = asdict(config)
    data["betas"] = list(config.betas)
    return data
