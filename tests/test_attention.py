"""MultiHeadAttention and KVCache: equal to the textbook formula, causal, cache-consistent, clear errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2_core.model.attention import KVCache, MultiHeadAttention


def reference_attention(mha: MultiHeadAttention, x: torch.Tensor) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d) + causal mask) V per head, written out with plain tensor ops."""
    b, t, _ = x.shape
    d, h = mha.d_out, mha.num_heads
    q, k, v = mha.qkv(x).split(d, dim=-1)
    outs = []
    for i in range(h):
        sl = slice(i * mha.head_dim, (i + 1) * mha.head_dim)
        scores = q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(mha.head_dim)
        future = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
        weights = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
        outs.append(weights @ v[..., sl])
    return mha.out_proj(torch.cat(outs, dim=-1))


def make(d: int = 12, heads: int = 3, context: int = 16, dropout: float = 0.0, bias: bool = True):
    torch.manual_seed(0)
    return MultiHeadAttention(d, d, context, dropout, heads, bias).eval()


@settings(max_examples=15, deadline=None)
@given(heads=st.sampled_from([1, 2, 3, 5]), head_dim=st.integers(1, 6), t=st.integers(1, 9),
       batch=st.integers(1, 3), bias=st.booleans())
def test_matches_textbook_formula(heads, head_dim, t, batch, bias):
    mha = make(heads * head_dim, heads, 16, bias=bias)
    x = torch.randn(batch, t, heads * head_dim)
    with torch.no_grad():
        torch.testing.assert_close(mha(x), reference_attention(mha, x), atol=1e-5, rtol=1e-5)


def test_d_in_may_differ_from_d_out():
    mha = MultiHeadAttention(5, 8, 10, 0.0, 2)
    assert mha(torch.randn(2, 4, 5)).shape == (2, 4, 8)


def test_is_causal():
    mha = make()
    x = torch.randn(1, 8, 12)
    y = x.clone()
    y[:, 5:] = torch.randn(1, 3, 12)  # change only the future of position 4
    with torch.no_grad():
        a, b = mha(x), mha(y)
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_dropout_only_in_training():
    mha = make(dropout=0.5)
    x = torch.randn(2, 6, 12)
    with torch.no_grad():
        assert torch.equal(mha(x), mha(x))  # eval: deterministic
        mha.train()
        assert not torch.allclose(mha(x), mha(x))


@pytest.mark.parametrize("splits", [[8], [1] * 8, [3, 5], [5, 1, 2], [2, 2, 4]])
def test_kv_cache_equals_full_forward(splits):
    mha = make()
    x = torch.randn(2, sum(splits), 12)
    cache = KVCache(1, 2, mha.num_heads, mha.head_dim, 16, "cpu")
    parts, start = [], 0
    with torch.no_grad():
        for n in splits:
            parts.append(mha(x[:, start:start + n], cache, 0))
            cache.advance(n)
            start += n
        torch.testing.assert_close(torch.cat(parts, dim=1), mha(x), atol=1e-5, rtol=1e-5)
    assert cache.pos == sum(splits)


def test_kv_cache_full_raises():
    cache = KVCache(1, 1, 2, 3, max_len=4, device="cpu")
    k = torch.zeros(1, 2, 3, 3)
    cache.store(0, k, k)
    cache.advance(3)
    with pytest.raises(ValueError, match="KV cache is full \\(4 tokens\\)"):
        cache.store(0, k[:, :, :2], k[:, :, :2])


def test_kv_cache_batch_mismatch_raises():
    cache = KVCache(2, 2, 2, 3, max_len=4, device="cpu")
    k = torch.zeros(3, 2, 1, 3)
    with pytest.raises(ValueError, match="made for batch 2 but got batch 3"):
        cache.store(1, k, k)


def test_heads_must_divide_d_out():
    with pytest.raises(ValueError, match="d_out=10 must be divisible by num_heads=3"):
        MultiHeadAttention(10, 10, 8, 0.0, 3)


def test_fused_qkv_shapes():
    mha = make(12, 3, bias=False)
    assert mha.qkv.weight.shape == (36, 12) and mha.qkv.bias is None
    assert mha.out_proj.weight.shape == (12, 12)


# --------------------------------------------------------------------------- chapter 3 exercises


def _solution_causal(q, k, v):
    t = q.shape[-2]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(torch.triu(torch.ones(t, t, dtype=torch.bool), 1), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def _stub(*args):
    raise NotImplementedError


@pytest.mark.parametrize("name, right, wrong", [
    ("ch03.causal_attention", _solution_causal,
     lambda q, k, v: torch.softmax(q @ k.transpose(-2, -1), -1) @ v),
])
def test_exercise_checkers(capsys, name, right, wrong):
    from gpt2_core.exercises import check_exercise

    assert check_exercise(name, right) is True
    assert check_exercise(name, wrong) is False
    assert check_exercise(name, _stub) is False
    assert "not attempted" in capsys.readouterr().out
