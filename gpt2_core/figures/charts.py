"""Charts of results (chapter 6): a confusion matrix, fine-tuning curves, the learning curve; and
:func:`label_points`, labels for the points of a scatter plot that keep clear of each other (chapter 2).

Each ``plot_`` function draws on a new matplotlib figure and returns it (the notebook shows it with
``plt.show()``); every figure has a title and labelled axes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.text import Annotation
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import Bbox

from ..checks import check_int
from ..files import write_file_atomically

# Where a label may go around its point: right-up first, then the other corners and sides, then further out.
_DIRECTIONS = [(1, 1), (1, -1), (-1, 1), (-1, -1), (0, 1.3), (0, -1.3), (1.3, 0), (-1.3, 0)]
_ALIGN = {1: ("left", "bottom"), -1: ("right", "top"), 0: ("center", "center")}


def label_points(ax: Axes, xy: Sequence[Sequence[float]], labels: Sequence[str],
                 fontsize: float = 8) -> list[Annotation]:
    """Write ``labels[i]`` beside the point ``xy[i]`` of ``ax``, each at the first of a few nearby places
    where it covers no other label and no point and stays inside the axes (the first place when none is
    free). Call it once the figure's size and the axes' limits are final: the check is made on the canvas.
    """
    if len(xy) != len(labels):
        raise ValueError(f"{len(xy)} points need as many labels, got {len(labels)}")
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    dot = 4.0  # pixels around a point that a label must leave free
    points = [Bbox.from_extents(px - dot, py - dot, px + dot, py + dot)
              for px, py in ax.transData.transform([tuple(p) for p in xy])]
    placed: list[Bbox] = []
    notes = []
    for (x, y), label in zip(xy, labels, strict=True):
        chosen = None
        for distance in (4, 9, 16):
            for dx, dy in _DIRECTIONS:
                ha = _ALIGN[int(math.copysign(1, dx)) if dx else 0][0]
                va = _ALIGN[int(math.copysign(1, dy)) if dy else 0][1] if dy else "center"
                note = ax.annotate(label, (x, y), xytext=(dx * distance, dy * distance), textcoords="offset points",
                                   ha=ha, va=va, fontsize=fontsize)
                extent = note.get_window_extent(renderer)
                free = (frame.x0 <= extent.x0 and extent.x1 <= frame.x1 and frame.y0 <= extent.y0
                        and extent.y1 <= frame.y1 and not any(extent.overlaps(b) for b in placed + points))
                if free or chosen is None:
                    if chosen is not None:
                        chosen[0].remove()
                    chosen = (note, extent)
                    if free:
                        break
                else:
                    note.remove()
            else:
                continue
            break
        placed.append(chosen[1])
        notes.append(chosen[0])
    return notes


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
    schedules: dict[tuple, list[str]] = {}  # runs that share a schedule get one line, not several on top of each other
    for name, h in histories.items():
        if not all(hasattr(h, field) for field in ("steps", "losses", "lrs")):
            raise TypeError(f"{name!r} is a {type(h).__name__}, not a FinetuneHistory (steps, losses, lrs)")
        k = max(1, min(smooth, len(h.losses)))
        avg = [sum(h.losses[max(0, i - k + 1):i + 1]) / len(h.losses[max(0, i - k + 1):i + 1])
               for i in range(len(h.losses))]
        ax_loss.plot(h.steps, avg, label=name)
        schedules.setdefault((tuple(h.steps), tuple(h.lrs)), []).append(name)
    for (steps, lrs), names in schedules.items():
        shared = "all runs" if len(names) == len(histories) > 1 else ", ".join(names)
        ax_lr.plot(steps, lrs, label=shared)
    ax_loss.set(xlabel="optimizer step", ylabel=f"training loss (mean of {smooth} steps)",
                title="fine-tuning loss")
    ax_lr.set(xlabel="optimizer step", ylabel="learning rate", title="schedule: linear warmup, then cosine decay")
    for ax in (ax_loss, ax_lr):
        ax.legend()
    fig.tight_layout()
    return fig


def plot_family_scores(scores: Mapping[str, Mapping[str, float]], families: Sequence[str],
                       divider_after: str | None = None, ylabel: str = "exact match", title: str = "") -> Figure:
    """Grouped bars: one group per family (in ``families``' order), one bar per named run (``scores[run]
    [family]``, fractions). A run that scores 0 on a family gets a small mark at 0, so it is not mistaken for
    a missing bar; ``divider_after`` draws a dashed line after that family (e.g. between supported and
    knowledge families). The legend sits above the axes, clear of every bar."""
    if not scores or not families:
        raise ValueError("give at least one named run and one family")
    runs = list(scores)
    width = 0.8 / len(runs)
    fig, ax = plt.subplots(figsize=(max(8.0, 0.9 * len(families) + 3), 4.2))
    for k, run in enumerate(runs):
        xs = [i + (k - (len(runs) - 1) / 2) * width for i in range(len(families))]
        values = [float(scores[run].get(f, float("nan"))) for f in families]
        bars = ax.bar(xs, values, width, label=run)
        zeros = [x for x, v in zip(xs, values, strict=True) if v == 0]
        if zeros:
            ax.plot(zeros, [0.01] * len(zeros), linestyle="none", marker="_", markersize=8, markeredgewidth=2,
                    color=bars.patches[0].get_facecolor())
    if divider_after is not None:
        ax.axvline(list(families).index(divider_after) + 0.5, color="black", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(families)), list(families), rotation=25, ha="right")
    ax.set(ylabel=ylabel, ylim=(0, 1.02), title=title)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.08), ncols=min(len(runs), 5), fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_lengths(lengths: Mapping[str, Sequence[int]], window: int, title: str = "") -> Figure:
    """How long the texts are: one panel per named group, each a histogram of tokens per text (log-spaced
    bins, log scale) that counts the texts in each bin, with the model's ``window`` marked by a dashed line.

    Counts, not densities: on log-spaced bins a density makes a bar of one text in a small group look like a
    bar of dozens in a large one. Each group gets its own panel and its own count axis, so a small group (the
    hard ham) stays readable beside large ones, and its size is in the panel's title.
    """
    if not lengths or any(not v for v in lengths.values()):
        raise ValueError("give at least one named, non-empty list of lengths")
    check_int(window, "window", low=1)
    longest = max(max(v) for v in lengths.values())
    edges = [2 ** (k / 3) for k in range(3 * math.ceil(math.log2(max(longest, 2))) + 1)]
    fig, axes = plt.subplots(len(lengths), 1, figsize=(8, 1.2 + 1.6 * len(lengths)), sharex=True, squeeze=False)
    for i, (ax, (name, values)) in enumerate(zip(axes[:, 0], lengths.items(), strict=True)):
        beyond = sum(n > window for n in values)
        ax.hist(values, bins=edges, color=f"C{i % 10}", alpha=0.8)
        ax.axvline(window, color="black", linestyle="--", linewidth=1)
        ax.set_title(f"{name}: {len(values):,} texts, {beyond:,} ({beyond / len(values):.0%}) longer than {window} "
                     "tokens", loc="left", fontsize=9)
        ax.set_ylabel("texts per bin")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # a count: no half texts
        ax.set_xscale("log", base=2)
    axes[-1, 0].set_xlabel(f"tokens per text (log scale); dashed line: the model's context, {window} tokens")
    fig.suptitle(title or "how long the texts are")
    fig.tight_layout()
    return fig


def plot_learning_curve(sizes: Sequence[int], curves: Mapping[str, Sequence[float]], title: str = "",
                        spread: Mapping[str, Sequence[float]] | None = None) -> Figure:
    """Test accuracy against the number of labelled training e-mails (log scale), one line per method; with
    ``spread`` (a standard deviation per point, e.g. over seeds) an error bar of +-1 spread at each point.

    Error bars rather than shaded bands: where the methods' spreads overlap (few labels) four bands blend into
    one muddy area. Each method's points are nudged sideways a little, so that its bars stay apart.
    """
    if not sizes or not curves:
        raise ValueError("give the label counts and at least one named curve")
    fig, ax = plt.subplots(figsize=(7, 4.2))
    nudge = [2 ** (0.07 * (k - (len(curves) - 1) / 2)) for k in range(len(curves))]  # a factor on the log axis
    for k, ((name, acc), marker) in enumerate(zip(curves.items(), "osd^vx*", strict=False)):
        if len(acc) != len(sizes):
            raise ValueError(f"curve {name!r} has {len(acc)} points for {len(sizes)} label counts")
        errors = None
        if spread is not None and name in spread:
            errors = [100 * s for s in spread[name]]
        ax.errorbar([n * nudge[k] for n in sizes], [100 * a for a in acc], yerr=errors, marker=marker, capsize=3,
                    label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(sizes), [str(s) for s in sizes])
    ax.minorticks_off()
    ax.set(xlabel="labelled training e-mails", ylabel="test accuracy (%)",
           title=title or "learning curve: what pretraining buys with few labels")
    ax.grid(alpha=0.3)
    ax.legend(title="mean and ±1 std over seeds" if spread else None, loc="lower right")
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Save ``fig`` as a PNG at ``path`` atomically: a run cut short, or two notebooks saving the same file at
    once, never leave half an image (the picture is drawn in memory, then the finished file replaces the old)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return write_file_atomically(Path(path), buffer.getvalue())
