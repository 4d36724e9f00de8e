"""Checkers for chapter 4 (the GPT-2 architecture).

- ``ch04.count_parameters``: ``count_parameters(cfg: GPTConfig) -> int`` by formula (tied output head),
  compared with the real GPTModel built on the meta device; a wrong count is told which part it missed (or
  added) when one common mistake explains it on every test shape
- ``ch04.flops_per_token``: ``flops_per_token(cfg, training=False) -> int``: ``2 *`` (weights of every matrix
  multiplication, the output head included even when tied) ``+ 2 * n_layers * context_length * emb_dim``
  (attention's two matmuls, halved by the causal mask) for a forward pass; three times that to train
- ``ch04.kv_cache_bytes``: ``kv_cache_bytes(cfg, batch, num_tokens, dtype) -> int``, the memory of the keys
  and values a KV cache keeps for ``batch`` sequences of ``num_tokens`` tokens

Reference solutions: :mod:`gpt2_core.exercises.solutions.ch04`.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations

import torch
from torch import nn

from ..model.attention import KVCache
from ..model.config import GPTConfig
from ..model.gpt import GPTModel
from . import ExerciseFailed, exercise

_COUNT_CASES = [
    GPTConfig(vocab_size=10, context_length=4, emb_dim=8, n_heads=2, n_layers=1),
    GPTConfig(vocab_size=100, context_length=32, emb_dim=12, n_heads=3, n_layers=3),
    GPTConfig(vocab_size=50, context_length=16, emb_dim=16, n_heads=4, n_layers=2, qkv_bias=False),
    GPTConfig.preset("gpt2"),
]


# The parts of the model: (name, formula, which parameters of GPTModel belong to it). They are counted on
# the real model, so that the feedback on a wrong count can say which part it left out.
_PARTS = [
    ("the token embedding", "vocab_size x emb_dim", lambda n: n.startswith("tok_emb")),
    ("the position embedding", "context_length x emb_dim", lambda n: n.startswith("pos_emb")),
    ("the final LayerNorm", "2 x emb_dim", lambda n: n.startswith("final_norm")),
    ("the q, k, v weights", "3 x emb_dim² a block", lambda n: n.endswith("att.qkv.weight")),
    ("the q, k, v biases", "3 x emb_dim a block, when qkv_bias=True", lambda n: n.endswith("att.qkv.bias")),
    ("the attention's output projection weights", "emb_dim² a block", lambda n: n.endswith("out_proj.weight")),
    ("the attention's output projection biases", "emb_dim a block", lambda n: n.endswith("out_proj.bias")),
    ("the feed-forward weights", "2 x 4 x emb_dim² a block", lambda n: ".ff." in n and n.endswith("weight")),
    ("the feed-forward biases", "4 x emb_dim + emb_dim a block", lambda n: ".ff." in n and n.endswith("bias")),
    ("the blocks' two LayerNorms", "2 x 2 x emb_dim a block", lambda n: ".norm1." in n or ".norm2." in n),
]
_FORMULAS = {name: formula for name, formula, _ in _PARTS} | {
    "the transformer blocks": "n_layers x (12 x emb_dim² + 13 x emb_dim)"}
_BLOCK_PARTS = {name for name, formula, _ in _PARTS if "a block" in formula}
_TOP = ("the token embedding", "the position embedding", "the transformer blocks", "the final LayerNorm")


def _parts(cfg: GPTConfig) -> dict[str, int]:
    """{part: parameters} of the real model (built on the meta device); all but the last add up to it, and
    the last, "the transformer blocks", is the sum of the parts inside the blocks."""
    with torch.device("meta"):
        named = list(GPTModel(cfg).named_parameters())  # the tied head is listed once, as tok_emb
    parts = {name: sum(p.numel() for n, p in named if belongs(n)) for name, _, belongs in _PARTS}
    parts["the transformer blocks"] = sum(parts[name] for name in _BLOCK_PARTS)
    return parts


def _mistakes(cfg: GPTConfig) -> dict[str, int]:
    """Common ways to miscount ``cfg``, each with what it leaves out (negative: what it adds): {words: want - got}."""
    parts = _parts(cfg)
    blocks = parts["the transformer blocks"]
    out = {
        "you counted the output head on top of the token embedding; it is tied to the token embedding (the "
        "same matrix), so it adds no parameters": -cfg.vocab_size * cfg.emb_dim,
        "you counted q, k, v biases, but qkv_bias=False leaves them out": 0 if cfg.qkv_bias else
        -3 * cfg.emb_dim * cfg.n_layers,
        "you counted one transformer block; the model has n_layers of them": blocks - blocks // cfg.n_layers,
        "12 x emb_dim² a block counts the weight matrices alone: add every bias and LayerNorm": sum(
            parts[name] for name in parts if "bias" in name or "LayerNorm" in name),
    }
    names = [name for name, _, _ in _PARTS]
    for missing in [("the transformer blocks",), *(c for r in (1, 2, 3) for c in combinations(names, r)
                                                   if not _BLOCK_PARTS <= set(c))]:
        counted = [name for name in _TOP if name not in missing
                   and not (name == "the transformer blocks" and _BLOCK_PARTS & set(missing))]
        left_out = _and([f"{name} ({_FORMULAS[name]})" for name in missing])
        out.setdefault(f"you counted {_and(counted)} but not {left_out}", sum(parts[n] for n in missing))
    return out


def _and(names: list[str]) -> str:
    return " and ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " and " + names[-1]


def _hint(results: list[tuple[GPTConfig, int, int]]) -> str:
    """The first common mistake that explains every (cfg, got, want) at once; '' if none does."""
    tables = [_mistakes(cfg) for cfg, _, _ in results]
    for words in tables[0]:
        if all(table[words] == want - got for table, (_, got, want) in zip(tables, results, strict=True)):
            return words
    return ""


@exercise("ch04.count_parameters")
def check_count_parameters(candidate: Callable) -> None:
    results = []
    for cfg in _COUNT_CASES:
        with torch.device("meta"):
            want = GPTModel(cfg).num_parameters()
        got = candidate(cfg)
        if not isinstance(got, int) or isinstance(got, bool):
            raise ExerciseFailed(f"return an int, got {type(got).__name__}")
        results.append((cfg, got, want))
    wrong = [(cfg, got, want) for cfg, got, want in results if got != want]
    if wrong:
        cfg, got, want = wrong[0]
        hint = _hint(results) or ("count the two embeddings; in each block the attention (q, k, v and the output "
                                  "projection), the feed-forward network and two LayerNorms; and the final LayerNorm")
        raise ExerciseFailed(f"for {cfg} expected {want:,} but got {got:,}: {hint}")


# The course's shapes and GPT-2's, plus a small vocabulary (the course tokenizer's) where the head is cheap.
_FLOP_CASES = [
    GPTConfig.preset("tiny"),
    GPTConfig.preset("default", vocab_size=8192),
    GPTConfig.preset("gpt2"),
    GPTConfig.preset("gpt2-xl"),
    GPTConfig(vocab_size=300, context_length=32, emb_dim=48, n_heads=3, n_layers=2, qkv_bias=False),
]


def _matmul_weights(cfg: GPTConfig) -> tuple[int, int]:
    """Weights of every nn.Linear of the real model (the tied head is a Linear too: it is multiplied),
    and all its parameters (for the hint when they are used instead)."""
    with torch.device("meta"):
        model = GPTModel(cfg)
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear)), model.num_parameters()


def _as_count(got: object, what: str) -> float:
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        raise ExerciseFailed(f"for {what} return a number, got {type(got).__name__}")
    return float(got)


@exercise("ch04.flops_per_token")
def check_flops_per_token(candidate: Callable) -> None:
    for cfg in _FLOP_CASES:
        weights, parameters = _matmul_weights(cfg)
        attention = 2 * cfg.n_layers * cfg.context_length * cfg.emb_dim
        head = cfg.vocab_size * cfg.emb_dim
        for training in (False, True):
            factor = 3 if training else 1
            want = factor * (2 * weights + attention)
            what = f"{cfg} with training={training}"
            got = _as_count(candidate(cfg, training=training), what)
            if got == want:
                continue
            hints = {factor * (2 * (weights - head) + attention): "you left out the output head: tying shares "
                     "the memory of the weights, not the work of multiplying by them",
                     factor * (2 * weights + 2 * attention): "the causal mask lets a token see half the "
                     "context on average, so attention costs 2 * n_layers * context_length * emb_dim, not twice that",
                     factor * 2 * weights: "you left out attention's scores and weighted sum",
                     factor * (2 * parameters + attention): "you counted every parameter; count the weights "
                     "that are multiplied (the embeddings are lookups; biases and LayerNorms are left out)",
                     2 * weights + attention: "training = forward + backward, and backward costs about twice "
                     "the forward: 3x in all"}
            hint = hints.get(got, "count 2 FLOPs (a multiply and an add) per weight of every matrix multiplication")
            raise ExerciseFailed(f"for {what} expected {want:,} but got {got:,.0f}; {hint}")


@exercise("ch04.kv_cache_bytes")
def check_kv_cache_bytes(candidate: Callable) -> None:
    cases = [(GPTConfig.preset("tiny"), 4, 64, torch.float32), (GPTConfig.preset("gpt2"), 1, 1024, torch.float32),
             (GPTConfig.preset("gpt2"), 8, 1024, torch.bfloat16), (GPTConfig.preset("gpt2-xl"), 1, 1024, torch.float16),
             (GPTConfig.preset("default"), 3, 100, torch.float64)]
    for cfg, batch, tokens, dtype in cases:
        cache = KVCache(cfg.n_layers, batch, cfg.n_heads, cfg.head_dim, tokens, device="meta", dtype=dtype)
        want = sum(t.numel() * t.element_size() for t in cache.keys + cache.values)
        what = f"{cfg.n_layers} layers x {cfg.n_heads} heads of width {cfg.head_dim}, batch={batch}, " \
               f"num_tokens={tokens}, dtype={dtype}"
        got = _as_count(candidate(cfg, batch, tokens, dtype), what)
        if got == want / 2:
            raise ExerciseFailed(f"for {what} you got half the answer: the cache keeps keys *and* values")
        if got != want:
            raise ExerciseFailed(f"for {what} expected {want:,} bytes but got {got:,.0f} "
                                 f"(hint: {dtype} takes {dtype.itemsize} bytes a number)")
