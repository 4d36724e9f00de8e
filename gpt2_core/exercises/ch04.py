"""Checkers for chapter 4 (the GPT-2 architecture).

- ``ch04.layer_norm``: ``layer_norm(x, weight, bias, eps=1e-5)`` over the last dimension (biased variance)
- ``ch04.gelu``: ``gelu(x)``, GPT-2's tanh approximation of GELU
- ``ch04.count_parameters``: ``count_parameters(cfg: GPTConfig) -> int`` by formula (tied output head),
  compared with the real GPTModel built on the meta device
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..config import GPTConfig
from ..model import GPTModel
from . import ExerciseFailed, exercise, expect_equal
from .ch03 import expect_close


@exercise("ch04.layer_norm")
def check_layer_norm(candidate: Callable) -> None:
    gen = torch.Generator().manual_seed(4)
    for shape in [(1, 5), (2, 3, 8), (4, 1, 16)]:
        x = torch.randn(shape, generator=gen) * 3 + 1  # not already normalised
        weight, bias = torch.randn(shape[-1], generator=gen), torch.randn(shape[-1], generator=gen)
        want = F.layer_norm(x, (shape[-1],), weight, bias, 1e-5)
        expect_close(candidate(x.clone(), weight, bias), want, f"x of shape {shape}", atol=1e-4)


@exercise("ch04.gelu")
def check_gelu(candidate: Callable) -> None:
    x = torch.linspace(-6, 6, 241)
    want = F.gelu(x, approximate="tanh")
    got = candidate(x.clone())
    if isinstance(got, torch.Tensor) and torch.allclose(got, F.gelu(x), atol=1e-6) and \
            not torch.allclose(got, want, atol=1e-6):
        raise ExerciseFailed("that is the exact (erf) GELU; GPT-2 uses the tanh approximation")
    expect_close(got, want, "x = linspace(-6, 6)")


_COUNT_CASES = [
    GPTConfig(vocab_size=10, context_length=4, emb_dim=8, n_heads=2, n_layers=1),
    GPTConfig(vocab_size=100, context_length=32, emb_dim=12, n_heads=3, n_layers=3),
    GPTConfig(vocab_size=50, context_length=16, emb_dim=16, n_heads=4, n_layers=2, qkv_bias=False),
    GPTConfig.preset("gpt2"),
]


@exercise("ch04.count_parameters")
def check_count_parameters(candidate: Callable) -> None:
    for cfg in _COUNT_CASES:
        with torch.device("meta"):
            want = GPTModel(cfg).num_parameters()
        got = candidate(cfg)
        if not isinstance(got, int) or isinstance(got, bool):
            raise ExerciseFailed(f"return an int, got {type(got).__name__}")
        expect_equal(got, want, f"{cfg}")
