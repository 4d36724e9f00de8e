"""Checkpoints: save a training run to a directory and resume it exactly, without pickle.

A checkpoint is a directory:

- ``model.safetensors``   the model's weights (each tied weight stored once)
- ``config.json``         the GPTConfig, the output head's shape, which weights are tied
- ``trainer.safetensors`` optimizer tensors (``optimizer.state.{param}.{name}``) and RNG states
- ``trainer.json``        step, ``extra`` (your own JSON: losses, tokens seen, ...), and every
                          non-tensor part of the optimizer / scheduler state and the RNG states

Only safetensors and JSON are read back, so loading a checkpoint never runs code hidden in a pickle
(``torch.load`` on an untrusted ``.pt`` file can). Saving and restoring the random number generators
(torch CPU, CUDA, Python's ``random``) is what makes a resumed CPU run bitwise identical to one that
never stopped: dropout masks and data shuffles continue from the same random stream.

Saving is atomic: everything is written into a sibling ``<dir>.tmp-<pid>`` and fsynced, then swapped in
(old checkpoint renamed to ``<dir>.old``, new one renamed into place, old one removed). A crash while
writing leaves the previous checkpoint untouched; a crash during the swap leaves ``<dir>.old``, which
the next save or load moves back into place.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from .config import GPTConfig

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TRAINER_FILE = "trainer.safetensors"
TRAINER_JSON = "trainer.json"
FORMAT = "gpt2_core-checkpoint"
FORMAT_VERSION = 1


# ---------------------------------------------------------------------------------------------
# Turning nested state dicts (optimizer, scheduler, RNG) into tensors + JSON and back.
# Tensors go into a flat dict keyed by their path ("optimizer.state.0.exp_avg"); the JSON keeps a
# {"__tensor__": path} placeholder. Tuples and dicts with non-string keys (the optimizer's
# parameter indices) get small tagged forms so they come back as the same Python types.
# ---------------------------------------------------------------------------------------------

def _encode(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": path}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _encode(v, f"{path}.{k}", tensors) for k, v in obj.items()}
        for k in obj:
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"cannot save {path}: dict key {k!r} is not a str or int")
        return {"__dict__": [[k, _encode(v, f"{path}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{path}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{path}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot save {path}: values of type {type(obj).__name__} are not supported "
                    "(only tensors, numbers, strings, lists, tuples and dicts)")


def _decode(obj: Any, tensors: dict[str, torch.Tensor], source: str) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            key = obj["__tensor__"]
            if key not in tensors:
                raise ValueError(f"{source} refers to tensor {key!r}, which is missing from {TRAINER_FILE}")
            return tensors[key]
        if set(obj) == {"__tuple__"}:
            return tuple(_decode(v, tensors, source) for v in obj["__tuple__"])
        if set(obj) == {"__dict__"}:
            return {k: _decode(v, tensors, source) for k, v in obj["__dict__"]}
        return {k: _decode(v, tensors, source) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, tensors, source) for v in obj]
    return obj


# ---------------------------------------------------------------------------------------------
# RNG state
# ---------------------------------------------------------------------------------------------

def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# ---------------------------------------------------------------------------------------------
# Model weights: tied parameters share storage, which safetensors refuses; save each once.
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


def unwrap_model(model: nn.Module) -> nn.Module:
    """The GPTModel inside a DistributedDataParallel (``.module``) or torch.compile (``._orig_mod``) wrapper.

    Saving the inner model keeps weight names free of wrapper prefixes, so a checkpoint written by a
    wrapped run loads into a plain model and back.
    """
    while True:
        # torch.compile's wrapper forwards attribute reads (even .cfg) to the model, so look for the
        # wrapper attributes themselves rather than for a missing .cfg
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def _head_info(model: nn.Module) -> dict[str, Any] | None:
    head = getattr(model, "out_head", None)
    if not isinstance(head, nn.Linear):
        return None
    return {"in_features": head.in_features, "out_features": head.out_features, "bias": head.bias is not None}


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

def _write_bytes(path: Path, data: bytes) -> None:
    """Write and fsync, so the bytes are on disk before the directory is swapped in."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _old_path(path: Path) -> Path:
    return path.with_name(path.name + ".old")


def _recover(path: Path) -> None:
    """A crash between 'rename old away' and 'rename new in' leaves only ``<dir>.old``: put it back."""
    old = _old_path(path)
    if not path.exists() and old.is_dir():
        old.rename(path)


def _json_bytes(obj: Any, what: str) -> bytes:
    try:
        return json.dumps(obj, indent=1, allow_nan=True).encode("utf-8")
    except (TypeError, ValueError) as err:
        raise TypeError(f"{what} must be JSON-serialisable: {err}") from err


def save_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any = None, step: int = 0, extra: dict | None = None) -> Path:
    """Save model (+ optional optimizer, scheduler), ``step``, ``extra`` and RNG states to directory ``path``.

    ``extra`` is any JSON-serialisable dict (losses so far, tokens seen, ...). Replaces an existing
    checkpoint at ``path`` atomically. Returns the checkpoint's path.
    """
    path = Path(path)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    model = unwrap_model(model)
    if not hasattr(model, "cfg") or not isinstance(model.cfg, GPTConfig):
        raise TypeError("model must have a GPTConfig in model.cfg (a gpt2_core GPTModel)")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an int >= 0, got {step!r}")
    if extra is not None and not isinstance(extra, dict):
        raise TypeError(f"extra must be a dict (JSON-serialisable) or None, got {type(extra).__name__}")
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} exists and is not a directory; a checkpoint is a directory, "
                         "pick another path")

    # Build every byte to write before touching the disk, so bad input fails early.
    aliases = _tied_aliases(model)
    weights = {name: t.detach().cpu().contiguous()
               for name, t in model.state_dict().items() if name not in aliases}
    config = {"format": FORMAT, "version": FORMAT_VERSION, "model_config": model.cfg.to_dict(),
              "out_head": _head_info(model), "tied": aliases}
    tensors: dict[str, torch.Tensor] = {}
    trainer = {
        "step": step,
        "extra": extra or {},
        "optimizer": _encode(optimizer.state_dict(), "optimizer", tensors) if optimizer is not None else None,
        "scheduler": _encode(scheduler.state_dict(), "scheduler", tensors) if scheduler is not None else None,
        "rng": _encode(_rng_state(), "rng", tensors),
    }
    files = {
        MODEL_FILE: st_save(weights, metadata={"format": FORMAT}),
        CONFIG_FILE: _json_bytes(config, "the model config"),
        TRAINER_FILE: st_save(tensors, metadata={"format": FORMAT}),
        TRAINER_JSON: _json_bytes(trainer, "extra"),
    }

    path.parent.mkdir(parents=True, exist_ok=True)
    _recover(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        for name, data in files.items():
            _write_bytes(tmp / name, data)
        _fsync_dir(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # the previous checkpoint was never touched
        raise
    old = _old_path(path)
    if old.exists():
        shutil.rmtree(old)
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    _fsync_dir(path.parent)
    if old.exists():
        shutil.rmtree(old)
    return path


def _read_json(file: Path) -> Any:
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint file {file} is missing; the checkpoint is incomplete")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{file} is not valid JSON ({err}); the checkpoint is corrupt") from err


def _read_tensors(file: Path, device: str) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint file {file} is missing; the checkpoint is incomplete")
    try:
        tensors = st_load(file.read_bytes())
    except Exception as err:  # safetensors raises its own error type for a truncated/garbled file
        raise ValueError(f"{file} is not a readable safetensors file ({err}); "
                         "the checkpoint is corrupt") from err
    return {k: v.to(device) for k, v in tensors.items()}


def _build_model(cfg: GPTConfig, head: dict | None, tied: dict[str, str]) -> nn.Module:
    from .model import GPTModel

    model = GPTModel(cfg)
    if head is not None:
        same_shape = head["out_features"] == cfg.vocab_size and not head["bias"]
        if not same_shape or "out_head.weight" not in tied:
            # a classification head, or an LM head that was untied: a separate Linear layer
            model.out_head = nn.Linear(head["in_features"], head["out_features"], bias=head["bias"])
    return model


def _check_state(model: nn.Module, weights: dict[str, torch.Tensor], tied: dict[str, str],
                 file: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{file} does not match the model: missing {missing or 'nothing'}, "
                         f"unexpected {unexpected or 'nothing'}; was it saved from a different architecture?")
    for name, tensor in expected.items():
        if tuple(weights[name].shape) != tuple(tensor.shape):
            raise ValueError(f"tensor {name!r} in {file} has shape {tuple(weights[name].shape)} but "
                             f"the model expects {tuple(tensor.shape)}; "
                             "build the model from the checkpoint's config")
    model_tied = _tied_aliases(model)
    if model_tied != tied:
        raise ValueError(f"weight tying differs: the checkpoint ties {tied or 'nothing'}, the model ties "
                         f"{model_tied or 'nothing'}")


def load_checkpoint(path: str | os.PathLike, model: nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None,
                    restore_rng: bool = True, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Loads weights into ``model`` (or builds a new GPTModel from the saved config, with the saved output
    head, on ``map_location``), optimizer and scheduler state into the ones given, and restores the RNG
    states unless ``restore_rng=False``. Every file is read and checked before anything is changed.
    Returns ``{"step", "extra", "config", "model"}``.
    """
    path = Path(path)
    _recover(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no checkpoint directory at {path}; "
                                "save one with save_checkpoint(path, model)")
    device = str(torch.device(map_location))

    config_file = path / CONFIG_FILE
    config = _read_json(config_file)
    if not isinstance(config, dict) or config.get("format") != FORMAT or "model_config" not in config:
        raise ValueError(f"{config_file} is not a gpt2_core checkpoint config (format {FORMAT!r})")
    try:
        cfg = GPTConfig.from_dict(config["model_config"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{config_file} holds an invalid model config: {err}") from err
    tied: dict[str, str] = config.get("tied") or {}

    model_file = path / MODEL_FILE
    weights = _read_tensors(model_file, device)
    for name, target in tied.items():
        if target not in weights:
            raise ValueError(f"{model_file} lacks {target!r}, which {name!r} is tied to; "
                             "the checkpoint is corrupt")
        weights[name] = weights[target]
    trainer_json = path / TRAINER_JSON
    trainer = _read_json(trainer_json)
    needed = {"step", "extra", "optimizer", "scheduler", "rng"}
    if not isinstance(trainer, dict) or not needed <= set(trainer):
        raise ValueError(f"{trainer_json} lacks one of {sorted(needed)}; the checkpoint is corrupt")
    trainer_tensors = _read_tensors(path / TRAINER_FILE, "cpu")
    trainer = _decode(trainer, trainer_tensors, str(trainer_json))
    if optimizer is not None and trainer["optimizer"] is None:
        raise ValueError(f"{path} has no optimizer state (it was saved without an optimizer)")
    if scheduler is not None and trainer["scheduler"] is None:
        raise ValueError(f"{path} has no scheduler state (it was saved without a scheduler)")

    if model is None:
        model = _build_model(cfg, config.get("out_head"), tied).to(device)
    inner = unwrap_model(model)
    _check_state(inner, weights, tied, model_file)
    inner.load_state_dict(weights)
    if optimizer is not None:
        optimizer.load_state_dict(trainer["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(trainer["scheduler"])
    if restore_rng:
        _set_rng_state(trainer["rng"])
    return {"step": trainer["step"], "extra": trainer["extra"], "config": cfg, "model": model}
