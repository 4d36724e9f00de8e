"""Chapter 6's checkers name the usual mistakes (the generic checks are in test_exercise_solutions.py)."""

from __future__ import annotations

import math

import pytest
import torch

from gpt2_core.exercises import check_exercise
from gpt2_core.exercises.solutions import ch06 as solution


def _ulmfit(model, stage, lr, factor, *, order="top", rate=None, freeze=True, head_rate=True):
    """A configurable ULMFiT schedule, to make the classic slips."""
    n = len(model.blocks)
    blocks = [model.blocks[n - i] for i in range(1, n + 1)] if order == "top" else list(model.blocks)
    layers = [[model.out_head, model.final_norm]] + [[b] for b in blocks] + [[model.tok_emb, model.pos_emb]]
    if freeze:
        model.requires_grad_(False)
    groups = []
    for i, modules in enumerate(layers[:stage + 1]):
        params = [p for m in modules for p in m.parameters()]
        for p in params:
            p.requires_grad_(True)
        if rate is not None:
            group_lr = rate(lr, factor, i)
        else:
            group_lr = lr / factor ** (i if head_rate else max(i - 1, 0))
        groups.append({"params": params, "lr": group_lr})
    return groups


def _ulmfit_all_in_groups(model, stage, lr, factor):  # frozen parameters handed to AdamW too
    groups = solution.ulmfit_groups(model, stage, lr, factor)
    trained = {id(p) for g in groups for p in g["params"]}
    groups.append({"params": [p for p in model.parameters() if id(p) not in trained], "lr": 0.0})
    return groups


def _ulmfit_head_frozen(model, stage, lr, factor):
    groups = solution.ulmfit_groups(model, stage, lr, factor)
    model.out_head.requires_grad_(False)
    return groups


def _operating(scores, labels, k, *, pick=lambda ham, k: ham[k], at_least=False, share_of_all=False):
    ham = sorted((s for s, y in zip(scores, labels, strict=True) if y == 0), reverse=True)
    t = pick(ham, k)
    flagged = [(s >= t if at_least else s > t) for s in scores]
    if share_of_all:
        return t, sum(flagged) / len(scores)
    return t, sum(f for f, y in zip(flagged, labels, strict=True) if y == 1) / labels.count(1)


def _discordant(y, a, b):
    return (sum(p == t != q for t, p, q in zip(y, a, b, strict=True)),
            sum(q == t != p for t, p, q in zip(y, a, b, strict=True)))


def _one_sided(y, a, b):
    n_a, n_b = _discordant(y, a, b)
    n = n_a + n_b
    return 1.0 if n == 0 else sum(math.comb(n, i) for i in range(min(n_a, n_b) + 1)) / 2**n


def _uncapped(y, a, b):
    return 2 * _one_sided(y, a, b) if any(_discordant(y, a, b)) else 1.0


def _every_example(y, a, b):  # a coin toss for all n examples, not only the disagreements
    low, n = min(_discordant(y, a, b)), len(y)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(low + 1)) / 2**n)


def _chi_squared(y, a, b):
    n_a, n_b = _discordant(y, a, b)
    return 1.0 if n_a + n_b == 0 else math.erfc(math.sqrt((n_a - n_b) ** 2 / (n_a + n_b) / 2))


# A plausible wrong answer for every checker (tests/test_exercise_solutions.py runs them all)
WRONG = {
    "ch06.ulmfit_groups": lambda model, stage, lr, factor: _ulmfit(model, stage, lr, factor, order="bottom"),
    "ch06.operating_point": lambda s, y, k: _operating(s, y, k, pick=lambda ham, k: ham[max(k - 1, 0)]),
    "ch06.mcnemar": _one_sided,
}


@pytest.mark.parametrize("wrong, says", [
    (lambda m, s, lr, f: _ulmfit(m, s, lr, f, order="bottom"), "from the top down"),
    (lambda m, s, lr, f: _ulmfit(m, s, lr, f, freeze=False), "still has requires_grad=True"),
    (lambda m, s, lr, f: _ulmfit(m, s, lr, f, rate=lambda lr, f, i: lr * f**i), "do not multiply"),
    (lambda m, s, lr, f: _ulmfit(m, s, lr, f, head_rate=False), "one layer below it"),
    (lambda m, s, lr, f: _ulmfit(m, s, lr, f, rate=lambda lr, f, i: lr), "each layer down"),
    (_ulmfit_all_in_groups, "frozen at this stage"),
    (_ulmfit_head_frozen, "stage 0 included"),
    (lambda m, s, lr, f: [{"params": list(m.parameters()), "lr": lr}], "still has requires_grad=True"),
    (lambda m, s, lr, f: {"params": list(m.parameters()), "lr": lr}, "list of dicts"),
])
def test_ulmfit_checker_names_the_mistake(wrong, says, capsys):
    assert not check_exercise("ch06.ulmfit_groups", wrong)
    assert says in capsys.readouterr().out


def test_ulmfit_solution_trains_everything_at_the_last_stage():
    from gpt2_core.finetuning.classification import add_classification_head
    from gpt2_core.model.config import GPTConfig
    from gpt2_core.model.gpt import GPTModel

    cfg = GPTConfig(vocab_size=30, context_length=4, emb_dim=8, n_heads=2, n_layers=2)
    model = add_classification_head(GPTModel(cfg), 2, "mean")
    groups = solution.ulmfit_groups(model, 3, 1e-3)
    assert all(p.requires_grad for p in model.parameters())
    assert [g["lr"] for g in groups] == pytest.approx([1e-3, 1e-3 / 2.6, 1e-3 / 2.6**2, 1e-3 / 2.6**3])
    torch.optim.AdamW(groups)  # accepted as it is


@pytest.mark.parametrize("wrong, says", [
    (lambda s, y, k: _operating(s, y, k, pick=lambda ham, k: ham[k + 1]), "more than max_false_alarms"),
    (lambda s, y, k: _operating(s, y, k, pick=lambda ham, k: ham[max(k - 1, 0)]), "a lower one would stay within it"),
    (lambda s, y, k: _operating(s, y, k, pick=lambda ham, k: ham[k] + 0.001), "a lower one would stay within it"),
    (lambda s, y, k: _operating(s, y, k, at_least=True), "greater than"),
    (lambda s, y, k: _operating(s, y, k, share_of_all=True), "share of all e-mails"),
    (lambda s, y, k: 0.5, "pair"),
])
def test_operating_point_checker_names_the_mistake(wrong, says, capsys):
    assert not check_exercise("ch06.operating_point", wrong)
    assert says in capsys.readouterr().out


@pytest.mark.parametrize("wrong, says", [
    (_one_sided, "two-sided"),
    (_uncapped, "is a probability"),
    (_every_example, "tossed a coin for every example"),
    (_chi_squared, "chi-squared"),
    (lambda y, a, b: sum(p == t for p, t in zip(a, y, strict=True)) / len(y), "expected p"),
])
def test_mcnemar_checker_names_the_mistake(wrong, says, capsys):
    assert not check_exercise("ch06.mcnemar", wrong)
    assert says in capsys.readouterr().out


def test_mcnemar_solution_by_hand():
    # A alone right on 3, B never: p = 2 * (1/2)**3; the chapter-sized case 12 against 3
    assert solution.mcnemar_p([1] * 5, [1] * 5, [0, 0, 0, 1, 1]) == pytest.approx(0.25)
    y = [1] * 15
    assert solution.mcnemar_p(y, [1] * 12 + [0] * 3, [0] * 12 + [1] * 3) == pytest.approx(2 * 576 / 2**15)
