"""Tests for gpt2_core.lora: LoRALinear, inject_lora, merge_lora."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from gpt2_core.finetuning.lora import (
    DEFAULT_TARGETS,
    LoRALinear,
    count_trainable,
    inject_lora,
    lora_parameter_count,
    merge_lora,
)
from gpt2_core.model.config import GPTConfig
from gpt2_core.model.gpt import GPTModel


@pytest.fixture()
def model() -> GPTModel:
    torch.manual_seed(0)
    return GPTModel(GPTConfig.preset("tiny", drop_rate=0.0)).eval()


def _ids() -> torch.Tensor:
    return torch.randint(0, 50257, (2, 9), generator=torch.Generator().manual_seed(1))


def test_lora_linear_starts_equal_to_base():
    torch.manual_seed(0)
    base = nn.Linear(6, 5)
    lora = LoRALinear(base, rank=2, alpha=4)
    x = torch.randn(3, 4, 6)
    assert torch.equal(lora(x), base(x))
    assert lora.A.shape == (6, 2) and lora.B.shape == (2, 5) and lora.scaling == 2.0
    assert torch.count_nonzero(lora.A) > 0 and torch.count_nonzero(lora.B) == 0
    assert not base.weight.requires_grad and not base.bias.requires_grad
    assert (lora.in_features, lora.out_features) == (6, 5) and "rank=2" in repr(lora)


def test_lora_linear_forward_formula():
    torch.manual_seed(0)
    base = nn.Linear(4, 3)
    lora = LoRALinear(base, rank=2, alpha=3)
    with torch.no_grad():
        lora.B.normal_()
    x = torch.randn(5, 4)
    want = base(x) + 1.5 * (x @ lora.A @ lora.B)
    assert torch.allclose(lora(x), want, atol=1e-6)
    assert torch.allclose(lora.merged()(x), want, atol=1e-5)


def test_gradient_only_reaches_a_and_b(model):
    inject_lora(model, rank=2, alpha=4)
    with torch.no_grad():  # make B non-zero so A gets a gradient too
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.B.normal_(std=0.01)
    model(_ids()).sum().backward()
    for name, p in model.named_parameters():
        if name.endswith((".A", ".B")):
            assert p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert not p.requires_grad and p.grad is None, name


def test_inject_counts_by_formula(model):
    cfg = model.cfg
    d = cfg.emb_dim
    rank = 4
    per_block = (lora_parameter_count(d, 3 * d, rank) + lora_parameter_count(d, d, rank)
                 + lora_parameter_count(d, 4 * d, rank) + lora_parameter_count(4 * d, d, rank))
    before = count_trainable(model)
    assert before == model.num_parameters()
    trainable = inject_lora(model, rank=rank, alpha=8)
    assert trainable == cfg.n_layers * per_block == count_trainable(model)
    assert trainable == rank * cfg.n_layers * (d + 3 * d + d + d + d + 4 * d + 4 * d + d)
    wrapped = [n for n, m in model.named_modules() if isinstance(m, LoRALinear)]
    assert len(wrapped) == cfg.n_layers * len(DEFAULT_TARGETS)
    assert torch.equal(model(_ids()), model(_ids()))


def test_inject_some_targets_and_starts_equal(model):
    ids = _ids()
    want = model(ids)
    trainable = inject_lora(model, rank=1, alpha=1, targets=("att.qkv",))
    d = model.cfg.emb_dim
    assert trainable == model.cfg.n_layers * (d + 3 * d)
    assert torch.equal(model(ids), want)


def test_merge_keeps_outputs_and_restores_linear(model):
    ids = _ids()
    inject_lora(model, rank=4, alpha=8)
    torch.manual_seed(3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.B.normal_(std=0.05)
    before = model(ids)
    assert not torch.allclose(before, GPTModel(model.cfg)(ids))  # the update really changes things
    merged = merge_lora(model)
    assert merged is model
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert type(model.blocks[0].att.qkv) is nn.Linear
    assert torch.allclose(model(ids), before, atol=1e-5)
    assert set(model.state_dict()) == set(GPTModel(model.cfg).state_dict())


def test_merge_changes_weights(model):
    original = copy.deepcopy(model.blocks[0].ff.fc.weight.detach())
    inject_lora(model, rank=2, alpha=2)
    with torch.no_grad():
        model.blocks[0].ff.fc.B.fill_(0.1)
    merge_lora(model)
    assert not torch.allclose(model.blocks[0].ff.fc.weight, original)


@pytest.mark.parametrize("rank, alpha, err, match", [
    (0, 1.0, ValueError, "rank"), (-2, 1.0, ValueError, "rank"), (2.0, 1.0, TypeError, "rank"),
    (2, 0, ValueError, "alpha"), (2, -1.0, ValueError, "alpha"), (2, "1", TypeError, "alpha"),
])
def test_rank_alpha_errors(model, rank, alpha, err, match):
    with pytest.raises(err, match=match):
        LoRALinear(nn.Linear(2, 2), rank, alpha)
    with pytest.raises(err, match=match):
        inject_lora(model, rank, alpha)


def test_other_errors(model):
    with pytest.raises(TypeError, match="nn.Linear"):
        LoRALinear(nn.Conv1d(2, 2, 1), 1, 1.0)
    with pytest.raises(ValueError, match="no nn.Linear matches"):
        inject_lora(model, 2, 4, targets=("att.query",))
    with pytest.raises(TypeError, match="tuple"):
        inject_lora(model, 2, 4, targets="att.qkv")
    with pytest.raises(ValueError, match="no LoRA layers"):
        merge_lora(model)
    inject_lora(model, 2, 4)
    with pytest.raises(ValueError, match="already has LoRA"):
        inject_lora(model, 2, 4)


def test_lora_count_solution_matches_inject():
    from gpt2_core.exercises.solutions.ch07 import lora_count

    cfg = GPTConfig.preset("tiny")
    assert lora_count(cfg, 3) == inject_lora(GPTModel(cfg), 3, 6)
