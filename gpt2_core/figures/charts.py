"""Figures of chapter 6: the pooling diagram, a confusion matrix, fine-tuning curves, the learning curve.

Each function draws on a new matplotlib figure and returns it (the notebook shows it with
``plt.show()``); every figure has a title and labelled axes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from .finetune import FinetuneHistory


def _box(ax, x: float, y: float, text: str, color: str, w: float = 0.8, h: float = 0.5) -> None:  # noqa: ANN001
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.03", fc=color, ec="0.3"))
    ax.text(x, y, text, ha="center", va="center", fontsize=9)


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], color: str = "0.3", label: str = "") -> None:  # noqa: ANN001
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=10, color=color, lw=1.2))
    if label:
        ax.text((start[0] + end[0]) / 2 + 0.08, (start[1] + end[1]) / 2, label, fontsize=7, color="0.25")


def pooling_diagram(tokens: Sequence[str] = ("Win", " cash", " now", "!", "<pad>", "<pad>"),
                    emb_dim: int = 256, num_classes: int = 2) -> Figure:
    """Two panels: the classification head reading the last real token, and reading the mean over real tokens.

    Shapes are written on the arrows: each token leaves the GPT as an ``emb_dim`` vector; the head maps
    one pooled vector per text to ``num_classes`` logits. Padding tokens (named ``<pad>``) are greyed out.
    """
    tokens = list(tokens)
    real = [t != "<pad>" for t in tokens]
    if not tokens or not real[0] or not any(real):
        raise ValueError("tokens must start with at least one real token (padding, '<pad>', goes at the end)")
    n_real = sum(real)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    for ax, pooling in zip(axes, ("last", "mean"), strict=True):
        n = len(tokens)
        for i, tok in enumerate(tokens):
            color = "#dde8f7" if real[i] else "#eeeeee"
            _box(ax, i, 0, repr(tok.strip() or tok) if tok != "<pad>" else "pad", color)
            _box(ax, i, 1.5, f"h{i}", "#cfe8cf" if real[i] else "#eeeeee")
            _arrow(ax, (i, 0.27), (i, 1.23))
        ax.add_patch(FancyBboxPatch((-0.5, 0.85), n, 1.3, boxstyle="round,pad=0.05", fc="none", ec="0.5", ls="--"))
        ax.text(-0.45, 2.25, "GPT blocks (causal attention)", ha="left", fontsize=8, color="0.4")
        centre = (n_real - 1) / 2
        if pooling == "last":
            last = n_real - 1
            _box(ax, last, 3.0, "last real token", "#ffe2b3", w=1.6)
            _arrow(ax, (last, 1.77), (last, 2.73), "#d9822b", f"({emb_dim},)")
            head_x = last
            title = "last-token pooling: the one position that has seen every token"
        else:
            _box(ax, centre, 3.0, f"mean of {n_real} real tokens", "#ffe2b3", w=2.2)
            for i in range(n_real):
                _arrow(ax, (i, 1.77), (centre + (i - centre) * 0.3, 2.73), "#d9822b")
            ax.text(centre + 1.25, 2.3, f"{n_real} x ({emb_dim},)", fontsize=7, color="0.25")
            head_x = centre
            title = "mean pooling: every real token votes (pads left out)"
        _box(ax, head_x, 4.3, f"Linear({emb_dim}, {num_classes})", "#f7d4d4", w=1.8)
        _arrow(ax, (head_x, 3.27), (head_x, 4.03), label=f"({emb_dim},)")
        ax.text(head_x, 5.05, "ham / spam logits", ha="center", fontsize=9)
        _arrow(ax, (head_x, 4.57), (head_x, 4.9), label=f"({num_classes},)")
        ax.set(xlim=(-0.8, n - 0.2), ylim=(-0.6, 5.4), title=title, xlabel="token position (right-padded batch)",
               ylabel="layer (input at the bottom)")
        ax.set_xticks(range(n))
        ax.set_yticks([0, 1.5, 3.0, 4.3], ["tokens", "final hidden", "pooled", "head"])
    fig.tight_layout()
    return fig


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


def plot_finetune(histories: Mapping[str, FinetuneHistory], smooth: int = 10) -> Figure:
    """Training loss (moving average of ``smooth`` steps) and learning rate against the step, one line per run."""
    if not histories:
        raise ValueError("give at least one named FinetuneHistory, e.g. {'pretrained': history}")
    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(11, 3.6))
    for name, h in histories.items():
        if not isinstance(h, FinetuneHistory):
            raise TypeError(f"{name!r} is a {type(h).__name__}, not a FinetuneHistory")
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
