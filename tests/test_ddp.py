"""DDP: two CPU processes (gloo) with batch B each train exactly like one process with batch 2B."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from conftest import TINY, tiny_tokenizer

from gpt2_core.model.gpt import GPTModel
from gpt2_core.pretraining.distributed import setup_distributed
from gpt2_core.pretraining.loop import TrainConfig, train
from gpt2_core.text.windows import GPTDataset

CFG = TINY.replace(drop_rate=0.0)
STEPS = 4


def _data() -> GPTDataset:
    g = torch.Generator().manual_seed(5)
    return GPTDataset(torch.randint(0, CFG.vocab_size, (400,), generator=g), 8)


def _run(batch_size: int, out_dir: str | None = None) -> list[float]:
    torch.manual_seed(0)
    model = GPTModel(CFG)
    cfg = TrainConfig(max_steps=STEPS, lr=1e-2, warmup_steps=1, eval_batches=1, progress=False, out_dir=out_dir)
    return train(model, _data(), None, cfg, batch_size=batch_size, tokenizer=tiny_tokenizer()).losses


def _leave_process_group() -> None:
    # Both processes reach this point before either tears its group down: a process that destroys the
    # group while the other still has gloo work in flight can abort (SIGABRT) during teardown.
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    """One pair of processes runs every DDP job of this file (a spawn costs seconds: two fresh interpreters
    importing torch); returns (each rank's results, the folder they wrote to)."""
    folder = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, _free_port(), str(folder)), nprocs=2, join=True)
    return [json.loads((folder / f"results.{r}.json").read_text()) for r in range(2)], folder


def test_two_processes_match_one_process_with_the_same_global_batch(ddp):
    ranks, folder = ddp
    assert ranks[0]["plain"] == ranks[1]["plain"]  # the logged loss is all-reduced, so every rank reports the same
    single = _run(batch_size=4)
    assert len(single) == STEPS
    assert ranks[0]["plain"] == pytest.approx(single, abs=1e-5)
    # only rank 0 wrote the checkpoint, and it holds the whole run
    from gpt2_core.pretraining.checkpoint import load_checkpoint

    assert load_checkpoint(folder / "plain", restore_rng=False)["step"] == STEPS


def test_setup_distributed_without_torchrun_is_a_no_op(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    rank, world, device = setup_distributed(torch.device("cpu"))
    assert (rank, world, device) == (0, 1, torch.device("cpu"))
    assert not torch.distributed.is_initialized()


# --- gradient accumulation (the no_sync path) and resume under DDP ---------------------------------

DROP_CFG = CFG.replace(drop_rate=0.2)  # dropout on: each process's random stream matters for the resume


def _run_cfg(cfg, batch_size: int, seed: int = 0, **train_kw) -> list[float]:
    torch.manual_seed(seed)
    model = GPTModel(cfg)
    tc = TrainConfig(max_steps=STEPS, lr=1e-2, warmup_steps=1, eval_batches=1, progress=False, **train_kw)
    return train(model, _data(), None, tc, batch_size=batch_size, tokenizer=tiny_tokenizer()).losses


def _worker(rank: int, world: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank), GPT2_COURSE_DEVICE="cpu")
    torch.set_num_threads(1)
    got_rank, got_world, device = setup_distributed()
    assert (got_rank, got_world, device.type) == (rank, world, "cpu")
    try:
        plain = _run(batch_size=2, out_dir=f"{folder}/plain")
        accum = _run_cfg(CFG, batch_size=1, grad_accum=2)  # micro-batches 1 of 2 skip the all-reduce
        full = _run_cfg(DROP_CFG, batch_size=2)
        after_full = torch.rand(1).item()  # where this process's RNG stands after the run
        first = _run_cfg(DROP_CFG, batch_size=2, out_dir=f"{folder}/ckpt", stop_at_step=2)
        resumed = _run_cfg(DROP_CFG, batch_size=2, seed=7, resume_from=f"{folder}/ckpt")  # the checkpoint decides
        with open(f"{folder}/results.{rank}.json", "w") as f:
            json.dump({"plain": plain, "accum": accum, "full": full, "first": first, "resumed": resumed,
                       "rng": after_full}, f)
    finally:
        _leave_process_group()


def test_ddp_grad_accum_matches_one_process_and_a_resumed_run_matches_the_uninterrupted_one(ddp):
    ranks, _ = ddp
    # grad_accum=2 with 1 window per process and step equals one process with 2 windows and grad_accum=2
    single = _run_cfg(CFG, batch_size=2, grad_accum=2)
    assert len(single) == STEPS
    assert ranks[0]["accum"] == pytest.approx(single, abs=1e-5)
    assert ranks[0]["accum"] == ranks[1]["accum"]
    # stopped at step 2 and resumed (with dropout): the very same losses as the uninterrupted run
    assert len(ranks[0]["first"]) == 2
    assert ranks[0]["resumed"] == ranks[0]["full"]
    assert ranks[1]["resumed"] == ranks[1]["full"]
    # each process has its own dropout stream (seeded from seed, rank and step)
    assert ranks[0]["rng"] != ranks[1]["rng"]
