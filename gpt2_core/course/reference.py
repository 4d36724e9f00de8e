"""The pretrained models chapters 6-8 start from: the shipped reference course model, or OpenAI's GPT-2.

A model trained for ten CPU minutes does not transfer: it fine-tunes worse than random weights. One
trained on about 20M tokens does. So the course ships one in ``data/course-model/``, made by the course's
own code from one command::

    python -m gpt2_core.course.reference --out data/course-model     # re-make it (about 55 min on 2 CPU cores)
    python -m gpt2_core.course.reference --check                      # verify the shipped files

The recipe is in code (:data:`gpt2_core.pretraining.recipes.REFERENCE_RECIPE`):

1. a byte-level BPE tokenizer of 8,192 tokens, trained with chapter 1's trainer on the State of the
   Union *training* split (the validation split is never seen);
2. a GPT of the ``default`` profile's shape (4 layers, 256 wide, 4 heads, 128 tokens) trained with
   chapter 5's :func:`~gpt2_core.pretraining.loop.train` on that split, warmup + cosine, seed 123;
3. weights stored as bfloat16 (half the file; the model computes in float32) and scored *after*
   rounding, so the recorded validation figures are those of the shipped weights.

Why this shape and vocabulary: measured on the SOTU split at an equal CPU budget, validation bits per
byte were 1.89 with GPT-2's 50,257 tokens and 1.80 with an 8k BPE trained here; a small vocabulary
also makes every later chapter about 2.5x cheaper per token (the output layer of GPT-2's vocabulary
is 80% of this model's compute), and nearly every token of it occurs in pretraining. 8k rather than
4k keeps most words one token (4.9 bytes per token on SOTU instead of 4.4), which the copying tasks of
chapter 7 need.

The model is a checkpoint (:mod:`gpt2_core.pretraining.checkpoint`) without training state; the shipped
files keep the bytes they were committed with and are each checked against a pinned sha256.
:func:`load_base_model` chooses between it and OpenAI's GPT-2 124M (``GPT2_COURSE_BASE_MODEL``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import tiktoken
import torch

from ..files import sha256
from ..model.gpt import GPTModel
from ..model.hf_weights import WeightsDownloadError, from_pretrained
from ..pretraining.checkpoint import IncompleteCheckpointError, checkpoint_info, load_checkpoint, save_checkpoint
from ..pretraining.loop import train
from ..pretraining.recipes import (
    REFERENCE_RECIPE,
    REFERENCE_SHA256,
    REFERENCE_VOCAB,
    Recipe,
    course_data,
    learner_checkpoint_dir,
    reference_dir,
)
from ..pretraining.step import bits_per_byte
from ..profile import get_device, profile_name
from ..text.bpe import BPETokenizer
from ..text.corpus import sotu_text
from ..text.ranks import ENDOFTEXT, gpt2_encoding, make_encoding
from ..text.windows import encode_text

HISTORY_FILE = "history.json"  # the shipped model's training history (a re-made one keeps it in its checkpoint)
CHECK_WINDOWS = 16  # validation windows re-scored by the test of the shipped files
BASE_MODEL_ENV = "GPT2_COURSE_BASE_MODEL"
BASE_MODELS = ("reference", "gpt2", "chapter5")


class ReferenceModelError(RuntimeError):
    """The shipped reference model is missing or does not match its pinned hash."""


def build_reference(out: str | os.PathLike | None = None, recipe: Recipe = REFERENCE_RECIPE,
                    vocab_size: int = REFERENCE_VOCAB, device: torch.device | str | None = None,
                    progress: bool = True, check_windows: int = CHECK_WINDOWS, val_windows: int | None = None) -> dict:
    """Make the reference model from scratch with ``recipe`` and write it to ``out``; return what its
    config records (recipe, training, validation figures).

    The recorded validation figure scores the whole validation split (``val_windows=None``, what the
    shipped model reports); a test bounds it to its first ``val_windows`` windows, which is most of the
    work for a small model."""
    out = Path(out) if out is not None else reference_dir()
    device = torch.device(device) if device is not None else get_device()
    tokenizer = BPETokenizer.train(sotu_text("train"), vocab_size, special_tokens=(ENDOFTEXT,))
    enc = make_encoding(tokenizer.ranks, tokenizer.special_tokens, tokenizer.pattern)
    train_loader, val_loader = course_data(recipe, enc)
    if progress:
        print(f"tokenizer: {enc.n_vocab:,} tokens; train {train_loader.dataset.num_tokens:,} tokens, "
              f"val {val_loader.dataset.num_tokens:,} tokens; training on {device}")
    torch.manual_seed(recipe.seed)
    model = GPTModel(recipe.model_config(enc.n_vocab)).to(device)
    history = train(model, train_loader, val_loader, recipe.train_config(progress=progress))

    # Round to bfloat16 first, so every recorded figure is that of the shipped weights.
    model = model.cpu().to(torch.bfloat16).float()
    val_ids = torch.tensor(encode_text(sotu_text("val"), enc))
    info = {
        "recipe": {**recipe.to_dict(), "vocab_size": vocab_size, "storage_dtype": "bfloat16"},
        "trained": {"steps": len(history.steps), "tokens": history.tokens_seen, "seconds": round(history.seconds, 1),
                    "device": str(device), "torch": torch.__version__},
        "val": {**bits_per_byte(model, val_ids, enc, max_windows=val_windows),
                **({"windows": val_windows} if val_windows is not None else {})},
        "val_check": {"windows": check_windows, **bits_per_byte(model, val_ids, enc, max_windows=check_windows)},
    }
    save_checkpoint(out, model.to(torch.bfloat16), tokenizer=enc, extra={"history": history.to_dict()}, info=info)
    if progress:
        print(f"validation: loss {info['val']['loss']:.4f} nats/token, {info['val']['bits_per_byte']:.4f} "
              f"bits/byte; written to {out}")
    return info


def load_reference(device: torch.device | str | None = None, path: str | os.PathLike | None = None,
                   verify: bool = True) -> tuple[GPTModel, tiktoken.Encoding]:
    """(model, tokenizer): the reference course model in eval mode on ``device``, and its tokenizer.

    The two always travel together: the model's token ids mean nothing with another tokenizer.
    ``verify`` checks every file against its pinned sha256 first (pass False for a model you re-made).
    """
    path = Path(path) if path is not None else reference_dir()
    try:
        loaded = load_checkpoint(path, restore_rng=False, expected_sha256=REFERENCE_SHA256 if verify else None)
    except (FileNotFoundError, IncompleteCheckpointError) as err:
        raise ReferenceModelError(f"{err}. The reference model ships in the repository (git checkout "
                                  "data/course-model) or can be re-made with `python -m gpt2_core.course.reference "
                                  "--out data/course-model`") from None
    except ValueError as err:
        raise ReferenceModelError(f"{err}. Restore it with `git checkout data/course-model`, or pass "
                                  "verify=False for a model you re-made yourself") from None
    device = torch.device(device) if device is not None else get_device()
    return loaded["model"].float().to(device).eval(), loaded["tokenizer"]


def reference_info(path: str | os.PathLike | None = None) -> dict:
    """What the reference model's config records: model config, recipe, training, validation figures."""
    path = Path(path) if path is not None else reference_dir()
    return checkpoint_info(path)["meta"]


def reference_history(path: str | os.PathLike | None = None) -> dict:
    """The reference model's training history (steps, losses, validation losses, ...)."""
    path = Path(path) if path is not None else reference_dir()
    if (path / HISTORY_FILE).exists():
        return json.loads((path / HISTORY_FILE).read_text(encoding="utf-8"))
    return load_checkpoint(path, restore_rng=False)["extra"]["history"]


def file_hashes(path: str | os.PathLike | None = None) -> dict[str, str]:
    """sha256 of each file of a reference-model directory."""
    path = Path(path) if path is not None else reference_dir()
    return {name: sha256(path / name) for name in REFERENCE_SHA256}


def base_model_name(profile: str | None = None) -> str:
    """``reference`` or ``gpt2``: ``GPT2_COURSE_BASE_MODEL`` if set, else ``gpt2`` under the gpt2 profile."""
    name = os.environ.get(BASE_MODEL_ENV, "").strip().lower()
    if not name:
        return "gpt2" if (profile or profile_name()) == "gpt2" else "reference"
    if name not in BASE_MODELS:
        raise ValueError(f"{BASE_MODEL_ENV}={name!r} is not a base model; use one of {', '.join(BASE_MODELS)} "
                         f"(reference: the course's shipped model; gpt2: OpenAI's GPT-2 124M, downloaded; "
                         f"chapter5: the model you trained in chapter 5)")
    return name


def load_base_model(device: torch.device | str | None = None, name: str | None = None):  # noqa: ANN201
    """(model, tokenizer, name): the pretrained model chapters 6-8 fine-tune, in eval mode.

    ``name`` (default :func:`base_model_name`) is ``reference`` (the shipped course model and its own
    tokenizer), ``gpt2`` (OpenAI's GPT-2 124M with GPT-2's tokenizer) or ``chapter5`` (the model you
    trained in chapter 5, with its tokenizer, from :func:`~gpt2_core.pretraining.recipes.learner_checkpoint_dir`).
    When the chosen model is not available (GPT-2 offline, chapter 5 not run yet), it says so and returns
    the reference model instead, so a notebook always runs.
    """
    name = name or base_model_name()
    if name not in BASE_MODELS:
        raise ValueError(f"unknown base model {name!r}; use one of {', '.join(BASE_MODELS)}")
    device = torch.device(device) if device is not None else get_device()
    if name == "chapter5":
        folder = learner_checkpoint_dir()
        try:
            loaded = load_checkpoint(folder, restore_rng=False, map_location=device)
        except FileNotFoundError:
            print(f"your chapter-5 model is not saved yet ({folder}): run chapter 5 first. Starting from the "
                  "reference course model instead.")
        except ValueError as err:  # cut short while being saved, damaged, or from another gpt2_core
            print(f"your chapter-5 model cannot be used: {err}. Re-run chapter 5 to save it again. Starting from "
                  "the reference course model instead.")
        else:
            if loaded["tokenizer"] is not None:
                return loaded["model"].eval(), loaded["tokenizer"], "chapter5"
            print(f"{folder} records no tokenizer; starting from the reference course model instead.")
    if name == "gpt2":
        try:
            return from_pretrained("gpt2").to(device).eval(), gpt2_encoding(), "gpt2"
        except (WeightsDownloadError, OSError) as err:
            print(f"OpenAI's GPT-2 weights are not available ({str(err)[:160]}); "
                  "starting from the reference course model instead.")
    model, tokenizer = load_reference(device)
    return model, tokenizer, "reference"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpt2_core.course.reference",
                                     description="Re-make (--out) or check (--check) the reference course model.")
    parser.add_argument("--out", help="directory to write the re-made model to (e.g. data/course-model)")
    parser.add_argument("--check", action="store_true", help="verify the shipped files' hashes and validation loss")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if not args.out and not args.check:
        parser.error("give --out DIR to re-make the model, or --check to verify the shipped one")
    if args.out:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            parser.error(f"--out {out} exists and is not a directory")
        build_reference(out, progress=not args.no_progress)
    if args.check:
        try:
            model, tok = load_reference("cpu")
        except ReferenceModelError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        check = reference_info()["val_check"]
        ids = torch.tensor(encode_text(sotu_text("val"), tok))
        got = bits_per_byte(model, ids, tok, max_windows=check["windows"])
        same = abs(got["loss"] - check["loss"]) <= 1e-4
        print(f"hashes ok; validation check: loss {got['loss']:.5f} (recorded {check['loss']:.5f}): "
              f"{'ok' if same else 'DIFFERS'}")
        return 0 if same else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
