"""Checkers for chapter 3 (attention).

- ``ch03.causal_attention``: ``causal_attention(q, k, v) -> context`` for tensors of shape
  (..., tokens, head_dim): softmax(q k^T / sqrt(head_dim)) with future positions masked, times v
- ``ch03.split_heads``: ``split_heads(x, num_heads)``: (batch, tokens, d) -> (batch, heads, tokens, head_dim)
- ``ch03.merge_heads``: ``merge_heads(x) -> (batch, tokens, heads * head_dim)``, the inverse of split_heads
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from . import ExerciseFailed, exercise

# (batch, heads, tokens, head_dim): one token, one head, odd sizes
_SHAPES = [(1, 1, 1, 4), (2, 3, 5, 4), (1, 2, 7, 3), (3, 5, 4, 8)]


def expect_close(got: object, want: torch.Tensor, what: str, atol: float = 1e-5) -> None:
    """Raise ExerciseFailed unless ``got`` is a tensor of ``want``'s shape with the same values."""
    if not isinstance(got, torch.Tensor):
        raise ExerciseFailed(f"for {what} return a torch.Tensor, got {type(got).__name__}")
    if got.shape != want.shape:
        raise ExerciseFailed(f"for {what} expected shape {tuple(want.shape)} but got {tuple(got.shape)}")
    if not torch.allclose(got.float(), want.float(), atol=atol, rtol=1e-4):
        worst = (got.float() - want.float()).abs().max().item()
        raise ExerciseFailed(f"for {what} the values differ (largest difference {worst:.3g})")


@exercise("ch03.causal_attention")
def check_causal_attention(candidate: Callable) -> None:
    gen = torch.Generator().manual_seed(3)
    for shape in _SHAPES:
        q, k, v = (torch.randn(shape, generator=gen) * 2 for _ in range(3))
        want = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        expect_close(candidate(q.clone(), k.clone(), v.clone()), want, f"q, k, v of shape {shape}")


@exercise("ch03.split_heads")
def check_split_heads(candidate: Callable) -> None:
    for b, h, t, d in _SHAPES:
        x = torch.arange(b * t * h * d, dtype=torch.float32).view(b, t, h * d)
        want = x.view(b, t, h, d).transpose(1, 2)
        expect_close(candidate(x.clone(), h), want, f"x of shape {(b, t, h * d)} and num_heads={h}", atol=0)


@exercise("ch03.merge_heads")
def check_merge_heads(candidate: Callable) -> None:
    for b, h, t, d in _SHAPES:
        x = torch.arange(b * h * t * d, dtype=torch.float32).view(b, h, t, d)
        want = x.transpose(1, 2).reshape(b, t, h * d)
        expect_close(candidate(x.clone()), want, f"x of shape {(b, h, t, d)}", atol=0)
