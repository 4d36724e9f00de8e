"""Checkers for chapter 6 (classification fine-tuning).

- ``ch06.ulmfit_groups``: ``ulmfit_groups(model, stage, lr, factor) -> list[dict]``, ULMFiT's gradual
  unfreezing with discriminative learning rates, for a GPTModel with a classification head. Counting
  layers from the top: layer 0 is ``out_head`` with ``final_norm``, layer ``i`` (1..n) is
  ``model.blocks[n - i]`` (the top block is layer 1), layer ``n + 1`` is ``tok_emb`` with ``pos_emb``.
  Stage ``s`` trains layers 0..s and freezes the rest (``requires_grad``); layer ``i`` trains at
  ``lr / factor**i``. Returns AdamW parameter groups, ``{"params": [...], "lr": ...}``, one per trained
  layer and holding only trained parameters
- ``ch06.operating_point``: ``operating_point(scores, labels, max_false_alarms) -> (threshold, recall)``.
  An e-mail is flagged as spam when its score (P(spam)) is *greater than* the threshold; return the
  smallest threshold that flags at most ``max_false_alarms`` ham e-mails (label 0), and the share of
  the spam (label 1) it flags
- ``ch06.mcnemar``: ``mcnemar_p(y_true, pred_a, pred_b) -> float``, the exact two-sided McNemar p-value
  of two classifiers on the same examples: of the examples where exactly one of them is right, is
  "A right" as likely as "B right"? (a binomial test with p = 1/2 on those, capped at 1)

Reference solutions: :mod:`gpt2_core.exercises.solutions.ch06`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import torch

from ..finetuning.classification import add_classification_head
from ..finetuning.compare import mcnemar
from ..model.config import GPTConfig
from ..model.gpt import GPTModel
from . import ExerciseFailed, exercise


# --------------------------------------------------------------------------- gradual unfreezing
def _layers_from_the_top(model: GPTModel) -> list[list[tuple[str, torch.nn.Parameter]]]:
    """ULMFiT's layers, top first: [head + final norm, top block, ..., bottom block, embeddings]."""
    def named(*modules: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
        return [(f"{prefix}.{name}", p) for prefix, module in modules for name, p in module.named_parameters()]

    n = len(model.blocks)
    layers = [named(("out_head", model.out_head), ("final_norm", model.final_norm))]
    layers += [named((f"blocks.{n - i}", model.blocks[n - i])) for i in range(1, n + 1)]
    layers.append(named(("tok_emb", model.tok_emb), ("pos_emb", model.pos_emb)))
    return layers


def _check_groups(groups: object, what: str) -> list[tuple[list, float]]:
    if not isinstance(groups, (list, tuple)) or not all(isinstance(g, dict) for g in groups):
        raise ExerciseFailed(f"for {what} return a list of dicts, {{'params': [...], 'lr': ...}}, one per trained "
                             f"layer; got {type(groups).__name__}")
    out = []
    for g in groups:
        if "params" not in g or "lr" not in g:
            raise ExerciseFailed(f"for {what} every group needs 'params' and 'lr'; one has {sorted(g)}")
        out.append((list(g["params"]), g["lr"]))
    return out


def _same_rates(rates: list[float], pattern: list[float]) -> bool:
    return all(math.isclose(g, w, rel_tol=1e-9) for g, w in zip(rates, pattern, strict=True))


def _rounded(values: list[float]) -> list[float]:
    return [float(f"{v:.4g}") for v in values]


@exercise("ch06.ulmfit_groups")
def check_ulmfit_groups(candidate: Callable) -> None:
    cfg = GPTConfig(vocab_size=50, context_length=8, emb_dim=16, n_heads=2, n_layers=3, drop_rate=0.0)
    torch.manual_seed(6)
    model = add_classification_head(GPTModel(cfg), 2, "mean")
    layers = _layers_from_the_top(model)
    assert sum(len(layer) for layer in layers) == len(list(model.parameters()))
    n = cfg.n_layers
    # stages out of order, so that a stage must freeze what an earlier call unfroze
    for stage, lr, factor in [(0, 1e-3, 2.6), (n + 1, 1e-3, 2.6), (1, 3e-4, 2.0), (n, 1e-3, 2.6), (2, 1e-3, 2.6)]:
        what = f"stage={stage} of a {n}-block model, lr={lr}, factor={factor}"
        model.requires_grad_(True)  # whatever the last call left, every stage starts from this
        groups = _check_groups(candidate(model, stage, lr, factor), what)
        trained = {id(p): (name, i) for i, layer in enumerate(layers[:stage + 1]) for name, p in layer}
        names = {id(p): name for layer in layers for name, p in layer}
        # 1. which parameters train
        if 1 <= stage < n and any(p.requires_grad for p in model.blocks[0].parameters()) and \
                not any(p.requires_grad for p in model.blocks[n - 1].parameters()):
            raise ExerciseFailed(f"for {what} you unfroze the bottom block; ULMFiT unfreezes from the top down: "
                                 "stage 1 adds the block next to the head, model.blocks[-1]")
        for layer_index, layer in enumerate(layers):
            for name, p in layer:
                should = layer_index <= stage
                if p.requires_grad == should:
                    continue
                if should and layer_index == 0:
                    raise ExerciseFailed(f"for {what} {name} is frozen; the head and final_norm (layer 0) train "
                                         "at every stage, stage 0 included")
                if should:
                    raise ExerciseFailed(f"for {what} {name} (layer {layer_index}) should train: stage {stage} "
                                         f"trains layers 0..{stage}")
                raise ExerciseFailed(f"for {what} {name} (layer {layer_index}) still has requires_grad=True; "
                                     f"stage {stage} freezes every layer below layer {stage}")
        # 2. the groups hold exactly the trained parameters, each once, with its layer's rate
        seen: dict[int, float] = {}
        for params, group_lr in groups:
            for p in params:
                if not isinstance(p, torch.nn.Parameter) or id(p) not in names:
                    raise ExerciseFailed(f"for {what} the groups must hold the model's parameters themselves "
                                         f"(from .parameters()), got a {type(p).__name__}")
                if id(p) in seen:
                    raise ExerciseFailed(f"for {what} {names[id(p)]} is in two groups; AdamW refuses that")
                if id(p) not in trained:
                    raise ExerciseFailed(f"for {what} {names[id(p)]} is frozen at this stage but is in your groups")
                seen[id(p)] = group_lr
        missing = [name for key, (name, _) in trained.items() if key not in seen]
        if missing:
            raise ExerciseFailed(f"for {what} {missing[0]} trains but is in no group, so AdamW would never update it")
        rates = []  # the rate of each trained layer, top first
        for i, layer in enumerate(layers[:stage + 1]):
            (first, p0), *rest = layer
            got = seen[id(p0)]
            if isinstance(got, bool) or not isinstance(got, (int, float)):
                raise ExerciseFailed(f"for {what} give each group's 'lr' as a number, got {type(got).__name__}")
            other = next((name for name, p in rest if seen[id(p)] != got), None)
            if other:
                raise ExerciseFailed(f"for {what} {first} and {other} are in the same layer ({i}) but have different "
                                     "rates; a layer trains at one rate")
            rates.append(float(got))
        want = [lr / factor**i for i in range(stage + 1)]
        if _same_rates(rates, want):
            continue
        blocks_reversed = [lr] + [lr / factor ** (n + 1 - i) if i <= n else lr / factor**i for i in range(1, stage + 1)]
        if _same_rates(rates, [lr] * (stage + 1)):
            hint = "discriminative rates: each layer down divides the rate by factor"
        elif _same_rates(rates, [lr * factor**i for i in range(stage + 1)]):
            hint = "lower layers get *smaller* rates: divide by factor once per layer down, do not multiply"
        elif _same_rates(rates, [lr] + [lr / factor ** (i - 1) for i in range(1, stage + 1)]):
            hint = "the head is layer 0, at lr; the top block is one layer below it, at lr / factor"
        elif _same_rates(rates, blocks_reversed):
            hint = ("the rates run through the blocks the wrong way: count from the top down, layer 1 is the top "
                    "block (model.blocks[-1]), next to the head")
        else:
            hint = "layer i trains at lr / factor**i"
        raise ExerciseFailed(f"for {what} the rates of layers 0..{stage} (head first) should be {_rounded(want)} "
                             f"but are {_rounded(rates)}; {hint}")


# --------------------------------------------------------------------------- operating point
def _flags(scores: list[float], labels: list[int], threshold: float, label: int, at_least: bool = False) -> int:
    return sum((s >= threshold if at_least else s > threshold) for s, y in zip(scores, labels, strict=True)
               if y == label)


def _operating_point(scores: list[float], labels: list[int], max_false_alarms: int) -> tuple[float, float]:
    ham = sorted((s for s, y in zip(scores, labels, strict=True) if y == 0), reverse=True)
    threshold = ham[max_false_alarms]  # the (k+1)-th highest ham score: above it are at most k ham
    return threshold, _flags(scores, labels, threshold, 1) / labels.count(1)


def _operating_cases() -> list[tuple[list[float], list[int], int]]:
    rng = random.Random(66)
    ham = [round(rng.betavariate(2, 5), 3) for _ in range(40)]
    spam = [round(rng.betavariate(5, 2), 3) for _ in range(40)]
    mixed = list(zip(ham + spam, [0] * 40 + [1] * 40, strict=True))
    rng.shuffle(mixed)
    return [
        ([0.9, 0.8, 0.3, 0.2, 0.7, 0.1], [1, 1, 0, 0, 1, 0], 0),  # separable: every spam above every ham
        ([0.95, 0.99, 0.6, 0.9, 0.4, 0.5, 0.1, 0.3], [0, 1, 0, 1, 0, 1, 0, 1], 0),
        ([0.95, 0.99, 0.6, 0.9, 0.4, 0.5, 0.1, 0.3], [0, 1, 0, 1, 0, 1, 0, 1], 1),
        ([0.95, 0.99, 0.6, 0.9, 0.4, 0.5, 0.1, 0.3], [0, 1, 0, 1, 0, 1, 0, 1], 2),
        ([0.8, 0.8, 0.2, 0.8, 0.9], [0, 0, 0, 1, 1], 1),  # ties: a spam scores exactly the threshold
        ([s for s, _ in mixed], [y for _, y in mixed], 2),
    ]


@exercise("ch06.operating_point")
def check_operating_point(candidate: Callable) -> None:
    for scores, labels, k in _operating_cases():
        want_t, want_r = _operating_point(scores, labels, k)
        what = (f"scores={scores}, labels={labels}" if len(scores) < 10 else
                f"{len(scores)} seeded scores ({labels.count(0)} ham, {labels.count(1)} spam)") + \
            f", max_false_alarms={k}"
        got = candidate(list(scores), list(labels), k)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise ExerciseFailed(f"for {what} return a pair (threshold, recall), got {got!r}")
        try:
            threshold, recall = float(got[0]), float(got[1])
        except (TypeError, ValueError):
            raise ExerciseFailed(f"for {what} return two numbers (threshold, recall), got {got!r}") from None
        alarms = _flags(scores, labels, threshold, 0)
        if alarms > k:
            raise ExerciseFailed(f"for {what} your threshold {threshold:g} flags {alarms} ham e-mails (scores above "
                                 f"it), more than max_false_alarms={k}")
        if not math.isclose(threshold, want_t, abs_tol=1e-12):
            raise ExerciseFailed(f"for {what} your threshold {threshold:g} flags {alarms} ham e-mail(s), within the "
                                 f"budget, but a lower one would stay within it too and catch more spam: expected "
                                 f"{want_t:g}, the lowest threshold with at most {k} ham scores above it")
        if math.isclose(recall, want_r, abs_tol=1e-12):
            continue
        if math.isclose(recall, _flags(scores, labels, threshold, 1, at_least=True) / labels.count(1), abs_tol=1e-12):
            hint = "an e-mail is flagged when its score is *greater than* the threshold, not equal to it"
        elif math.isclose(recall, (_flags(scores, labels, threshold, 0) + _flags(scores, labels, threshold, 1))
                          / len(scores), abs_tol=1e-12):
            hint = "that is the share of all e-mails flagged; recall is the share of the *spam* that is flagged"
        else:
            hint = "recall = spam e-mails above the threshold / all spam e-mails"
        raise ExerciseFailed(f"for {what} the threshold {threshold:g} is right, but expected recall {want_r:.4f}, "
                             f"got {recall:.4f}; {hint}")


# --------------------------------------------------------------------------- McNemar's test
def _binomial_tail(n: int, at_most: int) -> float:
    """P(X <= at_most) for X ~ Binomial(n, 1/2), exactly."""
    return sum(math.comb(n, i) for i in range(at_most + 1)) / 2**n


def _discordant(y_true: list[int], pred_a: list[int], pred_b: list[int]) -> tuple[int, int]:
    only_a = sum(a == y != b for y, a, b in zip(y_true, pred_a, pred_b, strict=True))
    only_b = sum(b == y != a for y, a, b in zip(y_true, pred_a, pred_b, strict=True))
    return only_a, only_b


def _mcnemar(y_true: list[int], pred_a: list[int], pred_b: list[int]) -> float:
    return mcnemar(y_true, pred_a, pred_b).p_value  # the finished piece the chapter uses


def _with_counts(right_a: int, right_b: int, both_right: int, both_wrong: int) -> tuple[list, list, list]:
    """Labels and two prediction lists with the given agreement counts (binary labels, mixed classes)."""
    y, a, b = [], [], []
    for count, a_right, b_right in ((right_a, True, False), (right_b, False, True), (both_right, True, True),
                                    (both_wrong, False, False)):
        for i in range(count):
            label = i % 2
            y.append(label)
            a.append(label if a_right else 1 - label)
            b.append(label if b_right else 1 - label)
    return y, a, b


_MCNEMAR_CASES = [
    _with_counts(0, 0, 6, 2),  # the same predictions: no evidence at all, p = 1
    _with_counts(3, 0, 7, 0),
    _with_counts(1, 1, 5, 3),  # a tie: the doubled tail is above 1
    _with_counts(0, 8, 10, 2),
    _with_counts(5, 2, 30, 9),
    _with_counts(12, 3, 680, 18),  # 713 test e-mails, as in the chapter
]


@exercise("ch06.mcnemar")
def check_mcnemar(candidate: Callable) -> None:
    for y_true, pred_a, pred_b in _MCNEMAR_CASES:
        only_a, only_b = _discordant(y_true, pred_a, pred_b)
        what = (f"{len(y_true)} examples: A alone right on {only_a}, B alone right on {only_b}, both right on "
                f"{sum(a == y == b for y, a, b in zip(y_true, pred_a, pred_b, strict=True))}, both wrong on the rest")
        got = candidate(list(y_true), list(pred_a), list(pred_b))
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            raise ExerciseFailed(f"for {what} return the p-value as a number, got {type(got).__name__}")
        want = _mcnemar(y_true, pred_a, pred_b)
        if math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12):
            continue
        n, low = only_a + only_b, min(only_a, only_b)
        chi2 = [(abs(only_a - only_b) - c) ** 2 / n for c in (0, 1)] if n else []
        if got > 1:
            hint = "a p-value is a probability: when the doubled tail is above 1, the answer is 1"
        elif n and math.isclose(got, _binomial_tail(n, low), rel_tol=1e-9):
            hint = "that is one tail; the test is two-sided (either model could be the better one): double it"
        elif math.isclose(got, min(1.0, 2 * _binomial_tail(len(y_true), low)), rel_tol=1e-9):
            hint = ("you tossed a coin for every example; only the examples where exactly one model is right say "
                    "anything about which one is better")
        elif any(math.isclose(got, math.erfc(math.sqrt(c / 2)), rel_tol=1e-6) for c in chi2):
            hint = "that is the chi-squared approximation; with counts this small use the exact binomial test"
        else:
            hint = "count the examples where exactly one model is right, then test them against a fair coin"
        raise ExerciseFailed(f"for {what} expected p = {want:.6g} but got {got:.6g}; {hint}")
