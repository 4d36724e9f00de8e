"""Reference solutions of chapter 3's exercises (see :mod:`gpt2_core.exercises.ch03` for the checkers).

Try each exercise in the notebook first; these are here to compare with afterwards.
"""

from __future__ import annotations

import math

import torch


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(head_dim)) v with the future (above the diagonal) set to -inf before the softmax."""
    t = q.shape[-2]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    future = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
    return torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1) @ v


def grouped_query_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Give each query head its group's keys and values, then attend as usual.

    ``repeat_interleave`` repeats each key/value head in place (0, 0, 1, 1, ... for groups of two), so query
    head ``i`` meets key/value head ``i // (heads // groups)``. Only the small k, v are stored (a KV cache
    holds ``groups`` heads, not ``heads``); the repetition is a view of them in the computation.
    """
    per_group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(per_group, dim=1), v.repeat_interleave(per_group, dim=1)
    return causal_attention(q, k, v)


def local_causal_mask(num_queries: int, num_keys: int, window: int) -> torch.Tensor:
    """True where ``0 <= query position - key position < window``; query i sits at ``num_keys - num_queries + i``."""
    query_pos = torch.arange(num_keys - num_queries, num_keys)[:, None]
    distance = query_pos - torch.arange(num_keys)[None, :]  # how far back each key is
    return (distance >= 0) & (distance < window)


def padded_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Causal attention where pad keys are masked too; pad queries (which see nothing) give zeros."""
    t = q.shape[-2]
    real = torch.arange(t)[None, :] >= (t - lengths)[:, None]  # (batch, tokens): left padding
    allowed = torch.ones(t, t, dtype=torch.bool).tril() & real[:, None, None, :]  # (batch, 1, query, key)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    # A pad query allows no key: its row is softmax(all -inf) = NaN, so overwrite it with zeros.
    return torch.where(real[:, None, :, None], weights @ v, 0.0)


SOLUTIONS = {
    "ch03.causal_attention": causal_attention,
    "ch03.grouped_query_attention": grouped_query_attention,
    "ch03.local_causal_mask": local_causal_mask,
    "ch03.padded_attention": padded_attention,
}
