"""Is one result ahead of another, or within the noise? A verdict computed from the numbers, and its sentence.

Chapters 6-8 compare methods ("the pretrained model beats random weights"). A sentence like that is a
conclusion, and it is only as good as the noise it was held against. This module decides it, so that a
notebook renders the sentence from the decision instead of typing it:

- :func:`compare`: two rows of per-seed scores (accuracies on the same test set, say). The noise of the
  difference of their means has two parts, added as variances:

  * the **seeds**: each row's own standard deviation over its seeds, ``s**2 / k`` for ``k`` seeds (the
    standard error of that row's mean);
  * the **test set's sampling error**, when the number of examples ``n`` behind each score is given: an
    accuracy ``p`` measured on ``n`` examples is a binomial proportion, variance ``p * (1 - p) / n``. Every
    seed is scored on the *same* examples, so averaging seeds does not shrink this part.

  The standard error of the difference is ``se = sqrt(s_a**2/k_a + s_b**2/k_b + p_a(1-p_a)/n_a +
  p_b(1-p_b)/n_b)``, and **a lead counts when the difference of the means exceeds 2 se** (about a
  95% two-sided level for a normal error). Anything smaller is "within the noise".

  Treating the two rows' sampling errors as independent is conservative when both are scored on the same
  examples (their errors are correlated, and the difference is less noisy than the sum says). When the
  paired predictions are at hand, :func:`mcnemar` is the sharper test.

  **With 2 or 3 seeds a standard deviation is itself a rough estimate**: two seeds can agree by chance (a
  row of ``results/ch06-recipe-search.json`` has a standard deviation of 0 on validation), and a t-test
  with so few degrees of freedom would ask for 4.3 (2 degrees) to 12.7 (1 degree) standard errors, not 2, at
  the same level. The sampling term
  keeps the noise from collapsing to zero; still, read a verdict near the threshold as "measure more
  seeds", not as a finding.
- :func:`mcnemar`: two models' predictions on the *same* examples. Only the examples where exactly one of
  them is right tell them apart; if both were equally good each would be a fair coin toss, so the exact
  two-sided p-value is ``min(1, 2 P(X <= min(b, c)))`` for ``X ~ Binomial(b + c, 1/2)``. A lead counts when
  ``p < 0.05``. It covers the test set's sampling, not the seeds: one seed's predictions say nothing of
  another seed's.

Both return a frozen dataclass with the verdict (``"beats"``, ``"is beaten by"`` or ``"within the noise"``)
and a rendered ``phrase``. :meth:`Comparison.record` gives the inputs, the verdict and the phrase as a dict
for ``results/chNN.json``; :func:`from_record` recomputes it, so a test can check that every conclusion a
notebook stated still follows from its numbers.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..checks import check_int, check_number

BEATS, BEATEN, WITHIN = "beats", "is beaten by", "within the noise"
VERDICTS = (BEATS, BEATEN, WITHIN)
Z = 2.0  # a lead must exceed this many standard errors of the difference
ALPHA = 0.05  # McNemar: a lead counts below this p-value (about what 2 standard errors are for a normal)


def _sentence(name_a: str, name_b: str, verdict: str, detail: str) -> str:
    head = f"*{name_a}* is within the noise of *{name_b}*" if verdict == WITHIN else f"*{name_a}* {verdict} *{name_b}*"
    return f"{head} ({detail})"


def _value(x: float, percent: bool) -> str:
    return f"{x:.1%}" if percent else f"{x:.3f}"


@dataclass(frozen=True)
class Comparison:
    """Two rows of per-seed scores compared (see :func:`compare`): ``difference`` is mean(a) - mean(b),
    ``noise`` the standard error of that difference, ``threshold`` = ``Z`` x ``noise``."""

    name_a: str
    name_b: str
    values_a: tuple[float, ...]
    values_b: tuple[float, ...]
    n_a: int | None
    n_b: int | None
    percent: bool
    what: str
    difference: float
    noise: float
    threshold: float
    verdict: str
    phrase: str

    def record(self) -> dict[str, Any]:
        """The inputs, the verdict and the phrase, as plain JSON values (for ``results/chNN.json``)."""
        return {"kind": "seeds", "name_a": self.name_a, "name_b": self.name_b, "values_a": list(self.values_a),
                "values_b": list(self.values_b), "n_a": self.n_a, "n_b": self.n_b, "percent": self.percent,
                "what": self.what, "verdict": self.verdict, "phrase": self.phrase}


@dataclass(frozen=True)
class McNemar:
    """Two models' predictions on the same ``n`` examples compared (see :func:`mcnemar`): ``only_a`` examples
    where only A is right, ``only_b`` where only B is."""

    name_a: str
    name_b: str
    only_a: int
    only_b: int
    n: int
    what: str
    p_value: float
    verdict: str
    phrase: str

    def record(self) -> dict[str, Any]:
        """The counts, the verdict and the phrase, as plain JSON values (for ``results/chNN.json``)."""
        return {"kind": "mcnemar", "name_a": self.name_a, "name_b": self.name_b, "only_a": self.only_a,
                "only_b": self.only_b, "n": self.n, "what": self.what, "verdict": self.verdict, "phrase": self.phrase}


def _scores(values: Any, name: str, n: int | None) -> tuple[float, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise ValueError(f"{name} must be a non-empty list of per-seed scores, got {values!r}")
    high = 1.0 if n is not None else None  # a binomial sampling error needs proportions
    return tuple(check_number(v, f"{name}[{i}]", low=0.0 if n is not None else None, high=high)
                 for i, v in enumerate(values))


def compare(a: Sequence[float], b: Sequence[float], *, name_a: str = "A", name_b: str = "B",
            n_a: int | None = None, n_b: int | None = None, percent: bool = True,
            what: str = "examples") -> Comparison:
    """Does row ``a`` beat row ``b``? ``a`` and ``b`` are per-seed scores, higher is better (accuracies as
    fractions when ``n_a``/``n_b``, the examples behind each score, are given for the sampling error).

    Each row needs a measure of its noise: at least 2 seeds, or its ``n``. ``percent`` writes the scores
    as percentages and the difference in points (else as plain numbers, 3 decimals); ``what`` names the
    examples in the phrase ("validation e-mails").
    """
    for n, label in ((n_a, "n_a"), (n_b, "n_b")):
        if n is not None:
            check_int(n, label, low=1)
    values_a, values_b = _scores(a, "a", n_a), _scores(b, "b", n_b)
    for values, n, label in ((values_a, n_a, "a"), (values_b, n_b, "b")):
        if len(values) < 2 and n is None:
            raise ValueError(f"row {label} has one score and no n: its noise is unknown; give 2 or more seeds, "
                             f"or n_{label}, the number of examples behind the score")
    mean_a, mean_b = statistics.fmean(values_a), statistics.fmean(values_b)
    variance = 0.0
    for values, mean, n in ((values_a, mean_a, n_a), (values_b, mean_b, n_b)):
        if len(values) > 1:
            variance += statistics.variance(values) / len(values)  # the seeds: standard error of the mean
        if n is not None:
            variance += mean * (1 - mean) / n  # the examples: binomial, shared by every seed
    difference, noise = mean_a - mean_b, math.sqrt(variance)
    threshold = Z * noise
    verdict = BEATS if difference > threshold else BEATEN if difference < -threshold else WITHIN
    scale, unit = (100, " points") if percent else (1, "")
    fmt = ".1f" if percent else ".3f"
    seeds = sorted({len(values_a), len(values_b)} - {1})
    sources = [f"{' and '.join(map(str, seeds))} seeds"] if seeds else []
    if n_a is not None or n_b is not None:
        counts = sorted({n for n in (n_a, n_b) if n is not None})
        sources.append(f"the sampling of {' and '.join(f'{n:,}' for n in counts)} {what}")
    detail = (f"{_value(mean_a, percent)} against {_value(mean_b, percent)}: {scale * difference:+{fmt}}{unit}, "
              f"noise ±{scale * threshold:{fmt}} from {' and '.join(sources)}")
    return Comparison(name_a, name_b, values_a, values_b, n_a, n_b, percent, what, difference, noise, threshold,
                      verdict, _sentence(name_a, name_b, verdict, detail))


def _binomial_tail(n: int, at_most: int) -> float:
    """P(X <= at_most) for X ~ Binomial(n, 1/2), exactly (integers until the one division)."""
    return sum(math.comb(n, i) for i in range(at_most + 1)) / 2**n


def mcnemar_counts(only_a: int, only_b: int, n: int, *, name_a: str = "A", name_b: str = "B",
                   what: str = "examples") -> McNemar:
    """McNemar's exact test from its counts: ``only_a`` of the ``n`` examples where only A is right,
    ``only_b`` where only B is. ``what`` names the examples in the phrase ("e-mails")."""
    check_int(n, "n", low=1)
    check_int(only_a, "only_a", low=0, high=n)
    check_int(only_b, "only_b", low=0, high=n - only_a)
    discordant = only_a + only_b
    p = 1.0 if discordant == 0 else min(1.0, 2 * _binomial_tail(discordant, min(only_a, only_b)))
    verdict = WITHIN if p >= ALPHA else BEATS if only_a > only_b else BEATEN
    detail = (f"on the same {n:,} {what}, right where the other is wrong on {only_a} against {only_b}; "
              f"exact McNemar p = {p:.2g}")
    return McNemar(name_a, name_b, only_a, only_b, n, what, p, verdict, _sentence(name_a, name_b, verdict, detail))


def mcnemar(y_true: Sequence[int], pred_a: Sequence[int], pred_b: Sequence[int], *, name_a: str = "A",
            name_b: str = "B", what: str = "examples") -> McNemar:
    """McNemar's exact test of two models' predictions ``pred_a`` and ``pred_b`` of the labels ``y_true``."""
    y_true, pred_a, pred_b = list(y_true), list(pred_a), list(pred_b)
    if not y_true or not len(y_true) == len(pred_a) == len(pred_b):
        raise ValueError(f"need as many predictions of each model as labels (at least one), got "
                         f"{len(y_true)} labels, {len(pred_a)} and {len(pred_b)} predictions")
    only_a = sum(a == y != b for y, a, b in zip(y_true, pred_a, pred_b, strict=True))
    only_b = sum(b == y != a for y, a, b in zip(y_true, pred_a, pred_b, strict=True))
    return mcnemar_counts(only_a, only_b, len(y_true), name_a=name_a, name_b=name_b, what=what)


def from_record(record: dict[str, Any]) -> Comparison | McNemar:
    """Recompute a comparison from what :meth:`Comparison.record` or :meth:`McNemar.record` wrote (its
    stored verdict and phrase are ignored: compare them with the result's)."""
    if not isinstance(record, dict) or record.get("kind") not in ("seeds", "mcnemar"):
        raise ValueError(f"not a recorded comparison (a dict with kind 'seeds' or 'mcnemar'): {record!r}")
    names = {"name_a": record["name_a"], "name_b": record["name_b"]}
    if record["kind"] == "mcnemar":
        return mcnemar_counts(record["only_a"], record["only_b"], record["n"], what=record["what"], **names)
    return compare(record["values_a"], record["values_b"], n_a=record["n_a"], n_b=record["n_b"],
                   percent=record["percent"], what=record["what"], **names)
