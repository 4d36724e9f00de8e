"""Profiles and device choice: one place that decides how big everything is and where it runs.

``GPT2_COURSE_PROFILE`` picks the size of everything a notebook does:

- ``tiny``    CI: seconds per notebook, on CPU or GPU
- ``default`` a learner's laptop CPU: minutes per notebook
- ``gpt2``    a GPU: the real 124M shapes (and OpenAI's weights when they can be downloaded)

``GPT2_COURSE_DEVICE`` forces a device (``cpu``, ``cuda``, ``cuda:1``, ``mps``); otherwise the
first available of cuda, mps, cpu is used.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import TypeVar

import torch

PROFILES = ("tiny", "default", "gpt2")
PROFILE_ENV = "GPT2_COURSE_PROFILE"
DEVICE_ENV = "GPT2_COURSE_DEVICE"
DATA_ENV = "GPT2_COURSE_DATA"

T = TypeVar("T")


def profile_name() -> str:
    """The active profile, from ``GPT2_COURSE_PROFILE`` (``default`` when unset)."""
    name = os.environ.get(PROFILE_ENV, "default").strip().lower() or "default"
    if name not in PROFILES:
        raise ValueError(
            f"{PROFILE_ENV}={name!r} is not a profile; use one of {', '.join(PROFILES)} "
            f"(for example: export {PROFILE_ENV}=tiny)"
        )
    return name


def pick(*, tiny: T, default: T, gpt2: T | None = None, profile: str | None = None) -> T:
    """Return the value for the active (or given) profile; ``gpt2`` falls back to ``default``."""
    name = profile or profile_name()
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; use one of {', '.join(PROFILES)}")
    if name == "tiny":
        return tiny
    if name == "gpt2" and gpt2 is not None:
        return gpt2
    return default


def get_device() -> torch.device:
    """The device to run on: ``GPT2_COURSE_DEVICE`` if set, else cuda, then mps, then cpu."""
    forced = os.environ.get(DEVICE_ENV, "").strip()
    if forced:
        try:
            device = torch.device(forced)
        except RuntimeError as err:
            raise ValueError(f"{DEVICE_ENV}={forced!r} is not a device name; use cpu, cuda or mps") from err
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"{DEVICE_ENV}={forced!r} but CUDA is not available here; unset it or use cpu")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"{DEVICE_ENV}={forced!r} but MPS is not available here; unset it or use cpu")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int = 123) -> None:
    """Seed Python and torch (all devices) so that CPU runs are reproducible run to run."""
    random.seed(seed)
    torch.manual_seed(seed)


def data_dir() -> Path:
    """The course's data folder (``data/`` at the repository root unless ``GPT2_COURSE_DATA`` is set)."""
    override = os.environ.get(DATA_ENV)
    path = Path(override) if override else Path(__file__).resolve().parent.parent / "data"
    return path


def cache_dir() -> Path:
    """Where downloaded files are cached (git-ignored)."""
    path = data_dir() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def describe() -> str:
    """One line saying what runs where, printed by every notebook's first cell."""
    device = get_device()
    extra = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    return (
        f"profile={profile_name()}  device={device}{extra}  torch={torch.__version__}  "
        f"threads={torch.get_num_threads()}"
    )
