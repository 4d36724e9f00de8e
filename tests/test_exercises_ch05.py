"""Every chapter-5 checker accepts its reference solution and rejects plausible wrong answers."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from gpt2_core.exercises import check_exercise


def _bigram(train_ids, val_ids, vocab_size, alpha, *, context_counts=None, log=math.log, per=None):
    """A configurable bigram loss, to make the classic slips."""
    pairs = Counter(zip(train_ids, train_ids[1:], strict=False))
    followed = context_counts(train_ids) if context_counts else Counter(train_ids[:-1])
    total = -sum(log((pairs[a, b] + alpha) / (followed[a] + alpha * vocab_size))
                 for a, b in zip(val_ids, val_ids[1:], strict=False))
    return total / (per(val_ids) if per else len(val_ids) - 1)


def _divide_by_k(model, inputs, targets, k):  # right only when the micro-batches are all the same size
    for x, y in zip(inputs.tensor_split(k), targets.tensor_split(k), strict=True):
        (model(x, targets=y) / k).backward()


def _no_scaling(model, inputs, targets, k):
    for x, y in zip(inputs.tensor_split(k), targets.tensor_split(k), strict=True):
        model(x, targets=y).backward()


def _one_pass(model, inputs, targets, k):  # the right gradient, but no accumulation at all
    model(inputs, targets=targets).backward()


def _zero_grad_each_time(model, inputs, targets, k):  # keeps only the last micro-batch's gradient
    for x, y in zip(inputs.tensor_split(k), targets.tensor_split(k), strict=True):
        model.zero_grad()
        (model(x, targets=y) * len(x) / len(inputs)).backward()


# A plausible wrong answer for every checker (tests/test_exercise_solutions.py runs them all)
WRONG = {
    "ch05.top_k_filter": lambda logits, k: logits,
    "ch05.lr_at_step": lambda s, m, w, hi, lo: hi,
    # count(a) instead of count(a, ·) in the denominator
    "ch05.bigram_loss": lambda *args: _bigram(*args, context_counts=Counter),
    "ch05.accumulate_gradients": _divide_by_k,
}


@pytest.mark.parametrize("wrong, says", [
    (lambda *args: _bigram(*args, log=math.log2), "bits"),
    (lambda *args: _bigram(*args, per=len), "expected"),  # divides by len(val_ids), not the predictions
    (lambda tr, va, v, alpha: _bigram(tr, va, v, 0.0), "❌"),  # no smoothing: log(0) fails somewhere
    (lambda tr, va, v, alpha: float("inf"), "alpha"),
])
def test_bigram_checker_catches_more_mistakes(wrong, says, capsys):
    assert not check_exercise("ch05.bigram_loss", wrong)
    assert says in capsys.readouterr().out


def test_bigram_reference_agrees_with_the_counter_version():
    assert check_exercise("ch05.bigram_loss", _bigram)


@pytest.mark.parametrize("wrong, says", [(_no_scaling, "too large"), (_one_pass, "once per micro-batch"),
                                         (_zero_grad_each_time, "do not clear")])
def test_accumulation_checker_names_the_mistake(wrong, says, capsys):
    assert not check_exercise("ch05.accumulate_gradients", wrong)
    assert says in capsys.readouterr().out

