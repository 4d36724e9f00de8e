"""A training run's state as tensors + JSON (what a checkpoint stores besides the weights), and the RNG states.

Nested state dicts (the optimizer's, the scheduler's, the random number generators') become a flat dict of
tensors keyed by their path (``"optimizer.state.0.exp_avg"``), saved with safetensors, and JSON that keeps
a ``{"__tensor__": path}`` placeholder for each. Tuples and dicts with non-string keys (the optimizer's
parameter indices) get small tagged forms so they come back as the same Python types. No pickle: loading
never runs code hidden in a file.
"""

from __future__ import annotations

import random
import warnings
from typing import Any

import torch


def encode_state(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": path}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: encode_state(v, f"{path}.{k}", tensors) for k, v in obj.items()}
        for k in obj:
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"cannot save {path}: dict key {k!r} is not a str or int")
        return {"__dict__": [[k, encode_state(v, f"{path}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [encode_state(v, f"{path}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode_state(v, f"{path}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot save {path}: values of type {type(obj).__name__} are not supported "
                    "(only tensors, numbers, strings, lists, tuples and dicts)")


def decode_state(obj: Any, tensors: dict[str, torch.Tensor], source: str) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            key = obj["__tensor__"]
            if key not in tensors:
                raise ValueError(f"{source} refers to tensor {key!r}, which is missing from its tensors file")
            return tensors[key]
        if set(obj) == {"__tuple__"}:
            return tuple(decode_state(v, tensors, source) for v in obj["__tuple__"])
        if set(obj) == {"__dict__"}:
            return {k: decode_state(v, tensors, source) for k, v in obj["__dict__"]}
        return {k: decode_state(v, tensors, source) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_state(v, tensors, source) for v in obj]
    return obj


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
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
