"""Checkers for chapter 5 (pretraining and sampling).

- ``ch05.top_k_filter``: ``top_k_filter(logits: Tensor, k: int) -> Tensor``, logits below the k-th largest
  of each row (last dimension) set to ``-inf``, the rest unchanged
- ``ch05.lr_at_step``: ``lr_at_step(step, max_steps, warmup_steps, max_lr, min_lr) -> float``, linear warmup
  ``max_lr * (step + 1) / warmup_steps``, then cosine decay to ``min_lr`` at ``max_steps`` (and after)
- ``ch05.bigram_loss``: ``bigram_loss(train_ids, val_ids, vocab_size, alpha) -> float``, the mean
  cross-entropy (nats) over the ``len(val_ids) - 1`` next-token predictions of a bigram model counted on
  ``train_ids`` with add-``alpha`` smoothing: ``p(b | a) = (count(a, b) + alpha) / (count(a, ·) + alpha * V)``
- ``ch05.accumulate_gradients``: ``accumulate_gradients(model, inputs, targets, micro_batches) -> None``
  leaves in every ``.grad`` the gradient of the whole batch's mean loss, using ``micro_batches`` smaller
  forward/backward passes (``inputs.tensor_split(micro_batches)``: the pieces may differ in size)

Reference solutions: :mod:`gpt2_core.exercises.solutions.ch05`.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable

import torch

from ..model.config import GPTConfig
from ..model.generation import top_k_filter
from ..model.gpt import GPTModel
from ..pretraining.optim import lr_schedule
from . import ExerciseFailed, exercise


def _close(got: object, want: float, what: str, rel: float = 1e-6) -> None:
    if not isinstance(got, (int, float)) or isinstance(got, bool):
        raise ExerciseFailed(f"for {what} return a number, got {type(got).__name__}")
    if not math.isclose(float(got), want, rel_tol=rel, abs_tol=1e-12):
        raise ExerciseFailed(f"for {what} expected {want:.6g} but got {float(got):.6g}")


@exercise("ch05.top_k_filter")
def check_top_k_filter(candidate: Callable) -> None:
    g = torch.Generator().manual_seed(5)
    cases = [(torch.tensor([1.0, 3.0, 2.0, -1.0]), 2), (torch.tensor([[0.5, -2.0, 4.0], [3.0, 1.0, 2.0]]), 1),
             (torch.randn(3, 20, generator=g), 5), (torch.tensor([2.0, 1.0]), 2)]
    for logits, k in cases:
        got = candidate(logits.clone(), k)
        if not isinstance(got, torch.Tensor) or got.shape != logits.shape:
            raise ExerciseFailed(f"return a tensor of shape {tuple(logits.shape)} (the same as the logits)")
        want = top_k_filter(logits, k)
        if not torch.equal(torch.isinf(got), torch.isinf(want)) or not torch.allclose(
                got[~torch.isinf(want)], want[~torch.isinf(want)]):
            raise ExerciseFailed(f"for logits {logits.tolist() if logits.numel() < 10 else '(random 3x20)'} "
                                 f"and k={k} expected {want.tolist() if want.numel() < 10 else '...'}")


@exercise("ch05.lr_at_step")
def check_lr_at_step(candidate: Callable) -> None:
    for args in [(0, 100, 10, 1e-3, 1e-4), (4, 100, 10, 1e-3, 1e-4), (9, 100, 10, 1e-3, 1e-4),
                 (10, 100, 10, 1e-3, 1e-4), (55, 100, 10, 1e-3, 1e-4), (99, 100, 10, 1e-3, 1e-4),
                 (150, 100, 10, 1e-3, 1e-4), (0, 50, 0, 6e-4, 0.0), (25, 50, 0, 6e-4, 0.0)]:
        step, max_steps, warmup, max_lr, min_lr = args
        _close(candidate(*args), lr_schedule(*args),
               f"step={step}, max_steps={max_steps}, warmup_steps={warmup}, max_lr={max_lr}, min_lr={min_lr}")


def _bigram_nats(train_ids: list[int], val_ids: list[int], vocab_size: int, alpha: float) -> float:
    """A small, obviously-right reference with Counters (the learner's version may well use tensors)."""
    pairs = Counter(zip(train_ids, train_ids[1:], strict=False))
    followed = Counter(train_ids[:-1])  # count(a, ·): how often a is followed by anything (not count(a))
    total = 0.0
    for a, b in zip(val_ids, val_ids[1:], strict=False):
        total -= math.log((pairs[a, b] + alpha) / (followed[a] + alpha * vocab_size))
    return total / (len(val_ids) - 1)


def _bigram_cases() -> list[tuple[list[int], list[int], int, float]]:
    rng = random.Random(55)
    return [
        ([0, 1, 0, 1, 2], [0, 1, 2], 3, 1.0),
        ([1, 1, 1], [1, 1, 0], 2, 0.5),
        ([2, 0, 1, 2], [2, 0, 2, 2], 4, 1.0),  # 2 ends the training ids: count(2, ·) = 1, not count(2) = 2
        ([0, 1], [3, 0], 5, 1.0),  # a context never seen in training: the uniform 1 / V
        ([3, 4], [3, 4], 6, 0.1),  # one prediction only
        ([rng.randrange(12) for _ in range(300)], [rng.randrange(12) for _ in range(80)], 12, 0.01),
        ([rng.randrange(40) for _ in range(500)], [rng.randrange(40) for _ in range(60)], 50, 2.0),
    ]


@exercise("ch05.bigram_loss")
def check_bigram_loss(candidate: Callable) -> None:
    for train_ids, val_ids, vocab, alpha in _bigram_cases():
        want = _bigram_nats(train_ids, val_ids, vocab, alpha)
        small = len(train_ids) < 20
        what = (f"train_ids={train_ids}, val_ids={val_ids}" if small else
                f"{len(train_ids)} random training ids and {len(val_ids)} validation ids") + \
            f", vocab_size={vocab}, alpha={alpha}"
        got = candidate(list(train_ids), list(val_ids), vocab, alpha)
        try:
            value = float(got)
        except (TypeError, ValueError):
            raise ExerciseFailed(f"for {what} return a number, got {type(got).__name__}") from None
        if math.isinf(value) or math.isnan(value):
            raise ExerciseFailed(f"for {what} you got {value}: a pair never seen in training must still get "
                                 "probability > 0 (add alpha to every count)")
        if math.isclose(value, want / math.log(2), rel_tol=1e-6):
            raise ExerciseFailed(f"for {what} you answered in bits; the loss is in nats (natural log)")
        if not math.isclose(value, want, rel_tol=1e-6, abs_tol=1e-9):
            raise ExerciseFailed(f"for {what} expected {want:.6f} nats but got {value:.6f}")


_GRAD_CASES = [(4, 2), (5, 2), (6, 3), (3, 1), (7, 4)]  # (rows, micro-batches): 5 -> 3 + 2, 7 -> 2 + 2 + 2 + 1


@exercise("ch05.accumulate_gradients")
def check_accumulate_gradients(candidate: Callable) -> None:
    cfg = GPTConfig(vocab_size=37, context_length=8, emb_dim=16, n_heads=2, n_layers=1, drop_rate=0.0)
    torch.manual_seed(5)
    model = GPTModel(cfg)
    gen = torch.Generator().manual_seed(5)
    rows_seen: list[int] = []
    hook = model.register_forward_pre_hook(lambda _module, args: rows_seen.append(args[0].shape[0]))
    try:
        for rows, k in _GRAD_CASES:
            x = torch.randint(0, cfg.vocab_size, (rows, 8), generator=gen)
            y = torch.randint(0, cfg.vocab_size, (rows, 8), generator=gen)
            model.zero_grad(set_to_none=True)
            model(x, targets=y).backward()
            want = {name: p.grad.clone() for name, p in model.named_parameters()}
            model.zero_grad(set_to_none=True)
            rows_seen.clear()
            candidate(model, x.clone(), y.clone(), k)
            what = f"a batch of {rows} rows in {k} micro-batch(es) ({[len(p) for p in x.tensor_split(k)]} rows)"
            if len(rows_seen) != k or (k > 1 and max(rows_seen) == rows):
                raise ExerciseFailed(f"for {what} the model ran on {rows_seen} rows; run it once per micro-batch")
            for name, p in model.named_parameters():
                if p.grad is None:
                    raise ExerciseFailed(f"for {what} {name}.grad is empty; call backward() on each micro-batch loss")
                if torch.allclose(p.grad, k * want[name], rtol=1e-4, atol=1e-6) and k > 1:
                    raise ExerciseFailed(f"for {what} your gradients are {k}x too large: each backward() adds to "
                                         ".grad, so each micro-batch's loss must be scaled down")
                if not torch.allclose(p.grad, want[name], rtol=1e-4, atol=1e-6):
                    gap = (p.grad - want[name]).abs().max().item()
                    raise ExerciseFailed(f"for {what} {name}.grad differs from the full batch's (largest gap "
                                         f"{gap:.3g}); keep every micro-batch's gradient (do not clear .grad in "
                                         "between), and weigh each by its share of the rows: the loss is a mean "
                                         "over all tokens")
    finally:
        hook.remove()
