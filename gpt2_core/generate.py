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

For a ``GPTModel`` the cached one-token steps run through :mod:`gpt2_core.decoding`: the same
arithmetic as ``model(token, cache)``, with the weight matrices in the layout a matrix-vector product
reads fastest and no per-module overhead; ``compile=True`` also compiles that step (CUDA graphs on a
GPU). The prompt itself (the prefill) always goes through ``model(...)``.

Choosing a token (Holtzman et al., 2020, "The Curious Case of Neural Text Degeneration", explains why
plain sampling and greedy decoding both go wrong and introduces top-p):

- ``temperature=0``: greedy, always the highest-scoring token (deterministic).
- ``temperature>0``: sample from ``softmax(logits / temperature)``; below 1 sharpens, above 1 flattens.
- ``top_k``: keep only the k highest-scoring tokens before sampling.
- ``top_p`` (nucleus): keep the smallest set of top tokens whose probabilities add up to ``top_p``.

Run ``python -m gpt2_core.generate --help`` for the command-line tool.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import torch

from .bpe_ranks import ENDOFTEXT
from .decoding import decoder_for
from .model import GPTModel


def _check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Raise a clear error for sampling settings that make no sense."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"temperature must be a number, got {type(temperature).__name__}")
    if not temperature >= 0.0:  # also catches NaN
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, int):
            raise TypeError(f"top_k must be an int or None, got {type(top_k).__name__}")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1 (or None to keep every token), got {top_k}")
    if top_p is not None:
        if isinstance(top_p, bool) or not isinstance(top_p, (int, float)):
            raise TypeError(f"top_p must be a number or None, got {type(top_p).__name__}")
        if not 0.0 < top_p <= 1.0:
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


def _check_generate_args(model: Any, idx: Any, max_new_tokens: Any, eos_id: Any, use_cache: Any = True,
                         compile: Any = False) -> None:
    if not isinstance(compile, bool):
        raise TypeError(f"compile must be True or False, got {type(compile).__name__}")
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
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
        raise TypeError(f"max_new_tokens must be an int, got {type(max_new_tokens).__name__}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if eos_id is not None:
        if isinstance(eos_id, bool) or not isinstance(eos_id, int):
            raise TypeError(f"eos_id must be an int token id or None, got {type(eos_id).__name__}")
        vocab = model.cfg.vocab_size
        if not 0 <= eos_id < vocab:
            raise ValueError(f"eos_id={eos_id} is outside the vocabulary [0, {vocab})")


def generate(model: torch.nn.Module, idx: torch.Tensor, max_new_tokens: int, temperature: float = 0.0,
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

    ``compile=True`` (a ``GPTModel`` with ``use_cache=True``): the one-token step runs compiled by
    ``torch.compile`` (see :class:`gpt2_core.decoding.Decoder`). The first call per batch size pays the
    compile time (seconds to minutes); later calls on unchanged weights reuse it. Tokens are the same.

    Runs under ``torch.inference_mode()`` with the model in eval mode (dropout off); the model's
    previous train/eval mode is restored afterwards. The result lives on the model's device.
    """
    _check_sampling(temperature, top_k, top_p)
    _check_generate_args(model, idx, max_new_tokens, eos_id, use_cache, compile)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return _generate(model, idx.to(model.device), max_new_tokens, temperature, top_k, top_p,
                             use_cache, eos_id, generator, compile)
    finally:
        model.train(was_training)


def _generate(model: Any, idx: torch.Tensor, max_new_tokens: int, temperature: float, top_k: int | None,
              top_p: float | None, use_cache: bool, eos_id: int | None,
              generator: torch.Generator | None, compile: bool = False) -> torch.Tensor:
    if max_new_tokens == 0:
        return idx.clone()
    ctx = model.cfg.context_length
    batch, n = idx.shape
    decoder = cache = None
    if use_cache:
        decoder = decoder_for(model, compile=compile) if isinstance(model, GPTModel) else None
        if compile:
            cache = decoder.cache(batch)  # the full context, the same buffers every call
        else:  # never needs more than the window: past it we recompute anyway
            cache = model.new_kv_cache(batch, max_len=min(ctx, n + max_new_tokens))
    out = idx.new_empty(batch, n + max_new_tokens)  # filled column by column: no torch.cat per token
    out[:, :n] = idx
    finished = torch.zeros(batch, dtype=torch.bool, device=idx.device)
    logits = model(idx[:, -ctx:], cache, last_only=True)[:, -1]  # prefill the cache, or the first recomputation
    for step in range(max_new_tokens):
        next_ids = sample_next_token(logits, temperature, top_k, top_p, generator)
        if eos_id is not None:
            next_ids = next_ids.masked_fill(finished, eos_id)  # finished rows are padded with eos
            finished |= next_ids == eos_id
        out[:, n] = next_ids
        n += 1
        if step == max_new_tokens - 1 or (eos_id is not None and bool(finished.all())):
            break
        if cache is not None and cache.pos < cache.max_len:  # one new token against the cache
            if decoder is not None:
                logits = decoder.step(next_ids, cache, compiled=compile)
            else:
                logits = model(next_ids[:, None], cache, last_only=True)[:, -1]
        else:
            cache = None  # window is full: positions shift from here on, so recompute
            logits = model(out[:, max(0, n - ctx):n], last_only=True)[:, -1]
    return out[:, :n]


def text_to_ids(text: str, tokenizer: Any) -> torch.Tensor:
    """Encode ``text`` to a (1, n) LongTensor; ``<|endoftext|>`` in the text is kept as its special id."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    try:
        ids = tokenizer.encode(text, allowed_special={ENDOFTEXT})
    except TypeError:  # a tokenizer whose encode() takes only the text
        ids = tokenizer.encode(text)
    return torch.tensor([list(ids)], dtype=torch.long)


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
    return tokenizer.decode(list(ids))


def generate_text(model: torch.nn.Module, tokenizer: Any, prompt: str, max_new_tokens: int,
                  **sampling: Any) -> str:
    """Encode ``prompt``, :func:`generate` ``max_new_tokens`` more tokens, and return the whole text.

    The result includes the prompt. ``sampling`` is passed to :func:`generate` (temperature, top_k,
    top_p, use_cache, eos_id, generator).
    """
    idx = text_to_ids(prompt, tokenizer)
    if idx.shape[1] == 0:
        raise ValueError(f"the prompt is empty; start from {ENDOFTEXT!r} to generate from nothing")
    out = generate(model, idx.to(model.device), max_new_tokens, **sampling)
    return ids_to_text(out[0], tokenizer)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gpt2_core.generate",
        description="Generate text with a GPT-2 model: a course checkpoint, a Hugging Face directory, "
                    "or OpenAI's released weights.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", metavar="DIR",
                        help="a course checkpoint directory (gpt2_core.checkpoint)")
    source.add_argument("--hf", metavar="DIR", help="a Hugging Face GPT-2 directory (config.json + weights)")
    source.add_argument("--pretrained", metavar="NAME",
                        help="OpenAI weights by name, e.g. gpt2 (downloads; needs network)")
    parser.add_argument("--prompt", default="Every effort moves you", help="text to continue")
    parser.add_argument("--max-new-tokens", type=int, default=50, help="how many tokens to add (default 50)")
    parser.add_argument("--temperature", type=float, default=0.0,
                        help="0 = greedy (default); >0 samples, higher is more random")
    parser.add_argument("--top-k", type=int, default=None, help="sample only from the k most likely tokens")
    parser.add_argument("--top-p", type=float, default=None,
                        help="nucleus sampling: the smallest set of tokens with this much probability")
    parser.add_argument("--seed", type=int, default=123, help="random seed for sampling (default 123)")
    parser.add_argument("--no-cache", action="store_true", help="recompute every step instead of a KV cache")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the one-token step (slow first call; CUDA graphs on a GPU)")
    return parser


def _load_model(args: argparse.Namespace, device: torch.device) -> torch.nn.Module:
    from .model import GPTModel

    if args.checkpoint:
        from .checkpoint import load_checkpoint

        return load_checkpoint(args.checkpoint, restore_rng=False, map_location=device)["model"]
    method = "from_hf" if args.hf else "from_pretrained"
    loader = getattr(GPTModel, method, None)
    if loader is None:
        raise RuntimeError(f"GPTModel.{method} is not available in this version of gpt2_core")
    return loader(args.hf or args.pretrained).to(device)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (args.checkpoint or args.hf or args.pretrained):
        parser.error("no model given: pass --checkpoint DIR (a course checkpoint), --hf DIR "
                     "(a Hugging Face GPT-2 directory) or --pretrained gpt2 (downloads OpenAI's weights)")
    try:
        _check_sampling(args.temperature, args.top_k, args.top_p)
    except (TypeError, ValueError) as err:
        parser.error(str(err))
    if args.compile and args.no_cache:
        parser.error("--compile compiles the cached one-token step; it cannot be combined with --no-cache")
    from .profile import get_device, seed_everything
    from .tokenizer import gpt2_encoding

    seed_everything(args.seed)
    device = get_device()
    try:
        model = _load_model(args, device)
    except (FileNotFoundError, ValueError, RuntimeError, OSError) as err:
        print(f"error: could not load the model: {err}", file=sys.stderr)
        return 1
    generator = torch.Generator(device=model.device).manual_seed(args.seed)
    text = generate_text(model, gpt2_encoding(), args.prompt, args.max_new_tokens,
                         temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                         use_cache=not args.no_cache, generator=generator, compile=args.compile)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
