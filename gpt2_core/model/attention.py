"""Causal multi-head self-attention, the batched form built in chapter 3, with a KV cache.

One fused linear layer produces queries, keys and values for all heads at once; heads are split with
``view``/``permute`` and attention runs through ``scaled_dot_product_attention``, which the chapter
proves equal to the hand-written softmax(QK^T/sqrt(d))V with a causal mask. Setting
``keep_weights = True`` on a layer makes it compute that softmax by hand and keep it in ``.weights``
(what :meth:`gpt2_core.model.gpt.GPTModel.attention_maps` shows).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class KVCache:
    """Keys and values of every layer for the tokens seen so far, preallocated to ``max_len``.

    Each layer writes its new keys and values with :meth:`store` and gets back what its queries may
    read; once every layer has run, the model moves the cache on with :meth:`advance`. The position,
    ``pos``, is a Python int, and a layer reads only the filled part of the cache. (Compiled decoding
    uses a cache with the same methods that keeps its position in a tensor:
    :class:`gpt2_core.model.generation.StaticKVCache`.)
    """

    def __init__(self, n_layers: int, batch: int, n_heads: int, head_dim: int, max_len: int,
                 device: torch.device | str, dtype: torch.dtype = torch.float32) -> None:
        shape = (batch, n_heads, max_len, head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.batch, self.max_len, self.device = batch, max_len, torch.device(device)
        self.pos = 0  # tokens stored so far

    def positions(self, t: int) -> torch.Tensor:
        """Positions (t,) of the next ``t`` tokens."""
        return torch.arange(self.pos, self.pos + t, device=self.device)

    def store(self, layer: int, k: torch.Tensor, v: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Write ``k, v`` (batch, heads, t, head_dim) of ``layer`` after the stored tokens; return what attention
        reads: keys, values and the mask of what each new token may see (None: the usual causal mask,
        which for one new token is no mask at all)."""
        if k.shape[0] != self.batch:
            raise ValueError(f"KV cache was made for batch {self.batch} but got batch {k.shape[0]}; "
                             "make a new cache with model.new_kv_cache(batch)")
        t = k.shape[2]
        end = self.pos + t
        if end > self.max_len:
            raise ValueError(f"KV cache is full ({self.max_len} tokens); start a new cache or crop the input")
        keys, values = self.keys[layer], self.values[layer]
        keys[:, :, self.pos:end] = k
        values[:, :, self.pos:end] = v
        # None: one new token may see every filled slot, or an empty cache takes the usual causal mask;
        # else t new tokens after pos cached ones: query i sees the slots up to pos + i
        mask = None if t == 1 or self.pos == 0 else \
            torch.ones(t, end, dtype=torch.bool, device=k.device).tril(diagonal=self.pos)
        return keys[:, :, :end], values[:, :, :end], mask

    def advance(self, t: int) -> None:
        """Move on by ``t`` tokens, after every layer has stored them."""
        self.pos += t


class MultiHeadAttention(nn.Module):
    """Causal multi-head self-attention with a fused qkv projection and an optional KV cache."""

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
        self.keep_weights = False  # True: compute the softmax by hand and keep it in self.weights
        self.weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        b, t, _ = x.shape
        # (b, t, 3*d_out) -> 3 x (b, heads, t, head_dim): one matmul for q, k and v of every head
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        mask = None
        if kv_cache is not None:
            k, v, mask = kv_cache.store(layer, k, v)
        causal = mask is None and t > 1  # the usual lower-triangular mask
        if self.keep_weights:  # the chapter-3 formula, so that the weights can be kept
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)
            if causal:
                mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            self.weights = torch.softmax(scores, dim=-1).detach()
            out = self.weights @ v
        else:
            dropout_p = self.dropout if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal)
        # merge heads back: (b, heads, t, head_dim) -> (b, t, d_out)
        out = out.transpose(1, 2).contiguous().view(b, t, self.d_out)
        return self.out_proj(out)
