"""Pretraining: the training loop of chapter 5, on a laptop CPU, a GPU or several under ``torchrun``.

:func:`train` runs the same way on a CPU, on a GPU (bf16 autocast and ``torch.compile`` switch on there
by default) and under ``torchrun`` with DistributedDataParallel (one process per device; each process
sees its own slice of every global batch, gradients are averaged across processes, only rank 0 prints
and writes checkpoints). Every step goes through :func:`gpt2_core.pretraining.step.train_step`, inside the loop
fine-tuning and GRPO use too (:func:`gpt2_core.pretraining.runner.run_steps`).

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

Reference: Radford et al. (2019), "Language Models are Unsupervised Multitask Learners" (GPT-2).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler
from tqdm.auto import tqdm

from ..checks import check_int
from ..model.gpt import unwrap_model
from .batches import StepBatches, eval_batches
from .checkpoint import check_checkpoint_path, checkpoint_info, load_checkpoint, save_checkpoint
from .distributed import dropout_seed, rank_and_world
from .optim import OptimConfig, autocast_for, lr_schedule, on_for_cuda, optimizer_for
from .runner import RunHistory, run_steps
from .step import mean_loss, train_step


@dataclass(kw_only=True)
class TrainConfig(OptimConfig):
    """Everything :func:`train` needs besides the model and the data (the shared settings: OptimConfig).

    ``max_steps`` is the length of the LR schedule; ``stop_at_step`` ends this run earlier (a run can
    then be resumed to ``max_steps``). ``bf16``/``compile`` ``None`` mean "on for CUDA, off
    elsewhere". ``out_dir`` is a checkpoint directory, written every ``checkpoint_every`` steps (0:
    only at the end) when set; ``resume_from`` loads one before training, refusing settings that
    differ from the saved run's unless ``allow_config_change`` (then the new settings apply).
    """

    max_steps: int
    lr: float = 5e-4
    eval_every: int = 0  # 0: evaluate only at the end
    eval_batches: int | None = 10
    shuffle: bool = True
    compile: bool | None = None
    out_dir: str | None = None
    checkpoint_every: int = 0
    resume_from: str | None = None
    stop_at_step: int | None = None
    # resuming with settings that change the run (see EXACT_SETTINGS) is an error unless this is set
    allow_config_change: bool = False

    def __post_init__(self) -> None:
        self._check(self.max_steps, "TrainConfig.max_steps")
        check_int(self.eval_every, "TrainConfig.eval_every", low=0)
        check_int(self.checkpoint_every, "TrainConfig.checkpoint_every", low=0)
        if self.eval_batches is not None:
            check_int(self.eval_batches, "eval_batches (None: the whole split)", low=1)
        if self.stop_at_step is not None and not 0 < self.stop_at_step <= self.max_steps:
            raise ValueError(f"stop_at_step must be in 1..max_steps={self.max_steps}, got {self.stop_at_step!r}")
        if self.checkpoint_every and self.out_dir is None:
            raise ValueError("checkpoint_every is set but out_dir is not; give out_dir (a checkpoint directory)")


@dataclass
class History(RunHistory):
    """What a pretraining run measured: :class:`RunHistory`'s steps, losses (the training loss of each
    step's global batch), learning rates and evaluation steps, and ``tokens`` (tokens seen after each
    step); per evaluation ``eval_tokens``, ``train_losses`` and ``val_losses`` (eval mode, fixed batches);
    ``step_seconds``: the time of each optimizer step alone (its batches, forward, backward and update; no
    evaluation or checkpoint), one per step of the runs that recorded it (the last ``len(step_seconds)``)."""

    tokens: list[int] = field(default_factory=list)
    eval_tokens: list[int] = field(default_factory=list)
    train_losses: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
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


def _dataset_of(data: DataLoader | Dataset, what: str) -> tuple[Dataset, int | None, bool]:
    if isinstance(data, DataLoader):
        return data.dataset, data.batch_size, isinstance(data.sampler, RandomSampler)
    if isinstance(data, Dataset):
        return data, None, True
    raise TypeError(f"{what} must be a DataLoader (e.g. from create_dataloader) or a Dataset, "
                    f"got {type(data).__name__}")


def _split_losses(model: nn.Module, train_ds: Dataset, val_ds: Dataset | None, batch_size: int,
                 num_batches: int | None, autocast: contextlib.AbstractContextManager | None = None
                 ) -> tuple[float, float]:
    """(train loss, val loss) in eval mode on fixed batches (see :func:`eval_batches`)."""
    train_loss = mean_loss(model, eval_batches(train_ds, batch_size, num_batches), autocast=autocast)
    val_loss = (mean_loss(model, eval_batches(val_ds, batch_size, num_batches), autocast=autocast)
                if val_ds is not None else float("nan"))
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


def train(model: nn.Module, train_data: DataLoader | Dataset, val_data: DataLoader | Dataset | None,
          config: TrainConfig, batch_size: int | None = None, tokenizer: Any = None) -> History:
    """Train ``model`` for ``config.max_steps`` optimizer steps; return the :class:`History`.

    ``train_data``/``val_data`` are DataLoaders (their dataset and batch size are used; the order
    comes from :class:`StepBatches` so runs resume exactly) or Datasets with ``batch_size`` given.
    Under torchrun, ``batch_size`` is per process and the model is wrapped in DDP here. ``tokenizer``
    (the one that made the data) is saved with every checkpoint, and needed when ``config.out_dir`` is set.

    Raises :class:`TrainSetupError` (a ValueError) before the first step for a bad ``out_dir`` (or one
    without a tokenizer), a missing or invalid ``resume_from``, resume settings that differ (see
    ``allow_config_change``), or too little data for one batch; FloatingPointError at the first step
    whose loss is not finite.
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

    rank, world = rank_and_world()
    main = rank == 0
    raw = unwrap_model(model)
    device = next(raw.parameters()).device
    use_bf16, use_compile = on_for_cuda(config.bf16, device), on_for_cuda(config.compile, device)
    autocast = autocast_for(config, device)

    # Fail early: everything below is checked before any training work (every rank checks the same
    # things, so under torchrun all processes stop together instead of some waiting forever).
    if config.out_dir is not None:
        try:
            check_checkpoint_path(config.out_dir)
        except ValueError as err:
            raise TrainSetupError(f"out_dir: {err}") from None
        if tokenizer is None:
            raise TrainSetupError("out_dir is set but no tokenizer was given: a checkpoint records the tokenizer "
                                  "its model reads, so pass train(..., tokenizer=the tokenizer of the data)")
    try:
        batches = StepBatches(train_ds, batch_size, config.seed, shuffle, rank, world)
    except ValueError as err:
        raise TrainSetupError(str(err)) from None
    window = int(train_ds[0][0].numel())  # tokens per training window
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

    optimizer, scheduler = optimizer_for(raw, config, config.max_steps)
    history, done = History(), 0
    if config.resume_from is not None:
        try:
            state = load_checkpoint(config.resume_from, raw, optimizer, scheduler, map_location=device)
        except ValueError as err:  # e.g. the model's config differs from the checkpoint's
            raise TrainSetupError(f"cannot resume from {config.resume_from}: {err}") from None
        done = state["step"]
        history = History.from_dict(state["extra"].get("history", History().to_dict()))
        if changes:
            _apply_changed_settings(optimizer, scheduler, config)
            if main:
                print(f"resuming {config.resume_from} at step {done} with changed settings: {'; '.join(changes)}")
    ddp_ids = [device.index] if device.type == "cuda" else None
    model = nn.parallel.DistributedDataParallel(raw, device_ids=ddp_ids) if world > 1 else raw
    if use_compile:
        model = torch.compile(model)
    tokens_per_step = batch_size * world * config.grad_accum * window
    stop = config.stop_at_step or config.max_steps

    def take_step(step: int) -> list[float]:
        if world > 1:  # each process its own dropout masks, the same again when resumed
            torch.manual_seed(dropout_seed(config.seed, rank, step - 1))
        began = time.perf_counter()
        first = (step - 1) * config.grad_accum
        micro_batches = [batches.batch(first + m) for m in range(config.grad_accum)]
        loss = train_step(model, optimizer, micro_batches, autocast=autocast, grad_clip=config.grad_clip,
                          scheduler=scheduler)
        history.step_seconds.append(time.perf_counter() - began)
        history.tokens.append(history.tokens_seen + tokens_per_step)
        return [loss]

    def on_eval(step: int) -> None:
        # every rank evaluates the same fixed batches, so no communication is needed
        tr, va = _split_losses(model, train_ds, val_ds, batch_size, config.eval_batches, autocast())
        history.eval_tokens.append(history.tokens_seen)
        history.train_losses.append(tr)
        history.val_losses.append(va)
        if main and config.progress:
            tqdm.write(f"step {step:>5}  tokens {history.tokens_seen:>10,}  train {tr:.3f}  val {va:.3f}")

    def save(step: int) -> None:
        if main and config.out_dir is not None:
            save_checkpoint(config.out_dir, raw, optimizer, scheduler, step, tokenizer=tokenizer,
                            extra={"history": history.to_dict(), "run_settings": settings,
                                   "train_config": {**asdict(config), "betas": list(config.betas)}})
        if world > 1:
            dist.barrier()  # nobody races ahead while rank 0 writes

    def after_step(step: int) -> None:
        if config.checkpoint_every and step % config.checkpoint_every == 0 and step != stop:
            save(step)

    kept = f"The last checkpoint in {config.out_dir} was not overwritten. " if config.out_dir else ""
    hint = (f"{kept}Lower the learning rate (lr={config.lr:g}), lengthen the warmup or keep gradient clipping on, "
            "then start again (or resume from the last checkpoint with allow_config_change=True).")
    model.train()
    run_steps(raw, optimizer, history, take_step, last_step=stop, done=done, eval_every=config.eval_every,
              on_eval=on_eval, after_step=after_step, desc="training", progress=config.progress and main, hint=hint)
    if config.out_dir is not None:
        save(stop)
    return history

