"""Reference solutions of chapter 6's exercises (see :mod:`gpt2_core.exercises.ch06` for the checkers)."""

from __future__ import annotations

import math

from torch import nn


def ulmfit_groups(model: nn.Module, stage: int, lr: float, factor: float = 2.6) -> list[dict]:
    """Gradual unfreezing with discriminative rates: stage ``s`` trains the ``s + 1`` top layers, layer ``i``
    (counted from the head down) at ``lr / factor**i``; everything below is frozen."""
    n = len(model.blocks)
    layers = [[model.out_head, model.final_norm]]  # layer 0: what the classifier added on top
    layers += [[model.blocks[n - i]] for i in range(1, n + 1)]  # layer 1 is the top block
    layers.append([model.tok_emb, model.pos_emb])  # layer n + 1: the embeddings, unfrozen last
    model.requires_grad_(False)
    groups = []
    for i, modules in enumerate(layers[:stage + 1]):
        params = [p for module in modules for p in module.parameters()]
        for p in params:
            p.requires_grad_(True)
        groups.append({"params": params, "lr": lr / factor**i})
    return groups


def operating_point(scores, labels, max_false_alarms: int) -> tuple[float, float]:  # noqa: ANN001
    """The lowest threshold with at most ``max_false_alarms`` ham scores above it, and the recall it keeps.

    Only the ham scores decide the threshold: sorted from the highest, the (k+1)-th one is the lowest
    value that leaves at most k of them above it. Spam then counts only for the recall.
    """
    ham = sorted((s for s, y in zip(scores, labels, strict=True) if y == 0), reverse=True)
    threshold = ham[max_false_alarms]
    spam = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    return threshold, sum(s > threshold for s in spam) / len(spam)


def mcnemar_p(y_true, pred_a, pred_b) -> float:  # noqa: ANN001
    """Exact two-sided McNemar test: if A and B were equally good, each example where exactly one of them
    is right would be a fair coin toss between "A" and "B"."""
    only_a = sum(a == y != b for y, a, b in zip(y_true, pred_a, pred_b, strict=True))
    only_b = sum(b == y != a for y, a, b in zip(y_true, pred_a, pred_b, strict=True))
    n = only_a + only_b
    if n == 0:
        return 1.0  # they never disagree: nothing tells them apart
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2**n
    return min(1.0, 2 * tail)


SOLUTIONS = {
    "ch06.ulmfit_groups": ulmfit_groups,
    "ch06.operating_point": operating_point,
    "ch06.mcnemar": mcnemar_p,
}
