"""Data parallelism under ``torchrun``: one process per device, gradients averaged across processes.

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; a run started
without it is one process, and everything here then does nothing.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from ..profile import get_device


def setup_distributed(device: torch.device | None = None) -> tuple[int, int, torch.device]:
    """Join the process group when launched by torchrun; return ``(rank, world_size, device)``.

    Without torchrun (no ``WORLD_SIZE`` > 1 in the environment) this does nothing and returns
    ``(0, 1, device or get_device())``. Uses NCCL with one GPU per process, gloo on CPU.
    """
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


def rank_and_world() -> tuple[int, int]:
    """(this process's rank, number of processes): (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def mean_over_processes(value: torch.Tensor, world: int) -> torch.Tensor:
    """The mean of ``value`` over all processes (itself when there is one)."""
    if world > 1:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= world
    return value


def dropout_seed(seed: int, rank: int, step: int) -> int:
    """Seed of process ``rank``'s torch RNG for ``step`` under DDP: distinct per rank and step, and a pure
    function of them, so dropout differs across processes and a resumed run draws the same masks."""
    return ((seed * 1_000_003 + rank) * 1_000_000_007 + step) % 2**63
