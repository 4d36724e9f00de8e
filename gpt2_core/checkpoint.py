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
the next save or load moves back into place. A crash can also leave a ``<dir>.tmp-<pid>``: the next save
of the same path removes every one whose process is no longer running (on POSIX; where that cannot be
checked, every one but the saving process's own).

Loading into a given model is refused, with the differing fields named, when the saved GPTConfig
differs from ``model.cfg`` in anything that changes what the weights mean (``drop_rate`` does not);
a checkpoint from a newer format version is refused too.
"""

from __future__ import annotations

import glob
import json
import os
import random
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from .config import GPTConfig
from .model import unwrap_model  # re-exported: it used to live here

__all__ = ["FORMAT_VERSION", "check_checkpoint_path", "checkpoint_info", "load_checkpoint", "save_checkpoint",
           "unwrap_model"]

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TRAINER_FILE = "trainer.safetensors"
TRAINER_JSON = "trainer.json"
FORMAT = "gpt2_core-checkpoint"
FORMAT_VERSION = 1
# GPTConfig fields that do not change what the weights mean: a checkpoint may load despite them.
CONFIG_FIELDS_IGNORED = frozenset({"drop_rate"})


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
    if not cuda:
        return
    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if have != len(cuda):
        # not an error (the weights and CPU streams are restored), but GPU randomness (dropout on CUDA)
        # will not continue the saved stream, so the run is not bitwise the one that was saved
        warnings.warn(f"the checkpoint holds CUDA RNG states for {len(cuda)} GPU(s) but this process sees "
                      f"{have}; CUDA random numbers were not restored, so a resumed run on GPU is not bitwise "
                      f"identical to the saved one. Load on a machine with {len(cuda)} GPU(s) for an exact "
                      "resume, or pass restore_rng=False to silence this.", RuntimeWarning, stacklevel=3)
        return
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


def _head_info(model: nn.Module) -> dict[str, Any] | None:
    head = getattr(model, "out_head", None)
    if not isinstance(head, nn.Linear):
        return None
    info = {"in_features": head.in_features, "out_features": head.out_features, "bias": head.bias is not None}
    if hasattr(head, "pooling"):  # a classification head reads the sequence its own way (chapter 6)
        info["pooling"] = head.pooling
    return info


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


def _pid_running(pid: int) -> bool:
    """POSIX only: signal 0 checks that a process exists (on Windows os.kill would terminate it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _remove_stale_tmp(path: Path) -> None:
    """Remove ``<dir>.tmp-<pid>`` left by crashed saves of ``path``: those whose process is gone (POSIX),
    or, where liveness cannot be checked, all but ours (two live processes never save the same path)."""
    for tmp in path.parent.glob(f"{glob.escape(path.name)}.tmp-*"):
        pid = tmp.name[len(path.name) + len(".tmp-"):]
        if not pid.isdigit() or int(pid) == os.getpid() or not tmp.is_dir():
            continue
        if os.name == "posix" and _pid_running(int(pid)):
            continue  # another live process is saving here right now: leave its directory alone
        shutil.rmtree(tmp, ignore_errors=True)


def check_checkpoint_path(path: str | os.PathLike) -> Path:
    """Raise ValueError unless a checkpoint can be saved at ``path``; checks only, writes nothing.

    Saving replaces the whole directory through a sibling temporary one, so ``path`` must not be a file
    or a non-empty directory that is not a checkpoint, and its parent must be writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} exists and is not a directory; a checkpoint is a directory, "
                         "pick another path")
    if path.is_dir() and not (path / CONFIG_FILE).is_file() and any(path.iterdir()):
        raise ValueError(f"{path} is a non-empty directory that is not a checkpoint; saving would replace "
                         "everything in it, so pick a new or empty directory")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent  # the nearest folder that exists: save creates the rest
    if not parent.is_dir():
        raise ValueError(f"cannot save a checkpoint at {path}: {parent} is a file, not a folder; pick another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot save a checkpoint at {path}: {parent} is not writable; pick a folder you "
                         "can write to")
    return path


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
    check_checkpoint_path(path)

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

    return write_dir_atomically(path, files)


def write_dir_atomically(path: str | os.PathLike, files: dict[str, bytes]) -> Path:
    """Replace directory ``path`` by one holding ``files`` (name -> bytes), atomically (see the module doc).

    The files go into a sibling ``<dir>.tmp-<pid>`` and are fsynced; only then is the old directory
    swapped out. A crash at any point leaves either the old directory or the new one, never a mix.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _recover(path)
    _remove_stale_tmp(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        for name, data in files.items():
            _write_bytes(tmp / name, data)
        _fsync_dir(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # the previous directory was never touched
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
            if "pooling" in head:
                model.out_head.pooling = head["pooling"]
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


def _read_config(path: Path) -> tuple[dict[str, Any], GPTConfig]:
    """config.json of checkpoint ``path``, checked: our format, a version this code reads, a valid GPTConfig."""
    _recover(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no checkpoint directory at {path}; "
                                "save one with save_checkpoint(path, model)")
    config_file = path / CONFIG_FILE
    config = _read_json(config_file)
    if not isinstance(config, dict) or config.get("format") != FORMAT or "model_config" not in config:
        raise ValueError(f"{config_file} is not a gpt2_core checkpoint config (format {FORMAT!r})")
    version = config.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{config_file} has an invalid format version {version!r}; the checkpoint is corrupt")
    if version > FORMAT_VERSION:
        raise ValueError(f"{path} was written in checkpoint format version {version}, newer than the "
                         f"{FORMAT_VERSION} this gpt2_core reads; upgrade gpt2_core to load it")
    try:
        cfg = GPTConfig.from_dict(config["model_config"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{config_file} holds an invalid model config: {err}") from err
    return config, cfg


def _check_config(saved: GPTConfig, model: nn.Module, path: Path) -> None:
    """Same key names and shapes are not enough (n_heads=2 and 6 give the same shapes): compare the configs."""
    cfg = getattr(model, "cfg", None)
    if not isinstance(cfg, GPTConfig):
        return  # not a GPTModel: the state-dict check below is all we can do
    old, new = saved.to_dict(), cfg.to_dict()
    diff = [f"{k}: checkpoint {old[k]!r}, model {new[k]!r}" for k in old
            if k not in CONFIG_FIELDS_IGNORED and old[k] != new.get(k)]
    if diff:
        raise ValueError(f"{path} was saved from a model with another config ({'; '.join(diff)}); its weights "
                         "would mean something else here. Build the model from the checkpoint's config "
                         "(load_checkpoint(path) without a model does that)")


def checkpoint_info(path: str | os.PathLike) -> dict[str, Any]:
    """``{"step", "extra", "config"}`` of a checkpoint, read from its JSON files only (no tensors, nothing
    loaded into a model): a cheap way to check a checkpoint before a run starts. Raises like
    :func:`load_checkpoint`."""
    path = Path(path)
    _, cfg = _read_config(path)
    trainer_json = path / TRAINER_JSON
    trainer = _read_json(trainer_json)
    if not isinstance(trainer, dict) or not {"step", "extra"} <= set(trainer):
        raise ValueError(f"{trainer_json} lacks step or extra; the checkpoint is corrupt")
    return {"step": trainer["step"], "extra": trainer["extra"], "config": cfg}


def load_checkpoint(path: str | os.PathLike, model: nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None,
                    restore_rng: bool = True, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Loads weights into ``model`` (or builds a new GPTModel from the saved config, with the saved output
    head, on ``map_location``), optimizer and scheduler state into the ones given, and restores the RNG
    states unless ``restore_rng=False``. Every file is read and checked before anything is changed:
    a ``model`` whose GPTConfig differs from the saved one (other than ``drop_rate``) is refused with a
    ValueError naming the fields, as is a checkpoint from a newer format version. CUDA RNG states that
    cannot be restored here (no GPU, or another number of GPUs) give a RuntimeWarning.
    Returns ``{"step", "extra", "config", "model"}``.
    """
    path = Path(path)
    device = str(torch.device(map_location))
    config, cfg = _read_config(path)
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
    _check_config(cfg, inner, path)
    _check_state(inner, weights, tied, model_file)
    inner.load_state_dict(weights)
    if optimizer is not None:
        optimizer.load_state_dict(trainer["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(trainer["scheduler"])
    if restore_rng:
        _set_rng_state(trainer["rng"])
    return {"step": trainer["step"], "extra": trainer["extra"], "config": cfg, "model": model}
