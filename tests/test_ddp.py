"""DDP: two CPU processes (gloo) with batch B each train exactly like one process with batch 2B."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from gpt2_core.config import GPTConfig
from gpt2_core.data import GPTDataset
from gpt2_core.model import GPTModel
from gpt2_core.training import TrainConfig, setup_distributed, train

CFG = GPTConfig(vocab_size=53, context_length=8, emb_dim=16, n_heads=2, n_layers=1, drop_rate=0.0)
STEPS = 4


def _data() -> GPTDataset:
    g = torch.Generator().manual_seed(5)
    return GPTDataset(torch.randint(0, CFG.vocab_size, (400,), generator=g), 8)


def _run(batch_size: int, out_dir: str | None = None) -> list[float]:
    torch.manual_seed(0)
    model = GPTModel(CFG)
    cfg = TrainConfig(max_steps=STEPS, lr=1e-2, warmup_steps=1, eval_batches=1, progress=False, out_dir=out_dir)
    return train(model, _data(), None, cfg, batch_size=batch_size).losses


def _worker(rank: int, world: int, port: int, result_file: str, ckpt: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank), GPT2_COURSE_DEVICE="cpu")
    torch.set_num_threads(1)
    got_rank, got_world, device = setup_distributed()
    assert (got_rank, got_world, device.type) == (rank, world, "cpu")
    try:
        losses = _run(batch_size=2, out_dir=ckpt)
        with open(f"{result_file}.{rank}", "w") as f:
            json.dump(losses, f)
    finally:
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    result = str(tmp_path / "losses")
    ckpt = str(tmp_path / "ckpt")
    mp.spawn(_worker, args=(2, _free_port(), result, ckpt), nprocs=2, join=True)
    ranks = [json.loads(open(f"{result}.{r}").read()) for r in range(2)]
    assert ranks[0] == ranks[1]  # the logged loss is all-reduced, so every rank reports the same
    single = _run(batch_size=4)
    assert len(single) == STEPS
    assert ranks[0] == pytest.approx(single, abs=1e-5)
    # only rank 0 wrote the checkpoint, and it holds the whole run
    from gpt2_core.checkpoint import load_checkpoint

    assert load_checkpoint(ckpt, restore_rng=False)["step"] == STEPS


def test_setup_distributed_without_torchrun_is_a_no_op(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    rank, world, device = setup_distributed(torch.device("cpu"))
    assert (rank, world, device) == (0, 1, torch.device("cpu"))
    assert not torch.distributed.is_initialized()
