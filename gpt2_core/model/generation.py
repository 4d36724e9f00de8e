"""Text generation: greedy decoding and sampling (temperature, top-k, top-p) with an optional KV cache.

A language model gives, for every position, scores (logits) over the vocabulary for the next token.
Generation repeats one step: run the model, look at the last position's logits, choose a token,
append it, and go again.

Two ways to run each step give the same tokens:

- recompute (``use_cache=False``): feed the whole sequence so far (its last ``context_length``
  tokens) every step. Simple, and each step costs a full forward pass over the window.
- KV cache (``use_cache=True``): feed the prompt once (prefill), then only the newest token; each
  attention layer keeps the keys and values of earlier tokens, so nothing is recomputed.

When the sequence outgrows the context window, the cache stops being valid: the window slides, every
kept token moves to a new position (so its position embedding, and everything computed from it,
changes). ``generate`` then drops the cache and continues by recomputation over the sliding window, so
both paths still give identical tokens; only the tokens before the window fills are cheap.

Every step is the model's own :meth:`~gpt2_core.model.gpt.GPTModel.next_token_logits`. ``compile=True``
compiles it for one-token steps over a :class:`StaticKVCache` (fixed shapes, the position kept in a
tensor), with CUDA graphs on a GPU, where launching ~150 small kernels from Python is what limits
batch-1 decoding.

Choosing a token (Holtzman et al., 2020, "The Curious Case of Neural Text Degeneration", explains why
plain sampling and greedy decoding both go wrong and introduces top-p):

- ``temperature=0``: greedy, always the highest-scoring token (deterministic).
- ``temperature>0``: sample from ``softmax(logits / temperature)``; below 1 sharpens, above 1 flattens.
- ``top_k``: keep only the k highest-scoring tokens before sampling.
- ``top_p`` (nucleus): keep the smallest set of top tokens whose probabilities add up to ``top_p``.

``python -m gpt2_core.course.generate --help`` is the command-line tool.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..checks import check_bool, check_int, check_number, check_tokenizer
from ..text.ranks import ENDOFTEXT
from ..text.windows import encode_text
from .attention import KVCache
from .gpt import GPTModel, eval_mode


class StaticKVCache(KVCache):
    """A KV cache whose every one-token step has the same shapes and reads no Python number that changes.

    Same methods as :class:`KVCache`, same results. The position is a tensor, ``position`` (``pos`` stays 0:
    :func:`generate` keeps the position within the context), and a layer gets back the whole buffer and a
    mask of the filled slots, so ``torch.compile`` traces the step once and a CUDA graph can replay it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.position = torch.zeros(1, dtype=torch.long, device=self.device)
        self.slots = torch.arange(self.max_len, device=self.device)
        for t in [*self.keys, *self.values, self.position, self.slots]:  # CUDA graphs replay these addresses
            torch._dynamo.mark_static_address(t)

    def positions(self, t: int) -> torch.Tensor:
        return self.position + self.slots[:t]

    def store(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        positions = self.positions(k.shape[2])
        self.keys[layer].index_copy_(2, positions, k)
        self.values[layer].index_copy_(2, positions, v)
        # slot s is visible to the token at position p if s <= p
        return self.keys[layer], self.values[layer], self.slots[None, :] <= positions[:, None]

    def advance(self, t: int) -> None:
        self.position += t  # in place: the same tensor every step


def _check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Raise a clear error for sampling settings that make no sense."""
    check_number(temperature, "temperature (0 means greedy)", low=0.0)
    if top_k is not None:
        check_int(top_k, "top_k (None keeps every token)", low=1)
    if top_p is not None and not 0.0 < check_number(top_p, "top_p") <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] (or None to keep every token), got {top_p}")


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Set every logit below the k-th largest (per row, last dimension) to -inf.

    Ties with the k-th largest are kept, so a row may keep more than k tokens when scores are equal.
    """
    _check_sampling(1.0, k, None)
    k = min(k, logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of top tokens whose probability mass reaches ``p``.

    A token is kept when the mass of the tokens ranked above it is still below ``p``; the top token is
    therefore always kept, and ``p=1`` keeps everything.
    """
    _check_sampling(1.0, None, p)
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    sorted_probs = torch.softmax(sorted_logits.float(), dim=-1)
    mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
    drop_sorted = mass_before >= p
    # scatter the decision back from sorted order to vocabulary order
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sample_next_token(logits: torch.Tensor, temperature: float = 0.0, top_k: int | None = None,
                      top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Choose one token per row from next-token ``logits`` (batch, vocab); returns (batch,) longs.

    ``temperature=0`` is greedy (argmax; top-k/top-p cannot change the argmax, so they are ignored).
    Otherwise the logits are divided by the temperature, filtered by top-k then top-p, and one token
    is drawn with ``torch.multinomial(..., generator=generator)``, so a seeded generator reproduces
    the same draws.
    """
    _check_sampling(temperature, top_k, top_p)
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (batch, vocab), got {tuple(logits.shape)}")
    if temperature == 0.0:
        return torch.argmax(logits, dim=-1)
    scaled = logits.float() / temperature
    if top_k is not None:
        scaled = top_k_filter(scaled, top_k)
    if top_p is not None:
        scaled = top_p_filter(scaled, top_p)
    probs = torch.softmax(scaled, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


def _check_generate_args(model: Any, idx: Any, max_new_tokens: Any, eos_id: Any, use_cache: Any,
                         compile: Any) -> None:
    check_bool(use_cache, "use_cache")
    check_bool(compile, "compile")
    if compile and not use_cache:
        raise ValueError("compile=True compiles the cached one-token step; it needs use_cache=True")
    if compile and not isinstance(model, GPTModel):
        raise TypeError(f"compile=True needs a GPTModel, got {type(model).__name__}; "
                        "compile your own model with torch.compile instead")
    if not isinstance(idx, torch.Tensor) or idx.dtype != torch.long:
        got = idx.dtype if isinstance(idx, torch.Tensor) else type(idx).__name__
        raise TypeError(f"idx must be a torch.LongTensor of token ids, got {got}; "
                        "build it with torch.tensor([ids], dtype=torch.long)")
    if idx.dim() != 2:
        raise ValueError(f"idx must have shape (batch, tokens), got {tuple(idx.shape)}; "
                         "use idx.unsqueeze(0) for a single sequence")
    if idx.shape[0] == 0 or idx.shape[1] == 0:
        raise ValueError(f"idx is empty (shape {tuple(idx.shape)}): give at least one prompt token, "
                         f"e.g. the {ENDOFTEXT} token to start from nothing")
    check_int(max_new_tokens, "max_new_tokens", low=0)
    if eos_id is not None:
        check_int(eos_id, "eos_id", low=0, high=model.cfg.vocab_size - 1)


def generate(model: nn.Module, idx: torch.Tensor, max_new_tokens: int, temperature: float = 0.0,
             top_k: int | None = None, top_p: float | None = None, use_cache: bool = True,
             eos_id: int | None = None, generator: torch.Generator | None = None,
             compile: bool = False) -> torch.Tensor:
    """Extend each row of ``idx`` (batch, tokens) by up to ``max_new_tokens`` tokens; returns the longer ids.

    ``temperature``/``top_k``/``top_p``/``generator``: see :func:`sample_next_token`.

    ``use_cache=True`` prefills a KV cache with the prompt and then feeds one token per step; once the
    sequence is longer than ``context_length`` it drops the cache and recomputes over the last
    ``context_length`` tokens (the window slides, so cached positions are no longer valid). Tokens are
    the same as with ``use_cache=False``, which always recomputes over the last ``context_length`` tokens.

    ``eos_id``: a row that emits this token is finished; it keeps receiving ``eos_id`` as padding while
    other rows go on, and generation stops early once every row has finished. Without ``eos_id`` the
    result always has ``max_new_tokens`` new columns.

    ``compile=True`` (a ``GPTModel`` with ``use_cache=True``): the one-token steps run the model's
    ``next_token_logits`` compiled by ``torch.compile`` over a :class:`StaticKVCache`. The first call per
    model and batch size pays the compile time (seconds to minutes); later calls reuse it. Tokens are the same.

    Runs under ``torch.inference_mode()`` with the model in eval mode (dropout off); the model's
    previous train/eval mode is restored afterwards. The result lives on the model's device.
    """
    _check_sampling(temperature, top_k, top_p)
    _check_generate_args(model, idx, max_new_tokens, eos_id, use_cache, compile)
    with eval_mode(model), torch.inference_mode():
        return _generate(model, idx.to(model.device), max_new_tokens, temperature, top_k, top_p, use_cache,
                         eos_id, generator, compile)


_COMPILED_STEP: Callable | None = None  # GPTModel.next_token_logits compiled for one-token steps, made at first use
_STATIC_CACHES: weakref.WeakKeyDictionary[nn.Module, dict[int, StaticKVCache]] = weakref.WeakKeyDictionary()


def _compiled_step(model: GPTModel, batch: int) -> tuple[Callable, StaticKVCache]:
    """The compiled step and the model's static cache for ``batch`` rows, emptied (the same buffers every call,
    so the compiled step is neither traced nor, on a GPU, recorded as a CUDA graph again)."""
    global _COMPILED_STEP
    if _COMPILED_STEP is None:
        cuda = model.device.type == "cuda"
        _COMPILED_STEP = torch.compile(GPTModel.next_token_logits, fullgraph=True, dynamic=False,
                                       mode="reduce-overhead" if cuda else None)
    caches = _STATIC_CACHES.setdefault(model, {})
    if batch not in caches:
        caches[batch] = model.new_kv_cache(batch, cache_class=StaticKVCache)
    caches[batch].position.zero_()  # the old keys and values are overwritten from slot 0
    return functools.partial(_COMPILED_STEP, model), caches[batch]


def _generate(model: Any, idx: torch.Tensor, max_new_tokens: int, temperature: float, top_k: int | None,
              top_p: float | None, use_cache: bool, eos_id: int | None,
              generator: torch.Generator | None, compile: bool) -> torch.Tensor:
    if max_new_tokens == 0:
        return idx.clone()
    ctx = model.cfg.context_length
    batch, n = idx.shape
    step, cache = model.next_token_logits, None
    if compile:
        step, cache = _compiled_step(model, batch)
    elif use_cache:  # never needs more than the window: past it we recompute anyway
        cache = model.new_kv_cache(batch, max_len=min(ctx, n + max_new_tokens))
    out = idx.new_empty(batch, n + max_new_tokens)  # filled column by column: no torch.cat per token
    out[:, :n] = idx
    finished = torch.zeros(batch, dtype=torch.bool, device=idx.device)
    prompt = idx[:, -ctx:]
    logits = model.next_token_logits(prompt, cache)  # prefill the cache, or the first recomputation
    cached = prompt.shape[1] if cache is not None else 0  # tokens in the cache
    for i in range(max_new_tokens):
        next_ids = sample_next_token(logits, temperature, top_k, top_p, generator)
        if eos_id is not None:
            next_ids = next_ids.masked_fill(finished, eos_id)  # finished rows are padded with eos
            finished |= next_ids == eos_id
        out[:, n] = next_ids
        n += 1
        if i == max_new_tokens - 1 or (eos_id is not None and bool(finished.all())):
            break
        if cache is not None and cached < cache.max_len:  # one new token against the cache
            if compile and model.device.type == "cuda":
                torch.compiler.cudagraph_mark_step_begin()  # the last step's outputs have been read
            logits = step(next_ids[:, None], cache)
            cached += 1
        else:
            cache = None  # window is full: positions shift from here on, so recompute
            logits = model.next_token_logits(out[:, max(0, n - ctx):n])
    return out[:, :n]


def text_to_ids(text: str, tokenizer: Any) -> torch.Tensor:
    """Encode ``text`` to a (1, n) LongTensor; ``<|endoftext|>`` in the text is kept as its special id."""
    check_tokenizer(tokenizer)
    return torch.tensor([encode_text(text, tokenizer)], dtype=torch.long)


def ids_to_text(ids: torch.Tensor | Sequence[int], tokenizer: Any) -> str:
    """Decode one sequence of ids, a (1, n) or (n,) tensor or a list of ints, back to text."""
    if isinstance(ids, torch.Tensor):
        if ids.dim() == 2:
            if ids.shape[0] != 1:
                raise ValueError(f"ids_to_text decodes one sequence, got a batch of {ids.shape[0]}; "
                                 "decode each row separately")
            ids = ids[0]
        elif ids.dim() != 1:
            raise ValueError(f"ids must have shape (n,) or (1, n), got {tuple(ids.shape)}")
        ids = ids.tolist()
    ids = list(ids)
    bad = [i for i in ids if not 0 <= i < tokenizer.n_vocab]
    if bad:
        hint = " (-100 marks targets the loss ignores: drop those before decoding)" if bad[0] == -100 else ""
        raise ValueError(f"id {bad[0]} is not a token of this tokenizer (ids run from 0 to "
                         f"{tokenizer.n_vocab - 1}){hint}")
    return tokenizer.decode(ids)


def generate_text(model: nn.Module, tokenizer: Any, prompt: str, max_new_tokens: int, **sampling: Any) -> str:
    """Encode ``prompt``, :func:`generate` ``max_new_tokens`` more tokens, and return the whole text.

    The result includes the prompt. ``sampling`` is passed to :func:`generate` (temperature, top_k,
    top_p, use_cache, eos_id, generator, compile).
    """
    if not isinstance(prompt, str) or not prompt:
        raise ValueError(f"the prompt must be a non-empty str (start from {ENDOFTEXT!r} to generate from "
                         f"nothing), got {prompt!r}")
    out = generate(model, text_to_ids(prompt, tokenizer).to(model.device), max_new_tokens, **sampling)
    return ids_to_text(out[0], tokenizer)
