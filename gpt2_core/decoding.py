"""Fast one-token decoding steps: the loop :func:`gpt2_core.generate.generate` runs after the prompt.

Once the prompt sits in the KV cache, every new token is one pass through the model for a single
position. At batch 1 that pass multiplies one vector by every weight matrix, so its speed is set by how
fast the weights stream out of memory, not by arithmetic: GPT-2 124M reads about 0.5 GB of float32
weights per token. :func:`decode_step` is that pass written for speed, with three differences from
calling ``model(token, cache)`` (same arithmetic, so the same tokens):

1. **Weight layout.** ``nn.Linear`` stores ``W`` as (out, in) and computes ``x @ W.T``. For a
   matrix-vector product on a CPU the BLAS streams ``W`` faster when it is stored (in, out), as
   transformers' ``Conv1D`` stores it. Measured on the project's 2-core CI machine (torch 2.13,
   float32, batch 1, otherwise idle): the matrix products of one GPT-2 124M step take 17.3 ms with
   (out, in) weights and 15.8 ms with (in, out) ones; a whole generated token takes 21 ms through
   ``model(token, cache)``, 19.4 ms through this step on the (out, in) weights and 17.5 ms on (in, out)
   copies. So on a CPU a :class:`Decoder` keeps an (in, out) copy of every weight matrix, made once
   (about 0.3 s for GPT-2 124M) and reused by later ``generate`` calls until the weights change.
   The price is memory: a second copy of the matrices, about 0.5 GB for GPT-2 124M in float32
   (:func:`forget_decoder` frees it). On other devices the (in, out) matrices are free views of the
   weights: GPU matmul libraries read both layouts at the same speed.
2. **Static shapes.** Keys and values are written at a position held in a tensor, and attention
   runs over the whole preallocated cache with a mask (:meth:`~gpt2_core.attention.KVCache.write`),
   so every step has the same shapes. ``torch.compile`` then traces the step once; on a GPU,
   ``mode="reduce-overhead"`` records it as a CUDA graph and replays the whole step with one launch
   instead of ~150 kernel launches from Python, which is what limits batch-1 decoding there.
   (Eager steps slice the cache to the filled part instead: same result, less to read.)
3. **No module calls.** Plain torch functions on the tensors, which skips ``nn.Module``'s per-call
   bookkeeping (about 100 calls per token).

When the weights change the copies must be rebuilt. A decoder remembers every parameter of the model
(the tensor itself, its address and its version counter, which in-place edits such as
``load_state_dict`` or ``p.mul_()`` under ``no_grad`` increase) and the number of optimizer steps
taken anywhere in the process: torch's fused AdamW updates weights without touching their version
counters, so every ``optimizer.step()`` marks all decoders stale (a global post-step hook,
registered when the first decoder is built). A change through ``p.data`` is invisible to both; call
:func:`forget_decoder` after one. Layers other than plain ``nn.Linear`` (LoRA adapters) are called as
modules, so they are always current.
"""

from __future__ import annotations

import weakref
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from .attention import KVCache
from .model import GPTModel

Linear = torch.Tensor | nn.Module  # an (in, out) matrix, or a module to call (e.g. a LoRA layer)


class LayerWeights(NamedTuple):
    """One transformer block's tensors, as :func:`decode_step` uses them."""

    norm1: tuple[torch.Tensor, torch.Tensor, float]  # LayerNorm weight, bias, eps
    qkv: tuple[Linear, torch.Tensor | None]  # (matrix or module, bias)
    out_proj: tuple[Linear, torch.Tensor | None]
    norm2: tuple[torch.Tensor, torch.Tensor, float]
    fc: tuple[Linear, torch.Tensor | None]
    proj: tuple[Linear, torch.Tensor | None]


class DecodeWeights(NamedTuple):
    """Every tensor of a GPTModel that a decoding step reads, matrices in (in, out) layout."""

    tok_emb: torch.Tensor  # (vocab, emb_dim), the embedding table itself
    pos_emb: torch.Tensor  # (context, emb_dim)
    layers: list[LayerWeights]
    final_norm: tuple[torch.Tensor, torch.Tensor, float]
    head: tuple[Linear, torch.Tensor | None]
    n_heads: int


def _linear(x: torch.Tensor, layer: tuple[Linear, torch.Tensor | None]) -> torch.Tensor:
    """``x @ W + b`` for an (in, out) matrix, or the module's own forward."""
    weight, bias = layer
    if isinstance(weight, torch.Tensor):
        return torch.addmm(bias, x, weight) if bias is not None else x @ weight
    return weight(x)


def _norm(x: torch.Tensor, norm: tuple[torch.Tensor, torch.Tensor, float]) -> torch.Tensor:
    weight, bias, eps = norm
    return F.layer_norm(x, weight.shape, weight, bias, eps)


def decode_step(weights: DecodeWeights, cache: KVCache, tokens: torch.Tensor, position: torch.Tensor,
                length: int | None = None) -> torch.Tensor:
    """Logits (batch, vocab) for ``tokens`` (batch,) at ``position`` (a (1,) long tensor), in eval mode.

    Writes the tokens' keys and values into ``cache`` at ``position``. With ``length`` (the number of
    filled slots, ``position + 1``) attention reads only those slots; with ``length=None`` it reads the
    whole cache through a mask, so that the shapes never change (the form that ``torch.compile`` and
    CUDA graphs want). Does not advance the cache: the caller does, outside any compiled region.
    """
    b = tokens.shape[0]
    x = weights.tok_emb[tokens] + weights.pos_emb[position]  # (batch, emb_dim)
    for i, layer in enumerate(weights.layers):
        # (batch, 3 * emb_dim) -> q, k, v each (batch, heads, 1, head_dim), the layout the model uses
        q, k, v = _linear(_norm(x, layer.norm1), layer.qkv).view(b, 3, weights.n_heads, 1, -1).unbind(1)
        keys, values = cache.write(i, k, v, position)
        if length is None:
            att = F.scaled_dot_product_attention(q, keys, values, attn_mask=cache.mask(position))
        else:  # a single query may see every filled slot: no mask needed
            att = F.scaled_dot_product_attention(q, keys[:, :, :length], values[:, :, :length])
        x = x + _linear(att.reshape(b, -1), layer.out_proj)
        x = x + _linear(F.gelu(_linear(_norm(x, layer.norm2), layer.fc), approximate="tanh"), layer.proj)
    return _linear(_norm(x, weights.final_norm), weights.head)


def _matrix(module: nn.Module, copy: bool) -> tuple[Linear, torch.Tensor | None]:
    """A linear layer as (matrix in (in, out) layout, bias); any other module is kept to be called."""
    if type(module) is not nn.Linear:
        return module, None
    weight = module.weight.detach()
    if copy:
        # empty + copy_ of the transposed view: about 5x faster than .t().contiguous() here
        matrix = torch.empty(weight.shape[1], weight.shape[0], dtype=weight.dtype, device=weight.device)
        matrix.copy_(weight.t())
    else:
        matrix = weight.t()
    return matrix, None if module.bias is None else module.bias.detach()


def _norm_of(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor, float]:
    return module.weight.detach(), module.bias.detach(), float(module.eps)


_optimizer_steps = 0  # optimizer.step() calls in this process since the first decoder was built
_hook_handle = None


def _count_optimizer_step(*_: object) -> None:
    global _optimizer_steps
    _optimizer_steps += 1


def _fingerprint(model: nn.Module) -> tuple[int, list[tuple[torch.Tensor, int, int]]]:
    """What must be unchanged for a decoder to be current (see the module docstring)."""
    return _optimizer_steps, [(p, p._version, p.data_ptr()) for p in model.parameters()]


class Decoder:
    """Decoding steps for one GPTModel: its weights in (in, out) layout, and an optional compiled step.

    Build it with :func:`decoder_for`, which reuses a decoder while the model's weights are unchanged.
    ``copy_matrices`` (default: on CPU) chooses real (in, out) copies over free views.
    ``compile=True`` compiles the step with ``torch.compile`` (``mode="reduce-overhead"``, that is CUDA
    graphs, on a GPU): the first step of each batch size then takes seconds to minutes. A compiled
    decoder keeps one KV cache of the full context per batch size (:meth:`cache`). On a CPU compiling
    did not pay here (GPT-2 124M: 20.3 against 20.2 ms per token eager): the step is memory-bound, and
    the static form attends over the whole context.
    """

    def __init__(self, model: nn.Module, copy_matrices: bool | None = None, compile: bool = False) -> None:
        if not isinstance(model, GPTModel):
            raise TypeError(f"Decoder needs a GPTModel, got {type(model).__name__}")
        global _hook_handle
        if _hook_handle is None:
            _hook_handle = register_optimizer_step_post_hook(_count_optimizer_step)
        self.device = model.device
        copy = self.device.type == "cpu" if copy_matrices is None else bool(copy_matrices)
        with torch.no_grad():
            self.weights = DecodeWeights(
                tok_emb=model.tok_emb.weight.detach(), pos_emb=model.pos_emb.weight.detach(),
                layers=[LayerWeights(_norm_of(blk.norm1), _matrix(blk.att.qkv, copy), _matrix(blk.att.out_proj, copy),
                                     _norm_of(blk.norm2), _matrix(blk.ff.fc, copy), _matrix(blk.ff.proj, copy))
                        for blk in model.blocks],
                final_norm=_norm_of(model.final_norm), head=_matrix(model.out_head, copy), n_heads=model.cfg.n_heads)
        self._fingerprint = _fingerprint(model)
        cfg = model.cfg  # no reference to the model itself: a decoder must not keep its model alive
        self._cache_shape = (cfg.n_layers, cfg.n_heads, cfg.head_dim, cfg.context_length)
        self._dtype = model.tok_emb.weight.dtype
        self._caches: dict[int, KVCache] = {}
        self._step = None
        if compile:
            self.compile()

    def is_current(self, model: nn.Module) -> bool:
        """Whether the model still has the weights (and layers) this decoder was built from."""
        steps, params = _fingerprint(model)
        mine_steps, mine = self._fingerprint
        return steps == mine_steps and len(params) == len(mine) and all(
            p is q and v == w and a == c for (p, v, a), (q, w, c) in zip(params, mine, strict=True))

    @property
    def compiled(self) -> bool:
        return self._step is not None

    def compile(self) -> None:
        """Compile the static-shape step (once; later calls do nothing)."""
        if self._step is not None:
            return
        # CUDA graphs replay fixed addresses: tell torch.compile that these tensors stay put (so they are
        # neither copied into the graph's own buffers at every step nor re-recorded)
        for t in _tensors(self.weights):
            torch._dynamo.mark_static_address(t)
        self._step = torch.compile(decode_step, fullgraph=True, dynamic=False,
                                   mode="reduce-overhead" if self.device.type == "cuda" else None)

    def cache(self, batch: int) -> KVCache:
        """An empty KV cache of the full context for ``batch`` sequences, kept and reused by a compiled
        decoder (the same buffers every call, so the compiled step is neither re-traced nor re-recorded)."""
        cache = self._caches.get(batch)
        if cache is None:
            layers, heads, head_dim, context = self._cache_shape
            cache = self._caches[batch] = KVCache(layers, batch, heads, head_dim, context, self.device, self._dtype)
            for t in cache.tensors():
                torch._dynamo.mark_static_address(t)
        cache.reset()
        return cache

    def step(self, tokens: torch.Tensor, cache: KVCache, compiled: bool = False) -> torch.Tensor:
        """Logits (batch, vocab) of the next token after ``tokens`` (batch,); advances ``cache`` by one.

        ``compiled=True`` runs the compiled static-shape step (after :meth:`compile`), best with a cache
        from :meth:`cache`; otherwise the eager step runs, which reads only the filled part of the cache.
        """
        if compiled and self._step is None:
            raise ValueError("this decoder is not compiled; call decoder.compile() first")
        if not (isinstance(tokens, torch.Tensor) and tokens.dim() == 1 and tokens.dtype == torch.long):
            got = (f"{tokens.dtype} of shape {tuple(tokens.shape)}" if isinstance(tokens, torch.Tensor)
                   else type(tokens).__name__)
            raise TypeError(f"tokens must be a 1-D torch.long tensor (one id per sequence), got {got}")
        if tokens.shape[0] != cache.keys[0].shape[0]:
            raise ValueError(f"{tokens.shape[0]} tokens for a KV cache of batch {cache.keys[0].shape[0]}")
        if cache.pos >= cache.max_len:
            raise ValueError(f"KV cache is full ({cache.max_len} tokens); start a new cache or crop the input")
        position = torch.arange(cache.pos, cache.pos + 1, device=tokens.device)
        if not compiled:
            logits = decode_step(self.weights, cache, tokens, position, cache.pos + 1)
        else:
            if self.device.type == "cuda":
                torch.compiler.cudagraph_mark_step_begin()  # the last step's outputs are consumed
            logits = self._step(self.weights, cache, tokens, position)
        cache.advance(1)
        return logits


def _tensors(weights: DecodeWeights) -> list[torch.Tensor]:
    out = [weights.tok_emb, weights.pos_emb, *weights.final_norm[:2]]
    for layer in weights.layers:
        for part in layer:
            out += [t for t in part if isinstance(t, torch.Tensor)]
    out += [t for t in weights.head if isinstance(t, torch.Tensor)]
    return out


_DECODERS: weakref.WeakKeyDictionary[nn.Module, Decoder] = weakref.WeakKeyDictionary()


def decoder_for(model: nn.Module, compile: bool = False) -> Decoder:
    """The model's :class:`Decoder`, reused while its weights are unchanged, rebuilt when they change."""
    decoder = _DECODERS.get(model)
    if decoder is None or not decoder.is_current(model):
        decoder = _DECODERS[model] = Decoder(model, compile=compile)
    elif compile:
        decoder.compile()
    return decoder


def forget_decoder(model: nn.Module) -> None:
    """Drop the model's cached decoder (its weight copies): after changing weights through ``p.data``,
    or to give the memory back."""
    _DECODERS.pop(model, None)
