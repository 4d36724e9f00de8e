"""gpt2_core.pretraining.flops (FLOPs per token, peaks, MFU) and the training CLI's steady-state report."""

from __future__ import annotations

import re

import pytest
import torch

from gpt2_core.model.config import GPTConfig
from gpt2_core.model.gpt import GPTModel
from gpt2_core.pretraining.flops import (
    CUDA_BF16_PEAKS,
    matmul_parameters,
    measured_matmul_peak,
    mfu,
    peak_flops,
    training_flops_per_token,
)


def test_gpt2_small_flops_per_token():
    cfg = GPTConfig.preset("gpt2")
    n = GPTModel(cfg).num_parameters()
    assert n == 124_439_808 and matmul_parameters(cfg, n) == n - 1024 * 768
    # 6 N + 12 L d T at T = 1024: about 0.85 GFLOP per token
    assert training_flops_per_token(cfg, 1024, n) == 6 * (n - 786_432) + 12 * 12 * 768 * 1024
    assert training_flops_per_token(cfg, 1024, n) == pytest.approx(0.8546e9, rel=1e-3)


def test_mfu_and_errors():
    assert mfu(1000.0, 1e9, 4e12) == 0.25
    with pytest.raises(ValueError, match="peak"):
        mfu(1.0, 1.0, 0.0)
    cfg = GPTConfig.preset("gpt2")
    for bad in (0, 1.5, True):
        with pytest.raises((TypeError, ValueError), match="seq_len"):
            training_flops_per_token(cfg, bad, 10)
    with pytest.raises(ValueError, match="n_params"):
        training_flops_per_token(cfg, 8, 0)


def test_cpu_peak_is_measured():
    peak, source = peak_flops("cpu", torch.float32)
    assert peak > 1e9 and "measured float32" in source
    assert measured_matmul_peak("cpu", n=256, repeats=2) > 0


def test_cuda_peaks_match_the_right_card_first(monkeypatch):
    names = {"NVIDIA H100 80GB HBM3": 989e12, "NVIDIA H100 PCIe": 756e12, "NVIDIA A100-SXM4-80GB": 312e12,
             "NVIDIA L40S": 362e12, "NVIDIA L4": 121e12, "NVIDIA H200": 989e12}
    for name, want in names.items():
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None, n=name: n)
        peak, source = peak_flops(torch.device("cuda"), torch.bfloat16)
        assert peak == want and "data sheet" in source, name
    assert all(p > 1e13 for _, p in CUDA_BF16_PEAKS)


def test_cli_reports_steady_state_and_mfu(capsys, monkeypatch):
    from gpt2_core.course.train import main
    from gpt2_core.pretraining import recipes as pretrained
    from gpt2_core.text.ranks import gpt2_encoding

    monkeypatch.setattr(pretrained, "course_tokenizer", lambda profile=None: gpt2_encoding())
    assert main(["--profile", "tiny", "--preset", "tiny", "--train-chars", "6000", "--context-length", "16",
                 "--batch-size", "2", "--eval-batches", "1", "--warmup", "0", "--max-steps", "6",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    line = next(s for s in out.splitlines() if s.startswith("steady state:"))
    assert re.search(r"steady state: [\d,]+ tokens/s \(median of 6 timed steps;.*compile warm-up left out\); "
                     r"MFU \d+\.\d% of the measured float32 matmul peak", line), line
