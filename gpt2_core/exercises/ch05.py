"""Checkers for chapter 5 (pretraining and sampling).

- ``ch05.adamw_first_step``: ``adamw_first_step(grad, lr, betas, eps) -> Tensor``, how much every weight
  changes (new minus old) in AdamW's very first step from zero moments, with ``weight_decay=0``, worked
  out by hand; the checker runs ``torch.optim.AdamW`` for the answer
- ``ch05.nucleus``: ``nucleus(logits, temperature, top_p) -> set[int]``, the token ids that sampling with
  that temperature and top-p can still draw from one row of ``logits`` (the ids, not the filtered logits)
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
from ..model.generation import top_p_filter
from ..model.gpt import GPTModel
from . import ExerciseFailed, exercise


def _adamw_change(grad: torch.Tensor, lr: float, betas: tuple[float, float], eps: float) -> torch.Tensor:
    """What torch's AdamW really does to weights that start at zero (so the change is the new value)."""
    weights = torch.zeros_like(grad, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.AdamW([weights], lr=lr, betas=betas, eps=eps, weight_decay=0.0, foreach=False)
    weights.grad = grad.double().clone()
    optimizer.step()
    return weights.detach()


_ADAM_CASES = [  # (gradient, lr, betas, eps): big, small, tiny (below eps) and zero gradients
    (torch.tensor([3.0, -0.5, 1e-3, -1e-9, 0.0, 2e-8], dtype=torch.float64), 1e-3, (0.9, 0.999), 1e-8),
    (torch.randn(3, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 0.01, 6e-4,
     (0.9, 0.95), 1e-8),  # the course's betas
    (torch.tensor([1e-7, -2.0, 0.25], dtype=torch.float64), 0.1, (0.5, 0.9), 1e-6),
]


def _same(got: torch.Tensor, want: torch.Tensor, lr: float) -> bool:
    return bool(torch.allclose(got, want, rtol=1e-5, atol=lr * 1e-7))


@exercise("ch05.adamw_first_step")
def check_adamw_first_step(candidate: Callable) -> None:
    for grad, lr, betas, eps in _ADAM_CASES:
        want = _adamw_change(grad, lr, betas, eps)
        got = candidate(grad.clone(), lr, betas, eps)
        what = f"grad={[float(f'{g:.3g}') for g in grad.flatten().tolist()][:6]}, lr={lr}, betas={betas}, eps={eps}"
        if not isinstance(got, torch.Tensor) or got.shape != grad.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise ExerciseFailed(f"for {what} return a tensor of the gradient's shape {tuple(grad.shape)}, got {shape}")
        got = got.double()
        if _same(got, want, lr):
            continue
        (b1, b2), g = betas, grad
        if torch.isnan(got).any():
            hint = ("a zero gradient gave NaN (0 / 0); keep eps in the denominator, it is there for exactly "
                    "this")
        elif _same(got, -lr * g, lr):
            hint = "that is plain SGD's step, -lr * grad; Adam divides by the square root of its second moment"
        elif _same(got, -want, lr):
            hint = "the step has the wrong sign: a weight moves *against* its gradient (downhill)"
        elif _same(got, -lr * (1 - b1) * g / ((1 - b2) ** 0.5 * g.abs() + eps), lr):
            hint = ("you left out Adam's bias correction: m and v start at zero, so after one step they are "
                    "(1 - beta1) * g and (1 - beta2) * g**2, and Adam divides them by (1 - beta1) and "
                    "(1 - beta2) before using them")
        elif _same(got, -lr * torch.sign(g), lr):
            hint = ("right for ordinary gradients, but look at the ones near or below eps: the denominator is "
                    "sqrt(v_hat) + eps, so a gradient of 1e-9 moves its weight by about lr / 11, not lr")
        else:
            hint = "work out m, v, their bias-corrected versions and the update for one step from zero moments"
        raise ExerciseFailed(f"for {what} expected {[float(f'{v:.4g}') for v in want.flatten().tolist()][:6]} but "
                             f"got {[float(f'{v:.4g}') for v in got.flatten().tolist()][:6]}; {hint}")


def _nucleus_ids(logits: torch.Tensor, temperature: float, top_p: float) -> list[int]:
    kept = top_p_filter(logits.double() / temperature, top_p)
    return torch.nonzero(~torch.isinf(kept)).flatten().tolist()


def _cumsum_at_most_p(logits: torch.Tensor, temperature: float, top_p: float) -> list[int]:
    """The classic slip: keep a token only while the running total *including it* stays <= top_p."""
    probs = torch.softmax(logits.double() / temperature, -1)
    sorted_probs, order = torch.sort(probs, descending=True)
    return sorted(order[torch.cumsum(sorted_probs, 0) <= top_p].tolist())


_FIVE = torch.tensor([0.5, 0.3, 0.1, 0.06, 0.04]).log()  # logits whose softmax at T=1 is these probabilities
_RANDOM = torch.randn(50, generator=torch.Generator().manual_seed(55)) * 2
_NUCLEUS_CASES = [  # every case is at least 0.005 away from a tie with top_p (no rounding decides it)
    (_FIVE, 1.0, 0.85), (_FIVE, 1.0, 0.45), (_FIVE, 1.0, 0.55), (_FIVE, 0.5, 0.85), (_FIVE, 2.0, 0.85),
    (torch.tensor([1.0, 3.0, -2.0, 2.5, 0.0]), 1.0, 0.9),  # not sorted: ids are positions in the row
    (torch.tensor([10.0, 0.0, 0.0]), 1.0, 0.9),  # the top token alone is past top_p
    (torch.tensor([2.0, 1.0, -8.0]), 1.0, 1.0),  # top_p = 1 keeps every token
    (_RANDOM, 0.7, 0.9), (_RANDOM, 1.5, 0.5),
]


def _as_ids(got: object, logits: torch.Tensor, what: str) -> list[int]:
    if isinstance(got, torch.Tensor):
        if got.is_floating_point() and got.shape == logits.shape:
            raise ExerciseFailed(f"for {what} you returned the filtered logits; return the token ids that are left "
                                 "(their positions in the row)")
        got = got.flatten().tolist()
    if not isinstance(got, (set, frozenset, list, tuple)) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in got):
        raise ExerciseFailed(f"for {what} return a set (or list) of int token ids, got {got!r}")
    if len(set(got)) != len(got):
        raise ExerciseFailed(f"for {what} some ids appear twice in {sorted(got)}")
    return sorted(got)


@exercise("ch05.nucleus")
def check_nucleus(candidate: Callable) -> None:
    for logits, temperature, top_p in _NUCLEUS_CASES:
        if logits.numel() <= 5:
            shown = [round(v, 3) for v in torch.softmax(logits.double(), -1).tolist()]
            what = f"logits {[round(v, 2) for v in logits.tolist()]} (softmax {shown}), "
        else:
            what = f"{logits.numel()} random logits, "
        what += f"temperature={temperature}, top_p={top_p}"
        got = _as_ids(candidate(logits.clone(), temperature, top_p), logits, what)
        want = _nucleus_ids(logits, temperature, top_p)
        if got == want:
            continue
        if not got:
            hint = "top-p always keeps the most likely token (otherwise there is nothing left to sample)"
        elif temperature != 1.0 and got == _nucleus_ids(logits, 1.0, top_p):
            hint = ("you applied top-p to the probabilities at temperature 1; sampling divides the logits by the "
                    "temperature first, and top-p cuts *those* probabilities")
        elif temperature != 1.0 and got == _nucleus_ids(logits * temperature * temperature, temperature, top_p):
            hint = "divide the logits by the temperature (you multiplied)"
        elif got == _cumsum_at_most_p(logits, temperature, top_p):
            hint = ("keep the token that carries the running total past top_p too: the nucleus is the smallest "
                    "set of top tokens whose mass *reaches* top_p")
        else:
            hint = "sort the probabilities, and keep each token while the mass of the tokens ranked above it is < top_p"
        raise ExerciseFailed(f"for {what} expected the ids {want} but got {got}; {hint}")


def _bigram_nats(train_ids: list[int], val_ids: list[int], vocab_size: int, alpha: float,
                 followed_by_anything: bool = True) -> float:
    """A small, obviously-right reference with Counters (the learner's version may well use tensors).

    ``followed_by_anything=False`` makes the classic slip (count(a) in the denominator), for the hint."""
    pairs = Counter(zip(train_ids, train_ids[1:], strict=False))
    # count(a, ·): how often a is followed by anything (not count(a), which also counts a last a)
    followed = Counter(train_ids[:-1] if followed_by_anything else train_ids)
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
            n = len(val_ids)
            if math.isclose(value, want * (n - 1) / n, rel_tol=1e-6):
                hint = f"; you divided by len(val_ids) = {n}, but there are only {n - 1} predictions"
            elif math.isclose(value, _bigram_nats(train_ids, val_ids, vocab, alpha, followed_by_anything=False),
                              rel_tol=1e-6):
                hint = ("; the denominator counts how often a is *followed* by a token: the last training id is "
                        "followed by nothing, so it does not count")
            else:
                hint = ""
            raise ExerciseFailed(f"for {what} expected {want:.6f} nats but got {value:.6f}{hint}")


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
