"""Diagrams of how the pieces work (chapters 1-5), drawn in code.

- :func:`flow_diagram`: a pipeline left to right, each box a step (a layer, an operation), each arrow
  the tensor passed on, labelled with its shape (chapters 2-4: embedding lookup, attention, the whole
  model).
- :func:`residual_diagram`: a residual stream with its branches and the shortcuts that add each branch's
  output back (chapter 4's transformer block).
- :func:`cycle_diagram`: steps on a circle, repeated until a stop rule (chapter 1's BPE merge loop,
  chapter 5's training loop).
- :func:`shift_diagram`: inputs and next-token targets, one arrow per prediction (chapter 2).
- :func:`mask_diagram`: which keys each query may see under a causal (optionally local) mask (chapter 3).
- :func:`kv_cache_diagram`: the KV cache filling up, step by step, while decoding (chapter 3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Patch, Rectangle

BLUE, ORANGE, GREY, INK, SHAPE = "#cfe2f3", "#f6c28b", "#eeeeee", "#333333", "#7a1f1f"
BOX_FONT, LABEL_FONT, TITLE_FONT = 9.0, 8.0, 12.0
PAD = 0.05  # inches of rounding around a box (FancyBboxPatch's pad)


@lru_cache(maxsize=512)
def text_size(text: str, fontsize: float) -> tuple[float, float]:
    """Width and height of ``text`` (lines split at ``\\n``) in inches, as matplotlib draws it."""
    fig = Figure(dpi=72)  # at 72 dpi a pixel is a point
    FigureCanvasAgg(fig)
    extent = fig.text(0, 0, text, fontsize=fontsize).get_window_extent(fig.canvas.get_renderer())
    return extent.width / 72, extent.height / 72


def inch_axes(width: float, height: float, title: str) -> tuple[Figure, Axes]:
    """A figure of ``width`` x ``height`` inches of drawing (plus room for ``title``) whose data units are
    inches, so that boxes can be sized to the text they hold."""
    title_room = text_size(title, TITLE_FONT)[1] + 0.3 if title else 0.1
    width = max(width, text_size(title, TITLE_FONT)[0] + 0.4 if title else 0)
    fig = plt.figure(figsize=(width, height + title_room))
    ax = fig.add_axes((0, 0, 1, height / (height + title_room)))
    ax.set(xlim=(0, width), ylim=(0, height))
    ax.axis("off")
    ax.set_title(title, fontsize=TITLE_FONT, pad=8)
    return fig, ax


def _box(ax: Axes, x: float, y: float, w: float, h: float, text: str, colour: str) -> None:
    """A rounded box with lower-left corner (x, y) (its rounding lies outside) and ``text`` centred in it."""
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle=f"round,pad={PAD}", facecolor=colour, edgecolor=INK))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=BOX_FONT)


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], head: bool = True) -> None:
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>" if head else "-", mutation_scale=12, color=INK,
                                 shrinkA=0, shrinkB=0, lw=1.2))


def _shape_label(ax: Axes, x: float, y: float, label: str) -> None:
    ax.text(x, y + 0.06, label, ha="center", va="bottom", fontsize=LABEL_FONT, color=SHAPE)


def _box_width(text: str) -> float:
    return max(0.8, text_size(text, BOX_FONT)[0] + 0.3)


def _arrow_length(label: str) -> float:
    return max(0.6, text_size(label, LABEL_FONT)[0] + 0.25)


def flow_diagram(boxes: Sequence[str], arrows: Sequence[str], title: str,
                 highlight: Sequence[int] = ()) -> Figure:
    """A left-to-right diagram: ``boxes`` (step names) joined by ``arrows`` (shape labels, one fewer).

    Boxes whose index is in ``highlight`` are drawn in a second colour (e.g. the trained layers). Every box
    is as wide as its text needs and every arrow as long as its label.
    """
    if isinstance(boxes, str) or isinstance(arrows, str):
        raise TypeError("boxes and arrows must be sequences of strings, not a single string")
    if len(boxes) < 2:
        raise ValueError(f"a diagram needs at least 2 boxes, got {len(boxes)}")
    if len(arrows) != len(boxes) - 1:
        raise ValueError(f"{len(boxes)} boxes need {len(boxes) - 1} arrow labels (one between each pair), "
                         f"got {len(arrows)}")
    widths = [_box_width(text) for text in boxes]
    lengths = [_arrow_length(label) for label in arrows]
    height = max(0.75, max(text_size(text, BOX_FONT)[1] for text in boxes) + 0.3)
    margin = 0.15
    fig, ax = inch_axes(sum(widths) + sum(lengths) + 2 * margin, height + 0.55, title)
    x = (ax.get_xlim()[1] - sum(widths) - sum(lengths)) / 2  # centred under a wider title
    y, mid = 0.15, 0.15 + height / 2
    for i, text in enumerate(boxes):
        _box(ax, x, y, widths[i], height, text, ORANGE if i in highlight else BLUE)
        x += widths[i]
        if i < len(arrows):
            start, end = x + PAD + 0.03, x + lengths[i] - PAD - 0.03
            _arrow(ax, (start, mid), (end, mid))
            _shape_label(ax, (start + end) / 2, mid, arrows[i])
            x += lengths[i]
    return fig


def residual_diagram(branches: Sequence[Sequence[str]], title: str, shape: str = "(B, T, d)",
                     highlight: Sequence[int] = (), ends: tuple[str, str] = ("x", "output"),
                     sums: Sequence[str] = ()) -> Figure:
    """A residual stream, left to right: each branch (a list of step names) reads the stream, and its output
    is added back to it (``x = x + branch(x)``); the shortcut runs above the branch into a "+".

    ``shape`` is written on every arrow (the stream keeps its shape); boxes whose index in the flattened
    list of branch steps is in ``highlight`` get the second colour (e.g. the trained layers); ``ends`` names
    the stream where it comes in and where it leaves; ``sums``, if given, one formula per branch, is
    written under its "+" (e.g. ``"x + attn(norm(x))"``).
    """
    if isinstance(branches, str) or not branches:
        raise ValueError("give at least one branch: a list of step names, e.g. [['LayerNorm', 'attention']]")
    for branch in branches:
        _check_strings("each branch", branch, 1)
    _check_strings("ends", ends, 2)
    if sums:
        _check_strings("sums", sums, len(branches))
        if len(sums) != len(branches):
            raise ValueError(f"give one sum per branch ({len(branches)}), got {len(sums)}")
    radius, fork = 0.17, 0.3  # the "+" circle, and the stretch of stream before a branch splits off
    length = _arrow_length(shape)
    height = max(0.75, max(text_size(t, BOX_FONT)[1] for b in branches for t in b) + 0.3)
    y = 0.15 + (text_size("x", LABEL_FONT)[1] + 0.1 if sums else 0)  # room for the sums under the boxes
    mid = y + height / 2
    top = y + height + PAD + text_size(shape, LABEL_FONT)[1] + 0.3  # the shortcuts run here
    widths = [_box_width(t) for t in ends]
    total = (widths[0] + PAD + length + widths[1]
             + sum(fork + sum(length + _box_width(t) + PAD for t in b) + length + 2 * radius for b in branches))
    fig, ax = inch_axes(total + 0.3, top + 0.35, title)
    x = (ax.get_xlim()[1] - total) / 2
    _box(ax, x, y, widths[0], height, ends[0], BLUE)
    x += widths[0] + PAD
    index = 0
    for b, branch in enumerate(branches):
        split = x + fork
        _arrow(ax, (x, mid), (split, mid), head=False)
        ax.plot([split], [mid], "o", color=INK, markersize=4)
        x = split
        for step in branch:
            _arrow(ax, (x, mid), (x + length - PAD - 0.03, mid))
            _shape_label(ax, x + length / 2, mid, shape)
            x += length
            w = _box_width(step)
            _box(ax, x, y, w, height, step, ORANGE if index in highlight else BLUE)
            x += w + PAD
            index += 1
        _arrow(ax, (x, mid), (x + length - 0.03, mid))
        _shape_label(ax, x + length / 2, mid, shape)
        centre = x + length + radius
        ax.add_patch(Circle((centre, mid), radius, facecolor="white", edgecolor=INK, lw=1.2))
        ax.text(centre, mid, "+", ha="center", va="center", fontsize=13, weight="bold")
        if sums:
            ax.text(centre, y - PAD - 0.05, sums[b], ha="center", va="top", fontsize=LABEL_FONT)
        _arrow(ax, (split, mid), (split, top), head=False)  # the shortcut: up, across, down into the "+"
        _arrow(ax, (split, top), (centre, top), head=False)
        _arrow(ax, (centre, top), (centre, mid + radius))
        ax.text((split + centre) / 2, top + 0.06, f"shortcut: x itself, {shape}", ha="center", va="bottom",
                fontsize=LABEL_FONT, color=SHAPE, style="italic")
        x = centre + radius
    _arrow(ax, (x, mid), (x + length - PAD - 0.03, mid))
    _shape_label(ax, x + length / 2, mid, shape)
    _box(ax, x + length, y, widths[1], height, ends[1], BLUE)
    return fig


def _check_strings(name: str, items: Sequence[str], at_least: int) -> None:
    if isinstance(items, str) or not all(isinstance(item, str) for item in items):
        raise TypeError(f"{name} must be a sequence of strings, not {type(items).__name__}")
    if len(items) < at_least:
        raise ValueError(f"{name} needs at least {at_least} entries, got {len(items)}")


def cycle_diagram(steps: Sequence[str], title: str, centre: str = "") -> Figure:
    """``steps`` on a circle, clockwise from the top, each joined to the next by an arrow.

    ``centre`` is written in the middle: what repeats the loop and what ends it.
    """
    _check_strings("steps", steps, 2)
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    radius, boxes = 1.7, []
    for i, text in enumerate(steps):
        angle = math.pi / 2 - 2 * math.pi * i / len(steps)
        x, y = 1.35 * radius * math.cos(angle), radius * math.sin(angle)  # an ellipse: boxes are wide
        box = FancyBboxPatch((x - 0.9, y - 0.38), 1.8, 0.76, boxstyle="round,pad=0.05", facecolor=BLUE,
                             edgecolor=INK)
        ax.add_patch(box)
        ax.text(x, y, text, ha="center", va="center", fontsize=8.5)
        boxes.append(box)
    for i, box in enumerate(boxes):
        after = boxes[(i + 1) % len(boxes)]
        ax.add_patch(FancyArrowPatch(posA=_centre(box), posB=_centre(after), patchA=box, patchB=after,
                                     arrowstyle="-|>", mutation_scale=13, color=INK,
                                     connectionstyle="arc3,rad=-0.25"))
    ax.text(0, 0, centre, ha="center", va="center", fontsize=9, style="italic", color="#7a1f1f")
    ax.set_xlim(-1.35 * radius - 1.1, 1.35 * radius + 1.1)
    ax.set_ylim(-radius - 0.6, radius + 0.6)
    ax.set_aspect("equal")
    ax.set_title(title)
    ax.axis("off")
    fig.tight_layout()
    return fig


def _centre(box: FancyBboxPatch) -> tuple[float, float]:
    return box.get_x() + box.get_width() / 2, box.get_y() + box.get_height() / 2


def shift_diagram(tokens: Sequence[str], title: str) -> Figure:
    """One window of ``tokens``: the inputs on top, the targets (shifted one left) below, and an arrow
    from each input position to the token the model must predict there."""
    _check_strings("tokens", tokens, 2)
    n = len(tokens) - 1
    fig, ax = plt.subplots(figsize=(1.25 * n + 1.6, 2.6))
    for row, y, colour, words in [("input", 1.4, BLUE, tokens[:-1]), ("target", 0.0, ORANGE, tokens[1:])]:
        ax.text(-0.7, y + 0.3, row, ha="right", va="center", fontsize=9, weight="bold")
        for i, word in enumerate(words):
            ax.add_patch(Rectangle((i * 1.2 - 0.5, y), 1.0, 0.6, facecolor=colour, edgecolor=INK))
            ax.text(i * 1.2, y + 0.3, repr(word)[1:-1], ha="center", va="center", fontsize=8.5)
    for i in range(n):
        ax.add_patch(FancyArrowPatch((i * 1.2, 1.38), (i * 1.2, 0.62), arrowstyle="-|>", mutation_scale=10,
                                     color=INK))
        ax.text(i * 1.2 + 0.06, 1.0, f"t={i}", fontsize=7, color="#7a1f1f", va="center")
    ax.set_xlim(-2.0, n * 1.2)
    ax.set_ylim(-0.3, 2.3)
    ax.set_title(title)
    ax.axis("off")
    fig.tight_layout()
    return fig


def allowed_keys(n: int, window: int | None = None) -> list[list[bool]]:
    """``allowed[q][k]``: may query ``q`` look at key ``k``? Causal (k <= q), and, with ``window``,
    local: only the last ``window`` keys, the query's own included (q - k < window)."""
    if window is not None and window < 1:
        raise ValueError(f"window must be at least 1 (a token always sees itself), got {window}")
    return [[k <= q and (window is None or q - k < window) for k in range(n)] for q in range(n)]


def mask_diagram(tokens: Sequence[str], windows: Sequence[int | None] = (None,),
                 title: str = "what each query may look at") -> Figure:
    """One grid per entry of ``windows`` (None: plain causal): row = query, column = key; allowed
    scores are kept (``q·k``), the others are set to -inf before the softmax."""
    _check_strings("tokens", tokens, 1)
    n = len(tokens)
    fig, axes = plt.subplots(1, len(windows), figsize=(0.55 * n * len(windows) + 1.5, 0.5 * n + 1.4),
                             squeeze=False)
    for ax, window in zip(axes[0], windows, strict=True):
        for q, row in enumerate(allowed_keys(n, window)):
            for k, allowed in enumerate(row):
                ax.add_patch(Rectangle((k, q), 1, 1, facecolor=BLUE if allowed else GREY, edgecolor="white"))
                ax.text(k + 0.5, q + 0.5, "q·k" if allowed else "−∞", ha="center", va="center", fontsize=7,
                        color=INK if allowed else "#999999")
        ax.set_xlim(0, n)
        ax.set_ylim(n, 0)  # first query at the top, as in a matrix
        ax.set_xticks([i + 0.5 for i in range(n)], tokens, rotation=90, fontsize=8)
        ax.set_yticks([i + 0.5 for i in range(n)], tokens, fontsize=8)
        ax.set(xlabel="key (the token looked at)", ylabel="query (the token looking)",
               title="causal" if window is None else f"causal, local window of {window}")
        ax.set_aspect("equal")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def kv_cache_diagram(tokens: Sequence[str], prompt_len: int,
                     title: str = "the KV cache while decoding") -> Figure:
    """Rows are forward passes: first the prompt (prefill), then one new token each. A cell is a
    position's key and value: computed in this pass (orange) or read back from the cache (blue)."""
    _check_strings("tokens", tokens, 2)
    if not 1 <= prompt_len < len(tokens):
        raise ValueError(f"prompt_len must be between 1 and {len(tokens) - 1} (tokens left to decode), "
                         f"got {prompt_len}")
    n, passes = len(tokens), len(tokens) - prompt_len + 1
    fig, ax = plt.subplots(figsize=(0.62 * n + 3.2, 0.5 * passes + 1.5))
    for row in range(passes):
        seen = prompt_len + row  # positions whose keys and values exist after this pass
        first_new = 0 if row == 0 else seen - 1
        for pos in range(seen):
            new = pos >= first_new
            ax.add_patch(Rectangle((pos, row), 1, 1, facecolor=ORANGE if new else BLUE, edgecolor="white"))
            ax.text(pos + 0.5, row + 0.5, "new" if new else "cached", ha="center", va="center", fontsize=6.5)
        ax.text(n + 0.2, row + 0.5, f"{seen - first_new} computed, {seen} attended", va="center", fontsize=8)
    ax.set_xlim(0, n + 3.0)
    ax.set_ylim(passes, 0)
    ax.set_xticks([i + 0.5 for i in range(n)], tokens, rotation=90, fontsize=8)
    ax.set_yticks([i + 0.5 for i in range(passes)], ["prefill"] + [f"step {i}" for i in range(1, passes)],
                  fontsize=8)
    ax.set(xlabel="position (token)", ylabel="forward pass", title=title)
    fig.legend(handles=[Patch(facecolor=ORANGE, label="k, v computed in this pass"),
                        Patch(facecolor=BLUE, label="k, v read from the cache")],
               loc="lower center", ncol=2, fontsize=8, frameon=False)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))  # room for the legend below the axis labels
    return fig
