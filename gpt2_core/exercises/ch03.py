"""Checkers for chapter 3 (attention).

- ``ch03.grouped_query_attention``: ``grouped_query_attention(q, k, v) -> context`` for ``q`` of shape
  (batch, heads, tokens, head_dim) and ``k``, ``v`` of shape (batch, groups, tokens, head_dim), ``groups``
  dividing ``heads``: causal attention in which query heads ``g * heads // groups .. (g + 1) * heads // groups
  - 1`` share key/value head ``g`` (grouped-query attention, Ainslie et al., 2023)
- ``ch03.local_causal_mask``: ``local_causal_mask(num_queries, num_keys, window) -> bool (num_queries,
  num_keys)``: True where a query may attend; the queries are the last ``num_queries`` of the ``num_keys``
  positions (as with a KV cache), and each sees only the last ``window`` keys up to and including itself
- ``ch03.padded_attention``: ``padded_attention(q, k, v, lengths) -> Tensor``: causal attention over
  left-padded sequences (the last ``lengths[b]`` positions of sequence ``b`` are real): real queries see
  only real keys, and the rows of pad positions are zeros

``ch03.causal_attention`` (``causal_attention(q, k, v)``, the chapter's own attention) is no longer asked in the
notebook; its checker stays for code that still calls it.

Reference solutions: :mod:`gpt2_core.exercises.solutions.ch03`.
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


@exercise("ch03.grouped_query_attention")
def check_grouped_query_attention(candidate: Callable) -> None:
    gen = torch.Generator().manual_seed(23)
    # (batch, heads, groups, tokens, head_dim): plain multi-head (groups = heads), multi-query (one group),
    # groups of 2 and of 3, one token
    for b, h, g, t, d in [(2, 4, 4, 5, 8), (1, 4, 1, 6, 4), (2, 6, 3, 5, 4), (1, 6, 2, 7, 3), (3, 8, 2, 1, 4)]:
        q = torch.randn(b, h, t, d, generator=gen)
        k, v = (torch.randn(b, g, t, d, generator=gen) for _ in range(2))
        what = f"{h} query heads and {g} key/value heads"
        want = F.scaled_dot_product_attention(q, k.repeat_interleave(h // g, 1), v.repeat_interleave(h // g, 1),
                                              is_causal=True)
        got = candidate(q.clone(), k.clone(), v.clone())
        if isinstance(got, torch.Tensor) and got.shape == want.shape:
            tiled = F.scaled_dot_product_attention(q, k.repeat(1, h // g, 1, 1), v.repeat(1, h // g, 1, 1),
                                                   is_causal=True)
            if 1 < g < h and torch.allclose(got, tiled, atol=1e-5):
                raise ExerciseFailed(f"for {what} query head 1 used key/value head 1, but heads 0 .. {h // g - 1} "
                                     "form group 0 and all use key/value head 0: repeat each key head in place "
                                     "(0, 0, 1, 1, ...), not the whole stack (0, 1, 0, 1, ...)")
            if t > 1 and torch.allclose(got, F.scaled_dot_product_attention(
                    q, k.repeat_interleave(h // g, 1), v.repeat_interleave(h // g, 1)), atol=1e-5):
                raise ExerciseFailed(f"for {what} your tokens attend to later tokens: keep the causal mask")
        expect_close(got, want, f"q of shape {(b, h, t, d)} and k, v of shape {(b, g, t, d)}")


def _local_mask(num_queries: int, num_keys: int, window: int) -> torch.Tensor:
    """Brute force, one (query, key) pair at a time."""
    offset = num_keys - num_queries  # query i sits at position offset + i
    allowed = torch.zeros(num_queries, num_keys, dtype=torch.bool)
    for i in range(num_queries):
        for j in range(num_keys):
            allowed[i, j] = offset + i - window < j <= offset + i
    return allowed


@exercise("ch03.local_causal_mask")
def check_local_causal_mask(candidate: Callable) -> None:
    # Training (queries == keys), decoding one token after a cache, a chunk after a cache, window 1
    # (only itself), and windows as long as or longer than the whole sequence (plain causal).
    for nq, nk, w in [(5, 5, 2), (6, 6, 3), (1, 1, 1), (4, 4, 1), (5, 5, 5), (4, 4, 10), (1, 7, 3), (3, 8, 2),
                      (2, 9, 4), (8, 8, 3)]:
        got = candidate(nq, nk, w)
        want = _local_mask(nq, nk, w)
        what = f"num_queries={nq}, num_keys={nk}, window={w}"
        if not isinstance(got, torch.Tensor) or got.dtype != torch.bool:
            kind = f"a {got.dtype} tensor" if isinstance(got, torch.Tensor) else type(got).__name__
            raise ExerciseFailed(f"for {what} return a bool tensor (True = may attend), got {kind}; "
                                 "scaled_dot_product_attention would *add* a float mask to the scores")
        if got.shape != want.shape:
            raise ExerciseFailed(f"for {what} expected shape {tuple(want.shape)} but got {tuple(got.shape)}")
        if not torch.equal(got, want):
            i, j = (got != want).nonzero()[0].tolist()
            raise ExerciseFailed(f"for {what} query {i} (position {nk - nq + i}) and key {j}: expected "
                                 f"{bool(want[i, j])} but got {bool(got[i, j])}; expected mask\n{want.int()}")


def _padded_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """Causal attention over each sequence's real tokens alone (sliced out), zeros at the pads."""
    out = torch.zeros_like(q)
    t = q.shape[-2]
    for b, n in enumerate(lengths):
        real = slice(t - n, t)
        out[b, :, real] = F.scaled_dot_product_attention(q[b, :, real], k[b, :, real], v[b, :, real],
                                                         is_causal=True)
    return out


@exercise("ch03.padded_attention")
def check_padded_attention(candidate: Callable) -> None:
    gen = torch.Generator().manual_seed(33)
    for (b, h, t, d), lengths in [((3, 1, 5, 4), [5, 3, 1]), ((1, 2, 4, 3), [4]), ((4, 2, 6, 8), [2, 6, 6, 1]),
                                  ((2, 3, 7, 4), [7, 4])]:
        q, k, v = (torch.randn(b, h, t, d, generator=gen) for _ in range(3))
        want = _padded_reference(q, k, v, lengths)
        got = candidate(q.clone(), k.clone(), v.clone(), torch.tensor(lengths))
        what = f"q, k, v of shape {(b, h, t, d)} and lengths={lengths}"
        if isinstance(got, torch.Tensor) and got.shape == want.shape:
            if torch.isnan(got).any():
                raise ExerciseFailed(f"for {what} your output has NaN: a pad query that may attend to no key "
                                     "gets softmax of all -inf; give the pad rows zeros")
            pads = torch.arange(t)[None, :] < (t - torch.tensor(lengths))[:, None]  # (batch, tokens)
            real_rows = ~pads[:, None, :, None]
            causal = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            if min(lengths) < t and torch.allclose((got.float() * real_rows), causal * real_rows, atol=1e-5):
                raise ExerciseFailed(f"for {what} your real tokens still attend to the pads before them")
            if got.float().abs().amax(dim=(1, 3))[pads].gt(0).any():
                raise ExerciseFailed(f"for {what} the rows of pad positions must be zeros (the pads are on the "
                                     "left: positions 0 .. tokens - length - 1)")
        expect_close(got, want, what)
