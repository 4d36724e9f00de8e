"""The reference course model: a small GPT and its own tokenizer, shipped in ``data/course-model/``.

A model trained for ten CPU minutes does not transfer: it fine-tunes worse than random weights. One
trained on about 20M tokens does. So the course ships one, made by the course's own code from one
command, and chapters 6 and 7 start from it::

    python -m gpt2_core.reference --out data/course-model     # re-make it (about 55 min on 2 CPU cores)
    python -m gpt2_core.reference --check                      # verify the shipped files

The recipe (:class:`ReferenceRecipe`) is all in code:

1. a byte-level BPE tokenizer of 8,192 tokens, trained with chapter 1's trainer on the State of the
   Union *training* split (the validation split is never seen);
2. a GPT of the ``default`` profile's shape (4 layers, 256 wide, 4 heads, 128 tokens) trained with
   chapter 5's :func:`~gpt2_core.training.train` on that split for 4,900 steps of 32 windows
   (20.1M tokens, about ten passes over the 2.0M-token split), warmup + cosine, seed 123;
3. weights stored as bfloat16 (half the file; the model computes in float32) and scored *after*
   rounding, so the recorded validation figures are those of the shipped weights.

Why this shape and vocabulary: measured on the SOTU split at an equal CPU budget, validation bits per
byte were 1.89 with GPT-2's 50,257 tokens and 1.80 with an 8k BPE trained here; a small vocabulary
also makes every later chapter about 2.5x cheaper per token (the output layer of GPT-2's vocabulary
is 80% of this model's compute), and nearly every token of it occurs in pretraining. 8k rather than
4k keeps most words one token (4.9 bytes per token on SOTU instead of 4.4), which the copying tasks of
chapter 7 need.

Files (every one hashed in :data:`REFERENCE_SHA256`): ``model.safetensors``, ``config.json`` (model
config, recipe, tokenizer's special tokens and pattern, recorded validation figures),
``tokenizer.tiktoken`` (one ``base64(token) rank`` line per token, tiktoken's format) and
``history.json`` (the training run's losses).
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import tiktoken
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .bpe_ranks import ENDOFTEXT
from .checkpoint import write_dir_atomically
from .config import GPTConfig
from .model import GPTModel
from .profile import data_dir, get_device

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.tiktoken"
HISTORY_FILE = "history.json"
FILES = (MODEL_FILE, CONFIG_FILE, TOKENIZER_FILE, HISTORY_FILE)
FORMAT = "gpt2_core-reference-model"

# sha256 of each shipped file; a test checks them, and load_reference() refuses a file that differs.
REFERENCE_SHA256: dict[str, str] = {
    "model.safetensors": "8615ed69962c4e402680ccef0953b8dfd609bf1d62736518440ba07d7104b4fb",
    "config.json": "e0a2c58060ca098e58d5ca0fad97cd7ce69a550b5304c9dba7e21b4283252721",
    "tokenizer.tiktoken": "76d963ac6a409f2f8b16ae6789fce77e112a570f935c287f0a58c8ff923e4f12",
    "history.json": "dc00c7da5d8fb17dfceccd0be325a4b1d5e153e2d519d7f41a09f6bbc739e79d",
}


@dataclass(frozen=True)
class ReferenceRecipe:
    """Everything that makes the reference model: tokenizer, shape, data, optimisation, seed."""

    vocab_size: int = 8192
    context_length: int = 128
    emb_dim: int = 256
    n_heads: int = 4
    n_layers: int = 4
    batch_size: int = 32
    max_steps: int = 4900
    lr: float = 2e-3
    min_lr: float = 2e-4
    warmup_steps: int = 200
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 350
    eval_batches: int = 10
    seed: int = 123
    storage_dtype: str = "bfloat16"
    check_windows: int = 16  # validation windows re-scored by the test of the shipped files

    def model_config(self) -> GPTConfig:
        return GPTConfig(vocab_size=self.vocab_size, context_length=self.context_length, emb_dim=self.emb_dim,
                         n_heads=self.n_heads, n_layers=self.n_layers, drop_rate=0.0)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def reference_dir() -> Path:
    """Where the shipped reference model lives: ``data/course-model/``."""
    return data_dir() / "course-model"


# --- the tokenizer -------------------------------------------------------------------------------


def make_encoding(ranks: dict[bytes, int], special_tokens: dict[str, int], pattern: str,
                  name: str = "course-bpe") -> tiktoken.Encoding:
    """A fast tiktoken encoding over ranks learned by chapter 1's trainer (same ids as ``BPETokenizer``)."""
    return tiktoken.Encoding(name=name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=special_tokens)


def dump_ranks(ranks: dict[bytes, int]) -> bytes:
    """tiktoken's ranks format: one ``base64(token) rank`` line per token, by rank."""
    lines = [base64.b64encode(token) + b" " + str(rank).encode() for token, rank in
             sorted(ranks.items(), key=lambda item: item[1])]
    return b"\n".join(lines) + b"\n"


def parse_ranks(data: bytes) -> dict[bytes, int]:
    """Inverse of :func:`dump_ranks`."""
    ranks = {}
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except ValueError as err:
            raise ValueError(f"line {number} of the ranks file is not 'base64 rank': {line[:60]!r}") from err
    return ranks


# --- scoring -------------------------------------------------------------------------------------


def token_byte_lengths(tokenizer) -> torch.Tensor:  # noqa: ANN001 - a tiktoken Encoding or BPETokenizer
    """Bytes of text each token id stands for (special tokens: the length of their name)."""
    n = tokenizer.n_vocab if hasattr(tokenizer, "n_vocab") else tokenizer.vocab_size
    one = getattr(tokenizer, "decode_single_token_bytes", None) or tokenizer.id_to_bytes
    return torch.tensor([len(one(i)) for i in range(n)], dtype=torch.long)


@torch.no_grad()
def bits_per_byte(model: torch.nn.Module, token_ids: torch.Tensor | Sequence[int], tokenizer,  # noqa: ANN001
                  context_length: int | None = None, batch_size: int = 32, max_windows: int | None = None
                  ) -> dict[str, float]:
    """Score ``token_ids`` in non-overlapping windows: mean loss (nats per token) and bits per byte.

    Bits per byte divides the total surprise (in bits) by the bytes of text the predicted tokens
    stand for, so models with different tokenizers can be compared on the same text: a tokenizer
    with longer tokens has a higher loss per token but fewer tokens.
    """
    ids = torch.as_tensor(token_ids, dtype=torch.long).flatten()
    t = context_length or model.cfg.context_length
    n_windows = (ids.numel() - 1) // t
    if max_windows is not None:
        n_windows = min(n_windows, max_windows)
    if n_windows < 1:
        raise ValueError(f"need more than {t} tokens to score one window of {t}, got {ids.numel()}")
    windows = ids[: n_windows * t + 1]
    inputs = windows[:-1].view(n_windows, t)
    targets = windows[1:].view(n_windows, t)
    lengths = token_byte_lengths(tokenizer)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    nats = 0.0
    for i in range(0, n_windows, batch_size):
        x, y = inputs[i:i + batch_size].to(device), targets[i:i + batch_size].to(device)
        logits = model(x).float()
        nats += torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
    model.train(was_training)
    n_tokens = targets.numel()
    n_bytes = int(lengths[targets].sum())
    return {"loss": nats / n_tokens, "bits_per_byte": nats / math.log(2) / n_bytes,
            "tokens": n_tokens, "bytes": n_bytes}


# --- building ------------------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_reference(out: str | os.PathLike | None = None, recipe: ReferenceRecipe | None = None,
                    device: torch.device | str | None = None, progress: bool = True) -> dict:
    """Make the reference model from scratch with ``recipe`` and write it to ``out``; return its config."""
    from .corpus import sotu_text
    from .data import create_dataloader, encode_text
    from .tokenizer import BPETokenizer
    from .training import TrainConfig, train

    recipe = recipe or ReferenceRecipe()
    out = Path(out) if out is not None else reference_dir()
    device = torch.device(device) if device is not None else get_device()
    train_text, val_text = sotu_text("train"), sotu_text("val")

    tokenizer = BPETokenizer.train(train_text, recipe.vocab_size, special_tokens=(ENDOFTEXT,))
    enc = make_encoding(tokenizer.ranks, tokenizer.special_tokens, tokenizer.pattern)
    kw = dict(context_length=recipe.context_length, batch_size=recipe.batch_size, seed=recipe.seed)
    train_loader = create_dataloader(train_text, enc, shuffle=True, **kw)
    val_loader = create_dataloader(val_text, enc, shuffle=False, drop_last=False, **kw)
    if progress:
        print(f"tokenizer: {enc.n_vocab:,} tokens; train {train_loader.dataset.num_tokens:,} tokens, "
              f"val {val_loader.dataset.num_tokens:,} tokens; training on {device}")

    torch.manual_seed(recipe.seed)
    model = GPTModel(recipe.model_config()).to(device)
    config = TrainConfig(max_steps=recipe.max_steps, lr=recipe.lr, min_lr=recipe.min_lr,
                         warmup_steps=recipe.warmup_steps, weight_decay=recipe.weight_decay,
                         grad_clip=recipe.grad_clip, eval_every=recipe.eval_every,
                         eval_batches=recipe.eval_batches, seed=recipe.seed, progress=progress)
    history = train(model, train_loader, val_loader, config)

    # Round to the storage dtype first, so every recorded figure is that of the shipped weights.
    model = model.cpu().float()
    dtype = getattr(torch, recipe.storage_dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(dtype).float())
    val_ids = torch.tensor(encode_text(val_text, enc))
    full = bits_per_byte(model, val_ids, enc, recipe.context_length)
    check = bits_per_byte(model, val_ids, enc, recipe.context_length, max_windows=recipe.check_windows)
    weights = {name: p.detach().to(dtype).contiguous() for name, p in model.state_dict().items()
               if name != "out_head.weight"}  # tied to tok_emb.weight: stored once
    meta = {
        "format": FORMAT,
        "model_config": model.cfg.to_dict(),
        "recipe": recipe.to_dict(),
        "tokenizer": {"file": TOKENIZER_FILE, "pattern": tokenizer.pattern,
                      "special_tokens": tokenizer.special_tokens},
        "tied": {"out_head.weight": "tok_emb.weight"},
        "trained": {"steps": len(history.steps), "tokens": history.tokens_seen, "seconds": round(history.seconds, 1),
                    "device": str(device), "torch": torch.__version__},
        "val": full,
        "val_check": {"windows": recipe.check_windows, **check},
    }
    files = {
        MODEL_FILE: st_save(weights, metadata={"format": FORMAT}),
        CONFIG_FILE: (json.dumps(meta, indent=2) + "\n").encode(),
        TOKENIZER_FILE: dump_ranks(tokenizer.ranks),
        HISTORY_FILE: (json.dumps(history.to_dict()) + "\n").encode(),
    }
    write_dir_atomically(out, files)
    if progress:
        print(f"validation: loss {full['loss']:.4f} nats/token, {full['bits_per_byte']:.4f} bits/byte; "
              f"written to {out}")
        for name, data in files.items():
            print(f'    "{name}": "{_sha256(data)}",')
    return meta


# --- loading -------------------------------------------------------------------------------------


class ReferenceModelError(RuntimeError):
    """The shipped reference model is missing or does not match its pinned hash."""


def _read(path: Path, name: str, verify: bool) -> bytes:
    file = path / name
    if not file.is_file():
        raise ReferenceModelError(f"{file} is missing; the reference model ships in the repository "
                                  "(git checkout data/course-model) or can be re-made with "
                                  "`python -m gpt2_core.reference --out data/course-model`")
    data = file.read_bytes()
    if verify and REFERENCE_SHA256 and _sha256(data) != REFERENCE_SHA256.get(name):
        raise ReferenceModelError(f"{file} does not match its pinned sha256 (changed or corrupt); restore it "
                                  "with `git checkout data/course-model`, or pass verify=False for a "
                                  "model you re-made yourself")
    return data


def load_reference_config(path: str | os.PathLike | None = None, verify: bool = True) -> dict:
    """The reference model's ``config.json``: model config, recipe, recorded validation figures."""
    path = Path(path) if path is not None else reference_dir()
    return json.loads(_read(path, CONFIG_FILE, verify))


def load_tokenizer(path: str | os.PathLike | None = None, verify: bool = True) -> tiktoken.Encoding:
    """The reference model's tokenizer, as a tiktoken encoding (fast; same ids as chapter 1's BPETokenizer)."""
    path = Path(path) if path is not None else reference_dir()
    return _tokenizer(path, load_reference_config(path, verify), verify)


def _tokenizer(path: Path, meta: dict, verify: bool) -> tiktoken.Encoding:
    ranks = parse_ranks(_read(path, TOKENIZER_FILE, verify))
    return make_encoding(ranks, meta["tokenizer"]["special_tokens"], meta["tokenizer"]["pattern"])


def load_reference(device: torch.device | str | None = None, path: str | os.PathLike | None = None,
                   verify: bool = True) -> tuple[GPTModel, tiktoken.Encoding]:
    """(model, tokenizer): the reference course model in eval mode on ``device``, and its tokenizer.

    The two always travel together: the model's token ids mean nothing with another tokenizer.
    ``verify`` checks every file against :data:`REFERENCE_SHA256` first.
    """
    path = Path(path) if path is not None else reference_dir()
    meta = load_reference_config(path, verify)
    if meta.get("format") != FORMAT:
        raise ReferenceModelError(f"{path / CONFIG_FILE} is not a reference-model config (format {FORMAT!r})")
    tokenizer = _tokenizer(path, meta, verify)  # the config is already read and checked
    try:
        weights = st_load(_read(path, MODEL_FILE, verify))
    except Exception as err:  # safetensors raises its own error type on a damaged file
        raise ReferenceModelError(f"{path / MODEL_FILE} is not readable safetensors ({err})") from err
    for alias, target in meta.get("tied", {}).items():
        weights[alias] = weights[target]
    model = GPTModel(GPTConfig.from_dict(meta["model_config"]))
    model.load_state_dict({k: v.float() for k, v in weights.items()})
    if model.cfg.vocab_size != tokenizer.n_vocab:
        raise ReferenceModelError(f"model vocabulary {model.cfg.vocab_size} != tokenizer's {tokenizer.n_vocab}")
    device = torch.device(device) if device is not None else get_device()
    return model.to(device).eval(), tokenizer


def file_hashes(path: str | os.PathLike | None = None) -> dict[str, str]:
    """sha256 of each file of a reference-model directory."""
    path = Path(path) if path is not None else reference_dir()
    return {name: _sha256((path / name).read_bytes()) for name in FILES}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpt2_core.reference",
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
        model, tok = load_reference("cpu")
        meta = load_reference_config()
        from .corpus import sotu_text
        from .data import encode_text

        ids = torch.tensor(encode_text(sotu_text("val"), tok))
        got = bits_per_byte(model, ids, tok, max_windows=meta["val_check"]["windows"])
        print(f"hashes ok; validation check: loss {got['loss']:.5f} (recorded {meta['val_check']['loss']:.5f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
