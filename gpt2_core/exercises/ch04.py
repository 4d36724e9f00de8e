"""Checkers for chapter 4 (the GPT-2 architecture).

- ``ch04.count_parameters``: ``count_parameters(cfg: GPTConfig) -> int`` by formula (tied output head),
  compared with the real GPTModel built on the meta device
- ``ch04.flops_per_token``: ``flops_per_token(cfg, training=False) -> int``: ``2 *`` (weights of every matrix
  multiplication, the output head included even when tied) ``+ 2 * n_layers * context_length * emb_dim``
  (attention's two matmuls, halved by the causal mask) for a forward pass; three times that to train
- ``ch04.kv_cache_bytes``: ``kv_cache_bytes(cfg, batch, num_tokens, dtype) -> int``, the memory of the keys
  and values a KV cache keeps for ``batch`` sequences of ``num_tokens`` tokens

Reference solutions: :mod:`gpt2_core.exercises.solutions.ch04`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..model.attention import KVCache
from ..model.config import GPTConfig
from ..model.gpt import GPTModel
from . import ExerciseFailed, exercise, expect_equal

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


# The course's shapes and GPT-2's, plus a small vocabulary (the course tokenizer's) where the head is cheap.
_FLOP_CASES = [
    GPTConfig.preset("tiny"),
    GPTConfig.preset("default", vocab_size=8192),
    GPTConfig.preset("gpt2"),
    GPTConfig.preset("gpt2-xl"),
    GPTConfig(vocab_size=300, context_length=32, emb_dim=48, n_heads=3, n_layers=2, qkv_bias=False),
]


def _matmul_weights(cfg: GPTConfig) -> tuple[int, int]:
    """Weights of every nn.Linear of the real model (the tied head is a Linear too: it is multiplied),
    and all its parameters (for the hint when they are used instead)."""
    with torch.device("meta"):
        model = GPTModel(cfg)
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear)), model.num_parameters()


def _as_count(got: object, what: str) -> float:
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        raise ExerciseFailed(f"for {what} return a number, got {type(got).__name__}")
    return float(got)


@exercise("ch04.flops_per_token")
def check_flops_per_token(candidate: Callable) -> None:
    for cfg in _FLOP_CASES:
        weights, parameters = _matmul_weights(cfg)
        attention = 2 * cfg.n_layers * cfg.context_length * cfg.emb_dim
        head = cfg.vocab_size * cfg.emb_dim
        for training in (False, True):
            factor = 3 if training else 1
            want = factor * (2 * weights + attention)
            what = f"{cfg} with training={training}"
            got = _as_count(candidate(cfg, training=training), what)
            if got == want:
                continue
            hints = {factor * (2 * (weights - head) + attention): "you left out the output head: tying shares "
                     "the memory of the weights, not the work of multiplying by them",
                     factor * (2 * weights + 2 * attention): "the causal mask lets a token see half the "
                     "context on average, so attention costs 2 * n_layers * context_length * emb_dim, not twice that",
                     factor * 2 * weights: "you left out attention's scores and weighted sum",
                     factor * (2 * parameters + attention): "you counted every parameter; count the weights "
                     "that are multiplied (the embeddings are lookups; biases and LayerNorms are left out)",
                     2 * weights + attention: "training = forward + backward, and backward costs about twice "
                     "the forward: 3x in all"}
            hint = hints.get(got, "count 2 FLOPs (a multiply and an add) per weight of every matrix multiplication")
            raise ExerciseFailed(f"for {what} expected {want:,} but got {got:,.0f}; {hint}")


@exercise("ch04.kv_cache_bytes")
def check_kv_cache_bytes(candidate: Callable) -> None:
    cases = [(GPTConfig.preset("tiny"), 4, 64, torch.float32), (GPTConfig.preset("gpt2"), 1, 1024, torch.float32),
             (GPTConfig.preset("gpt2"), 8, 1024, torch.bfloat16), (GPTConfig.preset("gpt2-xl"), 1, 1024, torch.float16),
             (GPTConfig.preset("default"), 3, 100, torch.float64)]
    for cfg, batch, tokens, dtype in cases:
        cache = KVCache(cfg.n_layers, batch, cfg.n_heads, cfg.head_dim, tokens, device="meta", dtype=dtype)
        want = sum(t.numel() * t.element_size() for t in cache.keys + cache.values)
        what = f"{cfg.n_layers} layers x {cfg.n_heads} heads of width {cfg.head_dim}, batch={batch}, " \
               f"num_tokens={tokens}, dtype={dtype}"
        got = _as_count(candidate(cfg, batch, tokens, dtype), what)
        if got == want / 2:
            raise ExerciseFailed(f"for {what} you got half the answer: the cache keeps keys *and* values")
        if got != want:
            raise ExerciseFailed(f"for {what} expected {want:,} bytes but got {got:,.0f} "
                                 f"(hint: {dtype} takes {dtype.itemsize} bytes a number)")
