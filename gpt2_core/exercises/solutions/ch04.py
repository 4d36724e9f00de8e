"""Reference solutions of chapter 4's exercises (see :mod:`gpt2_core.exercises.ch04` for the checkers).

Try each exercise in the notebook first; these are here to compare with afterwards.
"""

from __future__ import annotations

import torch

from ...model.config import GPTConfig


def count_parameters(cfg: GPTConfig) -> int:
    """Embeddings + blocks + final LayerNorm; the output head is tied to the token embedding (no new weights)."""
    d = cfg.emb_dim
    attention = 3 * d * d + (3 * d if cfg.qkv_bias else 0) + d * d + d  # fused qkv, then out_proj
    feed_forward = d * 4 * d + 4 * d + 4 * d * d + d
    norms = 2 * 2 * d  # two LayerNorms, each a scale and a shift
    return (cfg.vocab_size + cfg.context_length) * d + cfg.n_layers * (attention + feed_forward + norms) + 2 * d


def flops_per_token(cfg: GPTConfig, training: bool = False) -> int:
    """2 FLOPs per matmul weight (12 d^2 a block, V d for the head) plus causal attention, x3 to train."""
    d = cfg.emb_dim
    matmul_weights = cfg.n_layers * 12 * d * d + cfg.vocab_size * d
    forward = 2 * matmul_weights + 2 * cfg.n_layers * cfg.context_length * d
    return 3 * forward if training else forward


def kv_cache_bytes(cfg: GPTConfig, batch: int, num_tokens: int, dtype: torch.dtype) -> int:
    """Keys and values (2) of every layer: ``emb_dim`` numbers (heads x head_dim) per token and sequence."""
    return 2 * cfg.n_layers * batch * num_tokens * cfg.emb_dim * dtype.itemsize


SOLUTIONS = {
    "ch04.count_parameters": count_parameters,
    "ch04.flops_per_token": flops_per_token,
    "ch04.kv_cache_bytes": kv_cache_bytes,
}
