"""Chapter 7's two diagrams, drawn with matplotlib: the loss mask, and LoRA's A·B beside W.

Both take an optional ``ax`` and return it, so a notebook can place them anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

IGNORED, COUNTED, PROMPT, ANSWER = "#d9d9d9", "#4daf4a", "#9ecae1", "#fdae6b"


def _axes(ax: Any, size: tuple[float, float]) -> Any:
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=size)
    return ax


def draw_loss_mask(tokens: Sequence[str], prompt_len: int, eot: str = "<eot>", ax: Any = None) -> Any:
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
    ax = _axes(ax, (min(1.0 * n + 1.5, 15), 2.6))
    for j in range(n):
        ax.add_patch(_box(j, 1, PROMPT if j < prompt_len else ANSWER))
        ax.text(j + 0.5, 1.5, seq[j], ha="center", va="center", fontsize=8)
        counted = j >= prompt_len - 1
        ax.add_patch(_box(j, 0, COUNTED if counted else IGNORED))
        ax.text(j + 0.5, 0.5, seq[j + 1] if counted else "-100", ha="center", va="center",
                fontsize=8)
    ax.set_xlim(-0.1, n + 0.1)
    ax.set_ylim(-0.1, 2.1)
    ax.set_yticks([0.5, 1.5], ["target", "input"])
    ax.set_xticks([j + 0.5 for j in range(n)], [str(j) for j in range(n)])
    ax.set_xlabel("position in the example (blue: prompt, orange: answer; green targets count, grey are -100)")
    ax.set_ylabel("row")
    ax.set_title("The loss mask: only the answer and its end-of-text are learned")
    ax.set_frame_on(False)
    return ax


def _box(x: float, y: float, color: str, w: float = 0.94, h: float = 0.9) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x + 0.03, y + 0.05), w, h, facecolor=color, edgecolor="black", linewidth=0.6)


def draw_lora(d_in: int, d_out: int, rank: int, ax: Any = None) -> Any:
    """The frozen weight (as ``Wᵀ``, d_in x d_out, the way ``x Wᵀ`` uses it) beside LoRA's trainable
    ``A`` (d_in x r) and ``B`` (r x d_out), all to one scale, with the number of parameters of each."""
    for name, v in (("d_in", d_in), ("d_out", d_out), ("rank", rank)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if rank > min(d_in, d_out):
        raise ValueError(f"rank={rank} is larger than min(d_in, d_out)={min(d_in, d_out)}; LoRA's rank is small")
    from matplotlib.patches import Rectangle

    ax = _axes(ax, (10, 3.4))
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
    ax.set_title(f"LoRA: x Wᵀ + (alpha / r) x A B, with rank r = {rank}")
    return ax
