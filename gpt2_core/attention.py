"""Causal multi-head self-attention, the batched form built in chapter 3, with a KV cache.

One fused linear layer produces queries, keys and values for all heads at once; heads are split
with ``view``/``transpose`` and attention runs through ``scaled_dot_product_attention``, which the
chapter proves equal to the hand-written softmax(QK^T/sqrt(d))V with a causal mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KVCache:
    """Keys and values of every layer for the tokens seen so far, preallocated to ``max_len``.

    Generation appends one step's keys/values per layer, then calls :meth:`advance` once the
    whole model has run, so that all layers agree on the position.

    Two ways to write into it. :meth:`update` (used by ``GPTModel.forward``) stores ``t`` new tokens
    after the ``pos`` cached ones and returns only the filled part, so its result grows by a step each
    time. :meth:`write` is the static-shape form for one-token decoding steps
    (:mod:`gpt2_core.decoding`): the slot is a position *tensor* and the whole buffer comes back, to be
    attended to through :meth:`mask`. Every step then has the same shapes and reads no Python number,
    so ``torch.compile`` traces it once, and on a GPU a CUDA graph can replay it.
    """

    def __init__(self, n_layers: int, batch: int, n_heads: int, head_dim: int, max_len: int,
                 device: torch.device | str, dtype: torch.dtype = torch.float32) -> None:
        shape = (batch, n_heads, max_len, head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.max_len = max_len
        self.pos = 0  # number of tokens already stored

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k, v`` (batch, heads, new, head_dim) after the cached ones; return all so far."""
        if k.shape[0] != self.keys[layer].shape[0]:
            raise ValueError(f"KV cache was made for batch {self.keys[layer].shape[0]} but got batch "
                             f"{k.shape[0]}; make a new cache with model.new_kv_cache(batch)")
        end = self.pos + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache is full ({self.max_len} tokens); start a new cache or crop the input")
        self.keys[layer][:, :, self.pos:end] = k
        self.values[layer][:, :, self.pos:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor,
              position: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store one token's ``k, v`` (batch, heads, 1, head_dim) at slot ``position`` (a (1,) long
        tensor); return the whole buffers (batch, heads, max_len, head_dim).

        Slots after ``position`` hold stale values: attend with :meth:`mask`. Nothing is checked
        against ``pos`` here (that would read a Python number per step); the caller keeps them equal.
        """
        self.keys[layer].index_copy_(2, position, k)
        self.values[layer].index_copy_(2, position, v)
        return self.keys[layer], self.values[layer]

    def mask(self, position: torch.Tensor) -> torch.Tensor:
        """(1, max_len) bool attention mask for a query at ``position``: True for slots 0..position."""
        return (torch.arange(self.max_len, device=position.device) <= position)[None]

    def advance(self, n: int) -> None:
        self.pos += n

    def reset(self) -> None:
        """Forget every stored token (the buffers are kept and overwritten from slot 0)."""
        self.pos = 0

    def tensors(self) -> list[torch.Tensor]:
        """Every buffer (keys then values), e.g. to mark them static for CUDA graphs."""
        return [*self.keys, *self.values]


class MultiHeadAttention(nn.Module):
    """Causal multi-head self-attention with fused qkv projection and optional KV cache."""

    def __init__(self, d_in: int, d_out: int, context_length: int, dropout: float, num_heads: int,
                 qkv_bias: bool = True) -> None:
        super().__init__()
        if d_out % num_heads:
            raise ValueError(f"d_out={d_out} must be divisible by num_heads={num_heads}")
        self.d_out = d_out
        self.num_heads = num_heads
        self.head_dim = d_out // num_heads
        self.context_length = context_length
        self.dropout = dropout
        self.qkv = nn.Linear(d_in, 3 * d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        b, t, _ = x.shape
        # (b, t, 3*d_out) -> 3 x (b, heads, t, head_dim): one matmul for q, k and v of every head
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        past = 0
        if kv_cache is not None:
            past = kv_cache.pos
            k, v = kv_cache.update(layer, k, v)
        dropout_p = self.dropout if self.training else 0.0
        if past == 0:
            # no cached prefix: the usual lower-triangular mask
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=t > 1)
        elif t == 1:
            # a single new token may look at everything cached: no mask needed
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        else:
            # t new tokens after `past` cached ones: query i sees keys up to past + i
            mask = torch.ones(t, past + t, dtype=torch.bool, device=x.device).tril(diagonal=past)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        # merge heads back: (b, heads, t, head_dim) -> (b, t, d_out)
        out = out.transpose(1, 2).contiguous().view(b, t, self.d_out)
        return self.out_proj(out)
