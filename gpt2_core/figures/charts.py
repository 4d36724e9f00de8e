"""Charts of results (chapter 6): a confusion matrix, fine-tuning curves, the learning curve.

Each function draws on a new matplotlib figure and returns it (the notebook shows it with
``plt.show()``); every figure has a title and labelled axes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure


def plot_confusion(cm: Sequence[Sequence[int]], labels: Sequence[str] = ("ham", "spam"), title: str = "") -> Figure:
    """A confusion matrix as a heat map with the counts written in (rows: true class, columns: predicted)."""
    n = len(cm)
    if n < 2 or any(len(row) != n for row in cm) or len(labels) != n:
        raise ValueError(f"need a square n x n matrix (n >= 2) and n labels, got {len(cm)} rows "
                         f"and {len(labels)} labels")
    fig, ax = plt.subplots(figsize=(3.8, 3.3))
    ax.imshow(cm, cmap="Blues")
    top = max(max(row) for row in cm)
    for t in range(n):
        for p in range(n):
            ax.text(p, t, cm[t][p], ha="center", va="center", fontsize=13,
                    color="white" if cm[t][p] > top / 2 else "black")
    ax.set(xticks=range(n), yticks=range(n), xticklabels=labels, yticklabels=labels, xlabel="predicted class",
           ylabel="true class", title=title or "confusion matrix")
    fig.tight_layout()
    return fig


def plot_finetune(histories: Mapping[str, Any], smooth: int = 10) -> Figure:
    """Training loss (moving average of ``smooth`` steps) and learning rate against the step, one line per run.

    Each history is a ``gpt2_core.finetune.FinetuneHistory`` (anything with ``steps``, ``losses`` and
    ``lrs`` lists); it is not imported here, so the shared figures never depend on a later chapter.
    """
    if not histories:
        raise ValueError("give at least one named FinetuneHistory, e.g. {'pretrained': history}")
    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(11, 3.6))
    for name, h in histories.items():
        if not all(hasattr(h, field) for field in ("steps", "losses", "lrs")):
            raise TypeError(f"{name!r} is a {type(h).__name__}, not a FinetuneHistory (steps, losses, lrs)")
        k = max(1, min(smooth, len(h.losses)))
        avg = [sum(h.losses[max(0, i - k + 1):i + 1]) / len(h.losses[max(0, i - k + 1):i + 1])
               for i in range(len(h.losses))]
        ax_loss.plot(h.steps, avg, label=name)
        ax_lr.plot(h.steps, h.lrs, label=name)
    ax_loss.set(xlabel="optimizer step", ylabel=f"training loss (mean of {smooth} steps)",
                title="fine-tuning loss")
    ax_lr.set(xlabel="optimizer step", ylabel="learning rate", title="schedule: linear warmup, then cosine decay")
    for ax in (ax_loss, ax_lr):
        ax.legend()
    fig.tight_layout()
    return fig


def plot_learning_curve(sizes: Sequence[int], curves: Mapping[str, Sequence[float]], title: str = "") -> Figure:
    """Test accuracy against the number of labelled training e-mails (log scale), one line per method."""
    if not sizes or not curves:
        raise ValueError("give the label counts and at least one named curve")
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (name, acc), marker in zip(curves.items(), "osd^vx*", strict=False):
        if len(acc) != len(sizes):
            raise ValueError(f"curve {name!r} has {len(acc)} points for {len(sizes)} label counts")
        ax.plot(sizes, [100 * a for a in acc], marker=marker, label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(sizes), [str(s) for s in sizes])
    ax.set(xlabel="labelled training e-mails", ylabel="test accuracy (%)",
           title=title or "learning curve: what pretraining buys with few labels")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig
