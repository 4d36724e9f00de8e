"""Command line: pretrain a GPT on the State of the Union corpus.

    python -m gpt2_core.course.train --preset default --max-steps 240 --out runs/sotu
    python -m gpt2_core.course.train --resume runs/sotu --out runs/sotu        # carry on where it stopped
    torchrun --nproc_per_node=2 -m gpt2_core.course.train --preset tiny --max-steps 50   # DDP, 2 processes

Unset options come from the active profile's course recipe (``gpt2_core.pretraining.recipes.course_recipe``).
Under torchrun ``--batch-size`` is per process; the global batch is ``batch_size * processes * grad_accum``.
Every process builds the same initial model (the seed is shared) and sees the data in the same order
as one process would; dropout differs per process (``train`` seeds it from seed, rank and step).
Bad arguments, a resume with other settings than the saved run (unless ``--allow-config-change``)
and too little text for one batch are usage errors (exit status 2) before anything is trained. The
checkpoint records the tokenizer the run used, so ``python -m gpt2_core.course.generate --checkpoint DIR`` reads it
with the right one.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist

from ..model.config import GPTConfig
from ..model.gpt import GPTModel
from ..pretraining.checkpoint import check_checkpoint_path
from ..pretraining.distributed import setup_distributed
from ..pretraining.flops import mfu, peak_flops, training_flops_per_token
from ..pretraining.loop import TrainSetupError, train
from ..pretraining.optim import on_for_cuda
from ..pretraining.recipes import course_data, course_recipe, course_tokenizer
from ..pretraining.step import perplexity
from ..profile import get_device, profile_name
from .cli import number

POSITIVE_INT, COUNT, POSITIVE, NON_NEGATIVE = (number(int, 0, above=True), number(int, 0),
                                               number(float, 0, above=True), number(float, 0))


def _checkpoint_dir(text: str) -> str:
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"no checkpoint directory at {text!r}; give the --out of an earlier run")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gpt2_core.course.train", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Defaults come from the active profile (GPT2_COURSE_PROFILE).")
    parser.add_argument("--profile", choices=["tiny", "default", "gpt2"], help="recipe to start from")
    parser.add_argument("--preset", help="model shape: tiny, default, gpt2, gpt2-medium, ...")
    parser.add_argument("--context-length", type=POSITIVE_INT, help="tokens per training window")
    parser.add_argument("--batch-size", type=POSITIVE_INT, help="windows per batch (per process under torchrun)")
    parser.add_argument("--max-steps", type=POSITIVE_INT, help="optimizer steps (the LR schedule's length)")
    parser.add_argument("--lr", type=POSITIVE, help="peak learning rate")
    parser.add_argument("--min-lr", type=NON_NEGATIVE, help="final learning rate (default lr/10)")
    parser.add_argument("--warmup", type=COUNT, help="linear warmup steps")
    parser.add_argument("--weight-decay", type=NON_NEGATIVE, help="AdamW weight decay on matrices")
    parser.add_argument("--dropout", type=float, help="dropout rate")
    parser.add_argument("--eval-every", type=COUNT, help="evaluate every N steps (0: only at the end)")
    parser.add_argument("--eval-batches", type=POSITIVE_INT, help="batches per evaluation")
    parser.add_argument("--grad-accum", type=POSITIVE_INT, default=1, help="micro-batches per optimizer step")
    parser.add_argument("--train-chars", type=POSITIVE_INT, help="use only the first N characters of the train split")
    parser.add_argument("--seed", type=int, help="seed for init and data order")
    parser.add_argument("--out", help="checkpoint directory (written at the end and every --save-every steps)")
    parser.add_argument("--save-every", type=COUNT, default=0, help="checkpoint every N steps (needs --out)")
    parser.add_argument("--resume", type=_checkpoint_dir, help="checkpoint directory to resume from")
    parser.add_argument("--allow-config-change", action="store_true",
                        help="resume even though settings differ from the saved run (prints what changed)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the model (default: on for CUDA)")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                        help="bf16 autocast (default: on for CUDA)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.save_every and not args.out:
        parser.error("--save-every needs --out DIR")
    if args.out:
        try:
            check_checkpoint_path(args.out)  # before any work: writable, not a file, not someone else's folder
        except ValueError as err:
            parser.error(f"--out: {err}")
    try:
        profile = args.profile or profile_name()
        get_device()  # GPT2_COURSE_DEVICE names a device that is there
    except ValueError as err:
        parser.error(str(err))

    recipe = course_recipe(profile)
    changes = {"preset": args.preset, "context_length": args.context_length, "batch_size": args.batch_size,
               "max_steps": args.max_steps, "lr": args.lr, "warmup_steps": args.warmup,
               "weight_decay": args.weight_decay, "drop_rate": args.dropout, "eval_every": args.eval_every,
               "eval_batches": args.eval_batches, "train_chars": args.train_chars, "seed": args.seed}
    changes = {k: v for k, v in changes.items() if v is not None}
    if args.lr is not None and args.min_lr is None:
        changes["min_lr"] = args.lr / 10
    if args.min_lr is not None:
        changes["min_lr"] = args.min_lr
    if "preset" in changes and changes["preset"] not in GPTConfig.preset_names():
        parser.error(f"unknown --preset {changes['preset']!r}; choose one of {', '.join(GPTConfig.preset_names())}")
    recipe = dataclasses.replace(recipe, **changes)
    tokenizer = course_tokenizer(profile)
    try:
        model_cfg = recipe.model_config(tokenizer.n_vocab)
        config = recipe.train_config(grad_accum=args.grad_accum, out_dir=args.out, checkpoint_every=args.save_every,
                                     resume_from=args.resume, compile=args.compile, bf16=args.bf16,
                                     progress=not args.no_progress, allow_config_change=args.allow_config_change)
    except (TypeError, ValueError) as err:
        parser.error(str(err))

    rank, world, device = setup_distributed()
    try:
        # the same seed on every process: identical initial weights (DDP also broadcasts rank 0's)
        torch.manual_seed(recipe.seed)
        model = GPTModel(model_cfg).to(device)
        try:
            train_loader, val_loader = course_data(recipe, tokenizer)
        except ValueError as err:  # e.g. --train-chars too small for one window
            parser.error(f"{err} (--train-chars {recipe.train_chars}, --context-length {recipe.context_length})")
        if rank == 0:
            print(f"model {recipe.preset}: {model.num_parameters():,} parameters on {device} x {world} "
                  f"process(es); {len(train_loader.dataset):,} training windows of {recipe.context_length} tokens")
        try:
            history = train(model, train_loader, val_loader, config, tokenizer=tokenizer)
        except TrainSetupError as err:  # found before the first step: a usage error, not a crash
            parser.error(str(err))
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    if rank == 0:
        val = history.val_losses[-1]
        print(f"done: {len(history.steps)} steps, {history.tokens_seen:,} tokens in {history.seconds:.1f} s "
              f"({history.tokens_per_second:,.0f} tokens/s); val loss {val:.3f}, perplexity {perplexity(val):.1f}")
        _print_steady_state(history, model, recipe.context_length, device, world, args.bf16)
        if args.out:
            print(f"checkpoint: {args.out}")
    return 0


def _print_steady_state(history, model, window: int, device: torch.device, world: int,  # noqa: ANN001
                        bf16: bool | None) -> None:
    """The throughput of a typical step (no evaluation, no compile warm-up) and its MFU."""
    steady = history.steady_tokens_per_second
    if not math.isfinite(steady):
        return
    peak, source = peak_flops(device, torch.bfloat16 if on_for_cuda(bf16, device) else torch.float32)
    flops = training_flops_per_token(model.cfg, window, model.num_parameters())
    per = f" per device x {world}" if world > 1 else ""
    print(f"steady state: {steady:,.0f} tokens/s (median of {len(history.step_seconds)} timed steps; evaluation, "
          f"checkpoints and compile warm-up left out); MFU {mfu(steady, flops, peak * world):.1%} of the "
          f"{source}{per}")


if __name__ == "__main__":
    sys.exit(main())
