"""Charts of the distributions a model computes: the attention weights of its heads (chapter 3) and the
next-token distribution that sampling reshapes and cuts (chapter 5).

Each function draws on a new matplotlib figure and returns it; every figure has a title and labelled axes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..checks import check_int, check_number

KEPT, NUCLEUS, TOP_K_ONLY, DROPPED = "#3b7dd8", "#9ecae1", "#f6c28b", "#cccccc"


def plot_attention_heads(weights: torch.Tensor | Sequence, labels: Sequence[str], title: str,
                         columns: int = 2) -> Figure:
    """One heatmap per head (row: the token that looks, column: the token it looks at), ``columns`` a row.

    ``weights`` holds one ``(tokens, tokens)`` matrix of attention weights per head (a tensor of shape
    ``(heads, tokens, tokens)`` or a list of such matrices), ``labels`` the tokens. Each heatmap is large
    enough for its labels: one line of text per token on both axes.
    """
    maps = torch.stack([torch.as_tensor(w).detach().float().cpu() for w in weights])
    if maps.ndim != 3 or maps.shape[1] != maps.shape[2] or maps.shape[1] != len(labels):
        raise ValueError(f"need (heads, tokens, tokens) weights and one label per token, got weights of shape "
                         f"{tuple(maps.shape)} and {len(labels)} labels")
    check_int(columns, "columns", low=1)
    heads, n = maps.shape[0], maps.shape[1]
    cols = min(columns, heads)
    rows = math.ceil(heads / cols)
    side = min(max(0.22 * n, 2.5), 5.5)  # inches per heatmap: a label's line per token, within bounds
    fontsize = min(9.0, 0.6 * side * 72 / n)  # a line of text is about 1.2 x the font size
    label_room = 0.1 + 0.6 * fontsize / 72 * max(len(label) for label in labels)  # the longest tick label
    fig, axes = plt.subplots(rows, cols, figsize=(cols * (side + 0.3) + label_room + 1.2,
                                                  rows * (side + 0.5) + label_room + 0.6),
                             sharex=True, sharey=True, squeeze=False, layout="constrained")
    for h, ax in enumerate(axes.flat):
        if h >= heads:
            ax.set_visible(False)
            continue
        image = ax.imshow(maps[h], cmap="viridis", vmin=0, vmax=1)
        ax.set_title(f"head {h + 1}", fontsize=10)
        ax.set_xticks(range(n), labels, rotation=90, fontsize=fontsize)
        ax.set_yticks(range(n), labels, fontsize=fontsize)
        ax.tick_params(labelbottom=h // cols == rows - 1 or h + cols >= heads, labelleft=h % cols == 0)
        if h // cols == rows - 1 or h + cols >= heads:
            ax.set_xlabel("attends to (key)")
        if h % cols == 0:
            ax.set_ylabel("query (the token looking)")
    fig.colorbar(image, ax=axes, shrink=0.6, label="attention weight")
    fig.suptitle(title)
    return fig


def _softmax(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.softmax(logits / temperature, dim=-1)


def plot_sampling(logits: torch.Tensor | Sequence[float], labels: Sequence[str] | Callable[[int], str],
                  temperatures: Sequence[float] = (0.5, 1.0, 2.0), top_k: int = 5, top_p: float = 0.9,
                  show: int = 12, title: str = "") -> Figure:
    """What sampling does to one next-token distribution, in three panels.

    1. temperature: the probabilities of the ``show`` most likely tokens under each of ``temperatures``
       (``softmax(logits / T)``: below 1 sharpens, above 1 flattens);
    2. top-k and top-p at T = 1: which of those tokens each rule keeps (the ``top_k`` most likely; the
       smallest set of most likely tokens whose probability reaches ``top_p``, as
       :func:`gpt2_core.model.generation.top_p_filter` counts it);
    3. the probability mass of the most likely tokens against their number, over the whole vocabulary,
       with ``top_p`` and the sizes of the two candidate sets marked.

    ``logits`` are the scores of every token of the vocabulary (one position); ``labels`` gives each token
    id's text, as a sequence or as a function of the id (e.g. ``lambda i: repr(tok.decode([i]))``).
    """
    logits = torch.as_tensor(logits).detach().float().cpu()
    if logits.ndim != 1 or logits.numel() < 2:
        raise ValueError(f"logits must be one score per vocabulary token (1-D, at least 2), got shape "
                         f"{tuple(logits.shape)}")
    label_of = labels if callable(labels) else (lambda i: labels[i])
    if not callable(labels) and len(labels) != logits.numel():
        raise ValueError(f"{logits.numel()} logits need as many labels, got {len(labels)}")
    if not temperatures:
        raise ValueError("give at least one temperature")
    for t in temperatures:
        check_number(t, "each temperature", positive=True)
    check_int(top_k, "top_k", low=1)
    if not 0.0 < check_number(top_p, "top_p") <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    check_int(show, "show", low=2)

    show = min(show, logits.numel())
    probs = _softmax(logits, 1.0)
    order = torch.argsort(probs, descending=True)
    top = order[:show]
    names = [str(label_of(int(i))) for i in top]
    cumulative = torch.cumsum(probs[order], 0)
    nucleus = int((cumulative - probs[order] < top_p).sum())  # tokens whose mass before them is below p
    k = min(top_k, logits.numel())

    fig, (ax_t, ax_cut, ax_mass) = plt.subplots(1, 3, figsize=(16, 4.6), layout="constrained",
                                                width_ratios=(1.2, 1.2, 0.9))
    width = 0.8 / len(temperatures)
    for j, t in enumerate(temperatures):
        p = _softmax(logits, t)[top]
        ax_t.bar([i + (j - (len(temperatures) - 1) / 2) * width for i in range(show)], p.tolist(), width,
                 label=f"T = {t:g}")
    ax_t.set_xticks(range(show), names, rotation=60, ha="right", fontsize=8)
    ax_t.set(xlabel=f"the {show} most likely tokens (at T = 1)", ylabel="probability",
             title="temperature: softmax(logits / T)")
    ax_t.legend(fontsize=8)

    p1 = probs[top]
    kinds = {"kept by both": KEPT, "by top-p only": NUCLEUS, "by top-k only": TOP_K_ONLY, "by neither": DROPPED}
    kind = ["kept by both" if i < min(k, nucleus) else "by top-p only" if i < nucleus else
            "by top-k only" if i < k else "by neither" for i in range(show)]
    ax_cut.bar(range(show), p1.tolist(), 0.8, color=[kinds[c] for c in kind])
    for i, (rule, size) in enumerate(((f"top-k = {top_k}", k), (f"top-p = {top_p:g}", nucleus))):
        if size < show:
            ax_cut.axvline(size - 0.5, color="black", ls="--" if i == 0 else ":", lw=1.2)
            right = size > show / 2  # write the rule on the side of its line that has room
            ax_cut.text(size - 0.5 + (-0.1 if right else 0.1), (0.8 - 0.12 * i) * float(p1.max()),
                        f"{rule}:\nkeeps {size:,}", fontsize=8, va="top", ha="right" if right else "left")
    ax_cut.set_xticks(range(show), names, rotation=60, ha="right", fontsize=8)
    ax_cut.set(xlabel=f"the {show} most likely tokens", ylabel="probability at T = 1",
               title=f"top-k keeps {k:,} tokens, top-p keeps {nucleus:,}")
    ax_cut.legend(handles=[Patch(facecolor=kinds[c], label=c) for c in kinds if c in kind], fontsize=8)

    ranks = torch.arange(1, logits.numel() + 1)
    ax_mass.plot(ranks.tolist(), cumulative.tolist(), color="black", lw=1.2)
    ax_mass.set_xscale("log")
    ax_mass.axhline(top_p, color="grey", ls=":", lw=1)
    ax_mass.plot([k], [float(cumulative[k - 1])], "s", color=KEPT, label=f"top-k = {top_k}: {k:,} tokens, "
                 f"mass {float(cumulative[k - 1]):.2f}")
    ax_mass.plot([nucleus], [float(cumulative[nucleus - 1])], "o", color=NUCLEUS, markeredgecolor="black",
                 label=f"top-p = {top_p:g}: {nucleus:,} tokens")
    ax_mass.set(xlabel=f"the most likely tokens, how many (of {logits.numel():,}, log scale)",
                ylabel="their total probability", ylim=(0, 1.02), title="how much of the mass each rule keeps")
    ax_mass.legend(fontsize=8, loc="lower right")
    fig.suptitle(title or "sampling: temperature reshapes the next-token distribution, top-k and top-p cut it")
    return fig
