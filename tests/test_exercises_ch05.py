"""Every chapter-5 checker accepts its reference solution and rejects plausible wrong answers."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from gpt2_core.exercises import check_exercise
from gpt2_core.exercises.solutions import ch05 as solution


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


def _adam_no_bias_correction(grad, lr, betas, eps):
    (b1, b2) = betas
    return -lr * (1 - b1) * grad / (((1 - b2) * grad**2).sqrt() + eps)


def _nucleus_without_the_crossing_token(logits, temperature, top_p):
    probs = torch.softmax(logits.double() / temperature, -1)
    sorted_probs, order = torch.sort(probs, descending=True)
    return set(order[torch.cumsum(sorted_probs, 0) <= top_p].tolist())


# A plausible wrong answer for every checker (tests/test_exercise_solutions.py runs them all)
WRONG = {
    "ch05.adamw_first_step": lambda g, lr, betas, eps: -lr * g,  # plain SGD
    "ch05.nucleus": lambda logits, t, p: set(range(len(logits))),  # keeps everything
    # count(a) instead of count(a, ·) in the denominator
    "ch05.bigram_loss": lambda *args: _bigram(*args, context_counts=Counter),
    "ch05.accumulate_gradients": _divide_by_k,
}


@pytest.mark.parametrize("wrong, says", [
    (lambda *args: _bigram(*args, log=math.log2), "bits"),
    (lambda *args: _bigram(*args, per=len), "expected"),  # divides by len(val_ids), not the predictions
    (lambda tr, va, v, alpha: _bigram(tr, va, v, 0.0), "not quite"),  # no smoothing: a wrong loss, or log(0)
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



@pytest.mark.parametrize("wrong, says", [
    (lambda g, lr, betas, eps: -lr * g, "SGD"),
    (lambda g, lr, betas, eps: -solution.adamw_first_step(g, lr, betas, eps), "sign"),
    (_adam_no_bias_correction, "bias correction"),
    (lambda g, lr, betas, eps: -lr * g / g.abs(), "NaN"),  # no eps: a zero gradient gives 0 / 0
    (lambda g, lr, betas, eps: -lr * torch.sign(g), "below eps"),
    (lambda g, lr, betas, eps: [0.0], "shape"),
])
def test_adamw_checker_names_the_mistake(wrong, says, capsys):
    assert not check_exercise("ch05.adamw_first_step", wrong)
    assert says in capsys.readouterr().out


def test_adamw_solution_moves_every_weight_by_about_lr():
    step = solution.adamw_first_step(torch.tensor([100.0, 1.0, -1e-4]), 1e-3, (0.9, 0.95), 1e-8)
    assert torch.allclose(step, torch.tensor([-1e-3, -1e-3, 1e-3]), rtol=1e-3)


@pytest.mark.parametrize("wrong, says", [
    (lambda logits, t, p: solution.nucleus(logits, 1.0, p), "temperature first"),
    (lambda logits, t, p: solution.nucleus(logits * t * t, t, p), "you multiplied"),
    (_nucleus_without_the_crossing_token, "reaches"),
    (lambda logits, t, p: set(), "most likely token"),
    (lambda logits, t, p: torch.softmax(logits / t, -1), "filtered logits"),
    (lambda logits, t, p: [0, 0], "twice"),
])
def test_nucleus_checker_names_the_mistake(wrong, says, capsys):
    assert not check_exercise("ch05.nucleus", wrong)
    assert says in capsys.readouterr().out


def test_nucleus_accepts_a_list_or_a_tensor_of_ids():
    assert check_exercise("ch05.nucleus", lambda *args: sorted(solution.nucleus(*args)))
    assert check_exercise("ch05.nucleus", lambda *args: torch.tensor(sorted(solution.nucleus(*args))))


@pytest.mark.parametrize("wrong, says", [
    (lambda *args: _bigram(*args, per=len), "only"),
    (lambda *args: _bigram(*args, context_counts=Counter), "followed by nothing"),
])
def test_bigram_checker_names_the_denominators(wrong, says, capsys):
    assert not check_exercise("ch05.bigram_loss", wrong)
    assert says in capsys.readouterr().out
