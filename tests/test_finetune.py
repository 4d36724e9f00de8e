"""Tests for gpt2_core.finetune: the fine-tuning loop shared by chapters 6 and 7."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from gpt2_core.finetuning.loop import FinetuneConfig, epochs_to_steps, finetune
from gpt2_core.pretraining.optim import lr_schedule
from gpt2_core.pretraining.runner import measure


def regression(n: int = 64, seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1
    return DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(1))


def mse(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return F.mse_loss(model(x).squeeze(-1), y)


class Net(nn.Sequential):
    def __init__(self) -> None:
        torch.manual_seed(0)
        super().__init__(nn.Linear(4, 16), nn.Dropout(0.1), nn.Linear(16, 1))


def test_loss_falls_and_schedule_is_warmup_then_cosine():
    model = Net()
    cfg = FinetuneConfig(steps=60, lr=1e-2, warmup_steps=5, weight_decay=0.0, progress=False)
    history = finetune(model, regression(), mse, cfg)
    assert history.steps == list(range(1, 61)) and len(history.losses) == 60
    assert sum(history.losses[-5:]) / 5 < 0.2 * sum(history.losses[:5]) / 5
    expected = [lr_schedule(s, 60, 5, 1e-2, 1e-3) for s in range(60)]
    assert history.lrs == pytest.approx(expected)
    assert not model.training and history.seconds > 0


def test_same_seed_same_run():
    a = finetune(Net(), regression(), mse, FinetuneConfig(steps=10, lr=1e-2, progress=False))
    b = finetune(Net(), regression(), mse, FinetuneConfig(steps=10, lr=1e-2, progress=False))
    assert a.losses == b.losses


def test_metrics_fn_runs_in_eval_mode_every_n_steps_and_at_the_end():
    modes = []

    def metrics_fn(model):
        modes.append((model.training, torch.is_grad_enabled()))
        return {"n": len(modes)}

    history = finetune(Net(), regression(), mse, FinetuneConfig(steps=10, lr=1e-3, eval_every=4, progress=False),
                       metrics_fn=metrics_fn)
    assert history.eval_steps == [4, 8, 10] and [e["n"] for e in history.evals] == [1, 2, 3]
    assert modes == [(False, False)] * 3


def test_measure_restores_the_mode_when_metrics_fn_fails():
    model = Net().train()

    def broken(m):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        measure(model, broken)
    assert model.training
    with pytest.raises(TypeError, match="dict"):
        measure(model, lambda m: 0.5)


def test_frozen_parameters_stay_put():
    model = Net()
    model[0].requires_grad_(False)
    before = model[0].weight.clone()
    finetune(model, regression(), mse, FinetuneConfig(steps=5, lr=1e-2, progress=False))
    assert torch.equal(model[0].weight, before)
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        finetune(model, regression(), mse, FinetuneConfig(steps=5, lr=1e-2, progress=False))


def test_a_non_finite_loss_stops_with_the_step():
    calls = []

    def exploding(model, batch):
        calls.append(1)
        loss = mse(model, batch)
        return loss * (math.inf if len(calls) == 3 else 1.0)

    with pytest.raises(FloatingPointError, match=r"at step 3 is inf \(not finite, lr 0\.000\d+\).*update was not "
                                                 r"applied\. Lower the learning rate \(lr=0\.001\)"):
        finetune(Net(), regression(), exploding, FinetuneConfig(steps=10, lr=1e-3, progress=False))


def test_cycles_through_epochs():
    loader = regression(n=16)  # 2 batches per epoch
    history = finetune(Net(), loader, mse, FinetuneConfig(steps=7, lr=1e-3, progress=False))
    assert len(history.losses) == 7
    assert epochs_to_steps(loader, 3) == 6 and epochs_to_steps(loader, 0.2) == 1


@pytest.mark.parametrize("kwargs, match", [
    (dict(steps=0, lr=1e-3), "steps"), (dict(steps=5, lr=0), "lr"), (dict(steps=5, lr=1e-3, warmup_steps=6), "warmup"),
    (dict(steps=5, lr=1e-3, min_lr=1.0), "min_lr"), (dict(steps=5, lr=1e-3, grad_clip=0), "grad_clip"),
    (dict(steps=5, lr=1e-3, eval_every=-1), "eval_every")])
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FinetuneConfig(**kwargs)


def test_argument_errors():
    cfg = FinetuneConfig(steps=2, lr=1e-3, progress=False)
    with pytest.raises(TypeError, match="DataLoader"):
        finetune(Net(), [1, 2], mse, cfg)
    with pytest.raises(TypeError, match="loss_fn"):
        finetune(Net(), regression(), None, cfg)
    with pytest.raises(TypeError, match="FinetuneConfig"):
        finetune(Net(), regression(), mse, {"steps": 2})
    with pytest.raises(ValueError, match="no batches"):
        finetune(Net(), DataLoader(TensorDataset(torch.zeros(0, 4), torch.zeros(0))), mse, cfg)
    with pytest.raises(ValueError, match="epochs"):
        epochs_to_steps(regression(), 0)
