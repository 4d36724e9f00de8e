"""Diagrams drawn in code, shared by the notebooks: boxes joined by arrows that carry tensor shapes.

One function, :func:`flow_diagram`, draws a pipeline left to right: each box is a step (a layer, an
operation), each arrow is the tensor passed on, labelled with its shape. Chapters 2-4 use it for the
embedding lookup, the attention computation, the transformer block and the whole model.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

BOX_WIDTH, BOX_HEIGHT, GAP = 1.6, 0.9, 1.45


def flow_diagram(boxes: Sequence[str], arrows: Sequence[str], title: str,
                 highlight: Sequence[int] = ()) -> Figure:
    """A left-to-right diagram: ``boxes`` (step names) joined by ``arrows`` (shape labels, one fewer).

    Boxes whose index is in ``highlight`` are drawn in a second colour (e.g. the trained layers).
    """
    if isinstance(boxes, str) or isinstance(arrows, str):
        raise TypeError("boxes and arrows must be sequences of strings, not a single string")
    if len(boxes) < 2:
        raise ValueError(f"a diagram needs at least 2 boxes, got {len(boxes)}")
    if len(arrows) != len(boxes) - 1:
        raise ValueError(f"{len(boxes)} boxes need {len(boxes) - 1} arrow labels (one between each pair), "
                         f"got {len(arrows)}")
    step = BOX_WIDTH + GAP
    fig, ax = plt.subplots(figsize=(1.9 * len(boxes) + 0.4, 2.2))
    for i, text in enumerate(boxes):
        colour = "#f6c28b" if i in highlight else "#cfe2f3"
        ax.add_patch(FancyBboxPatch((i * step, 0), BOX_WIDTH, BOX_HEIGHT, boxstyle="round,pad=0.05",
                                    facecolor=colour, edgecolor="#333333"))
        ax.text(i * step + BOX_WIDTH / 2, BOX_HEIGHT / 2, text, ha="center", va="center", fontsize=9)
    for i, label in enumerate(arrows):
        start, end = i * step + BOX_WIDTH + 0.05, (i + 1) * step - 0.05
        ax.add_patch(FancyArrowPatch((start, BOX_HEIGHT / 2), (end, BOX_HEIGHT / 2), arrowstyle="-|>",
                                     mutation_scale=12, color="#333333"))
        ax.text((start + end) / 2, BOX_HEIGHT / 2 + 0.12, label, ha="center", va="bottom", fontsize=8,
                color="#7a1f1f")
    ax.set_xlim(-0.2, len(boxes) * step - GAP + 0.2)
    ax.set_ylim(-0.3, BOX_HEIGHT + 0.5)
    ax.set_title(title)
    ax.axis("off")
    fig.tight_layout()
    return fig
