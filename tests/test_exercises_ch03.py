"""Every chapter-3 checker accepts its reference solution and rejects plausible wrong answers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gpt2_core.exercises import check_exercise
from gpt2_core.exercises.solutions import ch03 as solution


def _masked_softmax_with_nan(q, k, v, lengths):  # masks the pads but leaves NaN in the pad rows
    t = q.shape[-2]
    real = torch.arange(t)[None, :] >= (t - lengths)[:, None]
    allowed = torch.ones(t, t, dtype=torch.bool).tril() & real[:, None, None, :]
    scores = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(~allowed, float("-inf"))
    return torch.softmax(scores, -1) @ v


def _right_padded(q, k, v, lengths):  # assumes the pads come after the real tokens
    t = q.shape[-2]
    real = torch.arange(t)[None, :] < lengths[:, None]
    allowed = torch.ones(t, t, dtype=torch.bool).tril() & real[:, None, None, :]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    return torch.where(real[:, None, :, None], out, 0.0)


# A plausible wrong answer for every checker (tests/test_exercise_solutions.py runs them all)
WRONG = {
    "ch03.causal_attention": lambda q, k, v: torch.softmax(q @ k.transpose(-2, -1), -1) @ v,
    "ch03.grouped_query_attention": lambda q, k, v: solution.causal_attention(  # tiles the groups
        q, k.repeat(1, q.shape[1] // k.shape[1], 1, 1), v.repeat(1, q.shape[1] // k.shape[1], 1, 1)),
    # window + 1 keys: "<=" instead of "<"
    "ch03.local_causal_mask": lambda nq, nk, w: solution.local_causal_mask(nq, nk, w + 1),
    "ch03.padded_attention": lambda q, k, v, lengths: F.scaled_dot_product_attention(q, k, v, is_causal=True),
}


@pytest.mark.parametrize("wrong", [
    lambda nq, nk, w: solution.local_causal_mask(nk, nk, w)[:nq],  # the first queries, not the last ones
    lambda nq, nk, w: (torch.arange(nk - nq, nk)[:, None] - torch.arange(nk)).abs() < w,  # not causal
    lambda nq, nk, w: solution.local_causal_mask(nq, nk, w)  # leaves out the query itself
    & (torch.arange(nk - nq, nk)[:, None] != torch.arange(nk)),
    lambda nq, nk, w: solution.local_causal_mask(nq, nk, w).float(),  # SDPA would add a float mask
])
def test_local_mask_checker_catches_more_mistakes(wrong, capsys):
    assert not check_exercise("ch03.local_causal_mask", wrong)
    assert "not quite" in capsys.readouterr().out


def test_local_mask_with_sdpa_equals_brute_force_attention():
    q, k, v = torch.randn(3, 1, 2, 6, 4).unbind(0)
    mask = solution.local_causal_mask(6, 6, 2)
    got = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    for i in range(6):
        keys = slice(max(0, i - 1), i + 1)  # itself and the one before
        want = F.scaled_dot_product_attention(q[..., i : i + 1, :], k[..., keys, :], v[..., keys, :])
        torch.testing.assert_close(got[..., i : i + 1, :], want)


@pytest.mark.parametrize("wrong, says", [(_masked_softmax_with_nan, "NaN"), (_right_padded, "pad positions")])
def test_padded_attention_checker_catches_more_mistakes(wrong, says, capsys):
    assert not check_exercise("ch03.padded_attention", wrong)
    assert says in capsys.readouterr().out



def _gqa_without_mask(q, k, v):
    per_group = q.shape[1] // k.shape[1]
    return F.scaled_dot_product_attention(q, k.repeat_interleave(per_group, 1), v.repeat_interleave(per_group, 1))


@pytest.mark.parametrize("wrong, says", [
    (WRONG["ch03.grouped_query_attention"], "not the whole stack"),
    (_gqa_without_mask, "causal mask"),
    (lambda q, k, v: solution.causal_attention(q, k, v), "must match"),  # no repetition: 6 heads meet 3
])
def test_grouped_query_checker_names_the_mistake(wrong, says, capsys):
    assert not check_exercise("ch03.grouped_query_attention", wrong)
    assert says in capsys.readouterr().out


def test_grouped_query_attention_with_one_group_per_head_is_multi_head_attention():
    q, k, v = torch.randn(3, 2, 4, 6, 8).unbind(0)
    torch.testing.assert_close(solution.grouped_query_attention(q, k, v),
                               F.scaled_dot_product_attention(q, k, v, is_causal=True))
