"""Checkpoints: a model with its tokenizer, and a training run's state, in a directory, without pickle.

A checkpoint is a directory:

- ``model.safetensors``   the model's weights (each tied weight stored once)
- ``config.json``         the GPTConfig, which weights are tied, the output head if it is not the tied
                          next-token head, and the tokenizer: GPT-2's by name, or the course's own
                          (its pattern and special tokens here, its ranks in ``tokenizer.tiktoken``)
- ``tokenizer.tiktoken``  the ranks of a tokenizer that is not GPT-2's (tiktoken's format)
- ``trainer.safetensors`` and ``trainer.json``: step, ``extra`` (your own JSON: losses, tokens seen, ...),
                          the RNG states, and the optimizer and scheduler states when they were given

The model and its tokenizer travel together: a model's token ids mean nothing with another tokenizer,
so :func:`load_checkpoint` returns both. Only safetensors and JSON are read back, so loading never runs
code hidden in a pickle (``torch.load`` on an untrusted ``.pt`` file can). Saving and restoring the random
number generators (torch CPU, CUDA, Python's ``random``) is what makes a resumed CPU run bitwise identical
to one that never stopped. Saving is atomic (:func:`gpt2_core.files.write_dir_atomically`), and config.json
records every other file's size, so a directory cut short some other way (a copy interrupted, a disk that lost
writes) is refused in one line, before anything is loaded (:class:`IncompleteCheckpointError`, a ValueError).

The shipped reference course model (``data/course-model/``) is a checkpoint without training state whose
files keep the bytes they were committed with (format name ``gpt2_core-reference-model``); it loads
through the same :func:`load_checkpoint`, with every file checked against its pinned sha256.

Loading into a given model is refused, with the differing fields named, when the saved GPTConfig differs
from ``model.cfg`` in anything that changes what the weights mean (``drop_rate`` does not); a checkpoint
from a newer format version is refused too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from ..checks import check_int, check_tokenizer
from ..files import check_writable, reading_dir, sha256, write_dir_atomically
from ..model.config import GPTConfig
from ..model.gpt import GPTModel, unwrap_model
from ..model.layout import lay_out_like_params
from ..text.ranks import tokenizer_files, tokenizer_from_record
from .state import decode_state, encode_state, rng_state, set_rng_state

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TRAINER_FILE = "trainer.safetensors"
TRAINER_JSON = "trainer.json"
FORMAT = "gpt2_core-checkpoint"
REFERENCE_FORMAT = "gpt2_core-reference-model"  # the shipped reference model: a checkpoint without training state
FORMAT_VERSION = 2  # 2: the tokenizer is recorded; version 1 checkpoints load without one
FILES_KEY = "files"  # config.json's {file name: size in bytes} of the checkpoint's other files (older ones lack it)
# GPTConfig fields that do not change what the weights mean: a checkpoint may load despite them.
CONFIG_FIELDS_IGNORED = frozenset({"drop_rate"})


class IncompleteCheckpointError(ValueError):
    """A checkpoint directory whose files are not all there, whole: cut short while being saved or copied."""


# ---------------------------------------------------------------------------------------------
# What the config records: tied weights, the head, the tokenizer
# ---------------------------------------------------------------------------------------------

def _tied_aliases(model: nn.Module) -> dict[str, str]:
    """{name: name it shares storage with} for every state-dict entry that repeats an earlier one."""
    seen: dict[tuple, str] = {}
    aliases: dict[str, str] = {}
    for name, tensor in model.state_dict().items():
        if tensor.numel() == 0:
            continue
        key = (tensor.device, tensor.untyped_storage().data_ptr(), tensor.storage_offset(),
               tuple(tensor.shape), tensor.stride())
        if key in seen:
            aliases[name] = seen[key]
        else:
            seen[key] = name
    return aliases


def _head_config(model: GPTModel) -> dict | None:
    """None for the tied next-token head; otherwise what the head says of itself (its ``config()``, which a
    head added by a later chapter provides), or an ``nn.Linear``'s shape."""
    head = model.out_head
    if head.weight is model.tok_emb.weight:
        return None
    if hasattr(head, "config"):
        return {"class": type(head).__name__, **head.config()}
    return {"class": type(head).__name__, "in_features": head.in_features, "out_features": head.out_features,
            "bias": head.bias is not None}


# ---------------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------------

def check_checkpoint_path(path: str | os.PathLike) -> Path:
    """Raise ValueError unless a checkpoint can be saved at ``path``; writes only a probe file, removed at once.

    Saving replaces the whole directory through a sibling temporary one, so ``path`` must not be a file
    or a non-empty directory that is not a checkpoint, and its parent must be writable.
    """
    path = Path(path)
    with reading_dir(path):  # another run may be saving there: look at a whole directory, not one mid-swap
        if path.exists() and not path.is_dir():
            raise ValueError(f"{path} exists and is not a directory; a checkpoint is a directory, pick another path")
        if path.is_dir() and not (path / CONFIG_FILE).is_file() and any(path.iterdir()):
            raise ValueError(f"{path} is a non-empty directory that is not a checkpoint; saving would replace "
                             "everything in it, so pick a new or empty directory")
    return check_writable(path)


def _json_bytes(obj: Any, what: str) -> bytes:
    try:
        return json.dumps(obj, indent=1, allow_nan=True).encode("utf-8")
    except (TypeError, ValueError) as err:
        raise TypeError(f"{what} must be JSON-serialisable: {err}") from err


def save_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any = None, step: int = 0, extra: dict | None = None, *,
                    tokenizer: Any = None, info: dict | None = None) -> Path:
    """Save the model and its ``tokenizer`` (+ optional optimizer, scheduler, ``step``, ``extra``) to ``path``.

    ``extra`` is any JSON-serialisable dict (losses so far, tokens seen, ...); ``info`` is JSON that goes
    into config.json beside the model's description (what the model is: a recipe, scores). The RNG
    states are saved too. Replaces an existing checkpoint at ``path`` atomically and returns its path.
    Without a ``tokenizer`` the checkpoint records none, and the command-line tools refuse to use it.
    """
    path = Path(path)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    model = unwrap_model(model)
    if not isinstance(model, GPTModel):
        raise TypeError("model must be a gpt2_core GPTModel (with a GPTConfig in model.cfg)")
    try:
        check_int(step, "step", low=0)
    except TypeError as err:
        raise ValueError(str(err)) from None
    if extra is not None and not isinstance(extra, dict):
        raise TypeError(f"extra must be a dict (JSON-serialisable) or None, got {type(extra).__name__}")
    check_checkpoint_path(path)

    # Build every byte to write before touching the disk, so bad input fails early.
    aliases = _tied_aliases(model)
    weights = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items() if name not in aliases}
    if tokenizer is not None and check_tokenizer(tokenizer).n_vocab > model.cfg.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.n_vocab:,} tokens but the model only {model.cfg.vocab_size:,}: "
                         "they do not belong together; save the model with the tokenizer it was trained with")
    record, tokenizer_bytes = tokenizer_files(tokenizer) if tokenizer is not None else (None, {})
    tensors: dict[str, torch.Tensor] = {}
    trainer = {
        "step": step,
        "extra": extra or {},
        "optimizer": encode_state(optimizer.state_dict(), "optimizer", tensors) if optimizer is not None else None,
        "scheduler": encode_state(scheduler.state_dict(), "scheduler", tensors) if scheduler is not None else None,
        "rng": encode_state(rng_state(), "rng", tensors),
    }
    files = {MODEL_FILE: st_save(weights, metadata={"format": FORMAT}), **tokenizer_bytes,
             TRAINER_FILE: st_save(tensors, metadata={"format": FORMAT}), TRAINER_JSON: _json_bytes(trainer, "extra")}
    config = {"format": FORMAT, "version": FORMAT_VERSION, "model_config": model.cfg.to_dict(), "tied": aliases,
              "head": _head_config(model), "tokenizer": record, FILES_KEY: {k: len(v) for k, v in files.items()}}
    clash = set(info or {}) & set(config)
    if clash:
        raise ValueError(f"info may not use the names {sorted(clash)}: config.json needs them")
    config.update(info or {})
    files[CONFIG_FILE] = _json_bytes(config, "config")
    return write_dir_atomically(path, files)


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------

class _Reader:
    """Reads a checkpoint's files, each checked against ``expected_sha256`` (name -> hex) when given."""

    def __init__(self, path: Path, expected_sha256: dict[str, str] | None) -> None:
        self.path, self.expected = path, expected_sha256

    def __call__(self, name: str) -> bytes:
        file = self.path / name
        if not file.is_file():
            raise FileNotFoundError(f"checkpoint file {file} is missing; the checkpoint is incomplete")
        data = file.read_bytes()
        if self.expected is not None and sha256(data) != self.expected.get(name):
            raise ValueError(f"{file} does not match its pinned sha256: it was changed or damaged")
        return data

    def json(self, name: str) -> Any:
        try:
            return json.loads(self(name).decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{self.path / name} is not valid JSON ({err}); the checkpoint is corrupt") from err

    def tensors(self, name: str, device: str) -> dict[str, torch.Tensor]:
        data = self(name)
        try:
            tensors = st_load(data)
        except Exception as err:  # safetensors raises its own error type for a truncated/garbled file
            raise ValueError(f"{self.path / name} is not a readable safetensors file ({err}); "
                             "the checkpoint is corrupt") from err
        return {k: v.to(device) for k, v in tensors.items()}


def _read_config(read: _Reader) -> tuple[dict[str, Any], GPTConfig]:
    """config.json of a checkpoint, checked: our format, a version this code reads, a valid GPTConfig, and
    every other file there (see :func:`_check_complete`)."""
    if not read.path.is_dir():
        raise FileNotFoundError(f"no checkpoint directory at {read.path}; save one with save_checkpoint(path, model)")
    config = read.json(CONFIG_FILE)
    config_file = read.path / CONFIG_FILE
    if not isinstance(config, dict) or config.get("format") not in (FORMAT, REFERENCE_FORMAT) \
            or "model_config" not in config:
        raise ValueError(f"{config_file} is not a gpt2_core checkpoint config (format {FORMAT!r})")
    version = config.get("version", 1) if config["format"] == FORMAT else FORMAT_VERSION
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{config_file} has an invalid format version {version!r}; the checkpoint is corrupt")
    if version > FORMAT_VERSION:
        raise ValueError(f"{read.path} was written in checkpoint format version {version}, newer than the "
                         f"{FORMAT_VERSION} this gpt2_core reads; upgrade gpt2_core to load it")
    try:
        cfg = GPTConfig.from_dict(config["model_config"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{config_file} holds an invalid model config: {err}") from err
    _check_complete(config, read.path)
    return config, cfg


def _check_complete(config: dict[str, Any], path: Path) -> None:
    """Raise IncompleteCheckpointError unless every file config.json expects is in ``path`` at its recorded
    size: a directory cut short is refused before anything is read from it, with what is missing named.
    Checkpoints saved before sizes were recorded (the shipped reference model too) are checked by name only."""
    sizes = config.get(FILES_KEY)
    if sizes is not None and not (isinstance(sizes, dict) and all(
            isinstance(size, int) and not isinstance(size, bool) for size in sizes.values())):
        raise ValueError(f"{path / CONFIG_FILE} records its files' sizes as {sizes!r:.80}, not "
                         "{name: bytes}; the checkpoint is corrupt")
    if sizes is None:
        names = [MODEL_FILE] + ([TRAINER_FILE, TRAINER_JSON] if config["format"] == FORMAT else [])
        record = config.get("tokenizer")
        names += [record["file"]] if isinstance(record, dict) and "file" in record else []
        sizes = dict.fromkeys(names)
    problems = []
    for name, size in sizes.items():
        file = path / name
        if not file.is_file():
            problems.append(f"{name} is missing")
        elif size is not None and file.stat().st_size != size:
            problems.append(f"{name} has {file.stat().st_size:,} of its {size:,} bytes")
        if len(problems) == 2:
            break  # enough to say what happened, in one line
    if problems:
        raise IncompleteCheckpointError(f"{path} is an incomplete checkpoint ({'; '.join(problems)}): it was cut "
                                        "short while being saved or copied; save it again")


def _check_model(saved: GPTConfig, head: dict | None, model: nn.Module, path: Path) -> None:
    """Same key names and shapes are not enough (n_heads=2 and 6 give the same shapes): compare the configs."""
    if not isinstance(model, GPTModel):
        return  # not a GPTModel: the state-dict check is all we can do
    old, new = saved.to_dict(), model.cfg.to_dict()
    diff = [f"{k}: checkpoint {old[k]!r}, model {new[k]!r}" for k in old
            if k not in CONFIG_FIELDS_IGNORED and old[k] != new.get(k)]
    if diff:
        raise ValueError(f"{path} was saved from a model with another config ({'; '.join(diff)}); its weights "
                         "would mean something else here. Build the model from the checkpoint's config "
                         "(load_checkpoint(path) without a model does that)")
    mine = _head_config(model)
    if head is not None and mine is not None and head.get("class") == mine.get("class") and head != mine:
        raise ValueError(f"{path} was saved with the head {head}, but the model's head is {mine}")


def _check_state(model: nn.Module, weights: dict[str, torch.Tensor], tied: dict[str, str], file: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{file} does not match the model: missing {missing or 'nothing'}, "
                         f"unexpected {unexpected or 'nothing'}; was it saved from a different architecture?")
    for name, tensor in expected.items():
        if tuple(weights[name].shape) != tuple(tensor.shape):
            raise ValueError(f"tensor {name!r} in {file} has shape {tuple(weights[name].shape)} but "
                             f"the model expects {tuple(tensor.shape)}; build the model from the checkpoint's config")
    model_tied = _tied_aliases(model)
    if model_tied != tied:
        raise ValueError(f"weight tying differs: the checkpoint ties {tied or 'nothing'}, the model ties "
                         f"{model_tied or 'nothing'}")


def checkpoint_info(path: str | os.PathLike) -> dict[str, Any]:
    """``{"step", "extra", "config", "meta"}`` of a checkpoint (``meta``: its config.json), read from its JSON
    files only (no tensors, nothing loaded into a model): a cheap way to check a checkpoint before a run
    starts. Raises like :func:`load_checkpoint`."""
    with reading_dir(path):
        read = _Reader(Path(path), None)
        config, cfg = _read_config(read)
        trainer = read.json(TRAINER_JSON) if config["format"] == FORMAT else {"step": 0, "extra": {}}
    if not isinstance(trainer, dict) or not {"step", "extra"} <= set(trainer):
        raise ValueError(f"{read.path / TRAINER_JSON} lacks step or extra; the checkpoint is corrupt")
    return {"step": trainer["step"], "extra": trainer["extra"], "config": cfg, "meta": config}


def load_tokenizer(path: str | os.PathLike, expected_sha256: dict[str, str] | None = None) -> Any:
    """The tokenizer a checkpoint records (a tiktoken Encoding), read without its weights."""
    with reading_dir(path):
        read = _Reader(Path(path), expected_sha256)
        config, cfg = _read_config(read)
        tokenizer = tokenizer_from_record(config.get("tokenizer"), read, cfg.vocab_size)
    if tokenizer is None:
        raise ValueError(f"{read.path} records no tokenizer (it was saved without one)")
    return tokenizer


def load_checkpoint(path: str | os.PathLike, model: nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None,
                    restore_rng: bool = True, map_location: str | torch.device = "cpu",
                    expected_sha256: dict[str, str] | None = None) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (or the shipped reference model).

    Loads weights into ``model`` (or builds a new GPTModel from the saved config on ``map_location``;
    that needs the tied next-token head: a model with another head must be built first and passed),
    optimizer and scheduler state into the ones given, and restores the RNG states unless
    ``restore_rng=False``. ``expected_sha256`` (file name -> hex) checks every file read against it.
    Every file is read and checked before anything is changed: a ``model`` whose GPTConfig differs from
    the saved one (other than ``drop_rate``) is refused with a ValueError naming the fields, as is a
    checkpoint from a newer format version. CUDA RNG states that cannot be restored here (no GPU, or
    another number of GPUs) give a RuntimeWarning.
    Returns ``{"step", "extra", "config", "model", "tokenizer", "meta"}`` (``meta``: config.json as read;
    ``tokenizer``: a tiktoken Encoding, or None for a checkpoint that records none).
    """
    device = str(torch.device(map_location))
    with reading_dir(path):  # every file from the same save, even if another run saves meanwhile
        read = _Reader(Path(path), expected_sha256)
        config, cfg = _read_config(read)
        tied: dict[str, str] = config.get("tied") or {}
        tokenizer = tokenizer_from_record(config.get("tokenizer"), read, cfg.vocab_size)
        weights = read.tensors(MODEL_FILE, device)
        for name, target in tied.items():
            if target not in weights:
                raise ValueError(f"{read.path / MODEL_FILE} lacks {target!r}, which {name!r} is tied to; "
                                 "the checkpoint is corrupt")
            weights[name] = weights[target]
        trainer = {"step": 0, "extra": {}, "optimizer": None, "scheduler": None, "rng": None}
        if config["format"] == FORMAT:  # the reference model has no training state
            trainer = read.json(TRAINER_JSON)
            if not isinstance(trainer, dict) or not {"step", "extra", "optimizer", "scheduler", "rng"} <= set(trainer):
                raise ValueError(f"{read.path / TRAINER_JSON} lacks one of step, extra, optimizer, scheduler, rng; "
                                 "the checkpoint is corrupt")
            trainer = decode_state(trainer, read.tensors(TRAINER_FILE, "cpu"), str(read.path / TRAINER_JSON))
    if optimizer is not None and trainer["optimizer"] is None:
        raise ValueError(f"{read.path} has no optimizer state (it was saved without an optimizer)")
    if scheduler is not None and trainer["scheduler"] is None:
        raise ValueError(f"{read.path} has no scheduler state (it was saved without a scheduler)")

    head = config.get("head")
    if model is None:
        if head is not None:
            raise ValueError(f"{read.path} holds a model with a {head.get('class')} head, which only its own "
                             "chapter's code builds; build that model first and pass it as load_checkpoint(path, "
                             "model) (for a classifier: gpt2_core.finetuning.classification.load_classifier)")
        model = GPTModel(cfg).to(device)
    inner = unwrap_model(model)
    _check_model(cfg, head, inner, read.path)
    _check_state(inner, weights, tied, read.path / MODEL_FILE)
    inner.load_state_dict(weights)
    if optimizer is not None:
        optimizer.load_state_dict(trainer["optimizer"])
        lay_out_like_params(optimizer)  # fused AdamW pairs them as flat memory
    if scheduler is not None:
        scheduler.load_state_dict(trainer["scheduler"])
    if restore_rng and trainer["rng"] is not None:
        set_rng_state(trainer["rng"])
    return {"step": trainer["step"], "extra": trainer["extra"], "config": cfg, "model": model,
            "tokenizer": tokenizer, "meta": config}
