"""Diagrams of fine-tuning (chapters 6 and 7): where the classification head reads (pooling), which
targets the instruction loss counts (the loss mask), and LoRA's small A·B beside the frozen W.

Each function draws on a new matplotlib figure and returns it; every figure has a title.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

from ..checks import check_int
from .diagrams import LABEL_FONT, inch_axes, text_size

IGNORED, COUNTED, PROMPT, ANSWER = "#d9d9d9", "#4daf4a", "#9ecae1", "#fdae6b"


def _box(ax: Axes, x: float, y: float, text: str, color: str, w: float = 0.8, h: float = 0.5) -> None:
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.03", fc=color, ec="0.3"))
    ax.text(x, y, text, ha="center", va="center", fontsize=9)


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], color: str = "0.3", label: str = "") -> None:
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
        # the GPT's box, with its name in a margin of its own on the left, where no arrow passes
        ax.add_patch(FancyBboxPatch((-1.55, 0.85), n + 1.05, 1.3, boxstyle="round,pad=0.05", fc="none", ec="0.5",
                                    ls="--"))
        ax.text(-1.02, 1.5, "GPT\nblocks\n(causal\nattention)", ha="center", va="center", fontsize=8, color="0.4")
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
        right = max(n - 0.3, n_real + 0.1, centre + 2.2)  # room for the widest box and the shape label
        ax.set(xlim=(-1.75, right), ylim=(-0.6, 5.4), title=title, xlabel="token position (right-padded batch)",
               ylabel="layer (input at the bottom)")
        ax.set_xticks(range(n))
        ax.set_yticks([0, 1.5, 3.0, 4.3], ["tokens", "final hidden", "pooled", "head"])
    fig.tight_layout()
    return fig


def loss_mask_diagram(tokens: Sequence[str], prompt_len: int, eot: str = "<eot>",
                      title: str = "The loss mask: only the answer and its end-of-text are learned") -> Figure:
    """Two rows of boxes: the input tokens (prompt in blue, answer in orange) and, below each, the
    target it is trained to predict: green when it counts, grey (``-100``) when the prompt is masked.

    ``tokens`` is one example (prompt + answer) as token strings, ``prompt_len`` how many are prompt;
    a token's leading space is drawn as ``␣``.
    """
    if len(tokens) < 2 or not 1 <= prompt_len < len(tokens):
        raise ValueError(f"need at least one prompt and one answer token, got {len(tokens)} tokens "
                         f"with prompt_len={prompt_len}")
    seq = [repr(t)[1:-1].replace(" ", "␣") for t in tokens] + [eot]  # ␣ shows a token's leading space
    n = len(tokens)
    width = min(1.0 * n + 1.5, 15)
    box = 0.85 * width / n  # inches per token box, about
    fig, ax = plt.subplots(figsize=(width, 3.4))

    def label(x: float, y: float, text: str) -> None:
        # a label wider than its box is turned upright, so that neighbours never collide
        upright = len(text) * 8 * 0.6 / 72 > 0.8 * box
        ax.text(x, y, text, ha="center", va="center", fontsize=7 if upright else 8, rotation=90 if upright else 0)

    for j in range(n):
        ax.add_patch(_cell(j, 1, PROMPT if j < prompt_len else ANSWER))
        label(j + 0.5, 1.5, seq[j])
        counted = j >= prompt_len - 1
        ax.add_patch(_cell(j, 0, COUNTED if counted else IGNORED))
        label(j + 0.5, 0.5, seq[j + 1] if counted else "-100")
    ax.set_xlim(-0.1, n + 0.1)
    ax.set_ylim(-0.1, 2.1)
    ax.set_yticks([0.5, 1.5], ["target", "input"])
    ax.set_xticks([j + 0.5 for j in range(n)], [str(j) for j in range(n)])
    ax.set_xlabel("position in the example (blue: prompt, orange: answer; green targets count, grey are -100)")
    ax.set_ylabel("row")
    ax.set_title(title)
    ax.set_frame_on(False)
    fig.tight_layout()
    return fig


def _cell(x: float, y: float, color: str, w: float = 0.94, h: float = 0.9) -> Rectangle:
    return Rectangle((x + 0.03, y + 0.05), w, h, facecolor=color, edgecolor="black", linewidth=0.6)


def lora_diagram(d_in: int, d_out: int, rank: int, title: str = "") -> Figure:
    """The frozen weight (as ``Wᵀ``, d_in x d_out, the way ``x Wᵀ`` uses it) plus LoRA's update ``A·B``, drawn
    as a matrix product: the trainable ``A`` (d_in x r) on the left of ``A·B`` and ``B`` (r x d_out) above it,
    so that ``A·B`` has the rows of ``A``, the columns of ``B``: the shape of ``Wᵀ``. All to one scale (the
    thin sides at least a hairline), with the number of parameters of each."""
    for name, v in (("d_in", d_in), ("d_out", d_out), ("rank", rank)):
        check_int(v, name, low=1)
    if rank > min(d_in, d_out):
        raise ValueError(f"rank={rank} is larger than min(d_in, d_out)={min(d_in, d_out)}; LoRA's rank is small")
    title = title or f"LoRA: x Wᵀ + (alpha / r) x A B, with rank r = {rank}"
    s = 2.6 / max(d_in, d_out)  # inches per feature: the larger side of W is 2.6 inches
    h, w, r = d_in * s, d_out * s, max(rank * s, 0.05)
    trainable = rank * (d_in + d_out)
    w_label = f"Wᵀ (frozen)\n{d_in} x {d_out}\n= {d_in * d_out:,} numbers"
    ab_label = (f"A·B: {d_in} x {d_out},\nthe shape of Wᵀ\ntrainable: {trainable:,} numbers\n"
                f"= {100 * trainable / (d_in * d_out):.1f}% of W")
    a_label, b_label = f"A: {d_in} x {rank}", f"B (starts at 0): {rank} x {d_out}"
    size = {text: text_size(text, LABEL_FONT) for text in (w_label, ab_label, a_label, b_label)}
    below = max(size[w_label][1], size[ab_label][1]) + 0.15  # the labels under the two matrices
    col_w = max(w, size[w_label][0]) + 0.2
    col_ab = max(w, size[ab_label][0]) + 0.2
    plus, col_a = 0.5, size[a_label][1] + 0.1 + r + 0.08  # A's label is written upwards, left of A
    width = col_w + plus + col_a + col_ab + 0.2
    height = below + h + 0.08 + r + size[b_label][1] + 0.25
    fig, ax = inch_axes(width, height + 0.25, title)
    x = (ax.get_xlim()[1] - (col_w + plus + col_a + col_ab)) / 2
    y = below + 0.25  # the bottom of the matrices
    wx = x + (col_w - w) / 2
    ax.add_patch(Rectangle((wx, y), w, h, facecolor=IGNORED, edgecolor="black"))
    ax.text(wx + w / 2, y - 0.08, w_label, ha="center", va="top", fontsize=LABEL_FONT)
    ax.text(x + col_w + plus / 2, y + h / 2, "+", fontsize=18, ha="center", va="center")
    px = x + col_w + plus + col_a + (col_ab - w) / 2  # the product's left edge; A ends just before it
    ax.add_patch(Rectangle((px - 0.08 - r, y), r, h, facecolor=PROMPT, edgecolor="black"))
    ax.text(px - 0.08 - r - 0.06, y + h / 2, a_label, rotation=90, ha="right", va="center", fontsize=LABEL_FONT)
    ax.add_patch(Rectangle((px, y + h + 0.08), w, r, facecolor=ANSWER, edgecolor="black"))
    ax.text(px + w / 2, y + h + 0.08 + r + 0.05, b_label, ha="center", va="bottom", fontsize=LABEL_FONT)
    ax.add_patch(Rectangle((px, y), w, h, facecolor="#fde6cf", edgecolor="black", linestyle="--"))
    ax.text(px + w / 2, y + h / 2, "A·B", ha="center", va="center", fontsize=11)
    ax.text(px + w / 2, y - 0.08, ab_label, ha="center", va="top", fontsize=LABEL_FONT)
    return fig
