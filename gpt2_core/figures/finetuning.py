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
    fig, ax = plt.subplots(figsize=(min(1.0 * n + 1.5, 15), 2.6))
    for j in range(n):
        ax.add_patch(_cell(j, 1, PROMPT if j < prompt_len else ANSWER))
        ax.text(j + 0.5, 1.5, seq[j], ha="center", va="center", fontsize=8)
        counted = j >= prompt_len - 1
        ax.add_patch(_cell(j, 0, COUNTED if counted else IGNORED))
        ax.text(j + 0.5, 0.5, seq[j + 1] if counted else "-100", ha="center", va="center",
                fontsize=8)
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
    """The frozen weight (as ``Wᵀ``, d_in x d_out, the way ``x Wᵀ`` uses it) beside LoRA's trainable
    ``A`` (d_in x r) and ``B`` (r x d_out), all to one scale, with the number of parameters of each."""
    for name, v in (("d_in", d_in), ("d_out", d_out), ("rank", rank)):
        check_int(v, name, low=1)
    if rank > min(d_in, d_out):
        raise ValueError(f"rank={rank} is larger than min(d_in, d_out)={min(d_in, d_out)}; LoRA's rank is small")
    fig, ax = plt.subplots(figsize=(10, 3.4))
    s = 4.0 / max(d_in, d_out)  # the larger side of W is 4 units
    r = max(rank * s, 0.06)  # keep a rank-1 strip visible
    h, w = d_in * s, d_out * s
    ax.add_patch(Rectangle((0, 0), w, h, facecolor=IGNORED, edgecolor="black"))
    ax.text(w / 2, -0.25, f"Wᵀ (frozen): {d_in} x {d_out} = {d_in * d_out:,} numbers", ha="center", va="top")
    ax.text(w + 0.5, h / 2, "+", fontsize=20, ha="center", va="center")
    x0 = w + 1.0
    ax.add_patch(Rectangle((x0, 0), r, h, facecolor=PROMPT, edgecolor="black"))
    ax.text(x0 + r / 2, -0.25, f"A: {d_in} x {rank}", ha="center", va="top")
    ax.text(x0 + r + 0.3, h / 2, "·", fontsize=20, ha="center", va="center")
    x1 = x0 + r + 0.6
    ax.add_patch(Rectangle((x1, h - r), w, r, facecolor=ANSWER, edgecolor="black"))
    ax.text(x1 + w / 2, h - r - 0.15, f"B (starts at 0): {rank} x {d_out}", ha="center", va="top")
    ax.text(x1 + w / 2, -0.25, f"trainable: {rank * (d_in + d_out):,} numbers "
            f"= {100 * rank * (d_in + d_out) / (d_in * d_out):.1f}% of W", ha="center", va="top")
    ax.set_xlim(-0.2, x1 + w + 0.2)
    ax.set_ylim(-0.9, h + 0.3)
    ax.set_aspect("equal")
    ax.set_xlabel("output features (to scale)")
    ax.set_ylabel("input features")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"LoRA: x Wᵀ + (alpha / r) x A B, with rank r = {rank}")
    fig.tight_layout()
    return fig
