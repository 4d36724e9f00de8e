"""Every diagram of gpt2_core.figures is readable: drawn with representative arguments, no text spills out of
the box it sits in, no two texts overlap, no arrow runs through a text, and no text leaves the figure.

The positions come from matplotlib itself: after ``fig.canvas.draw()`` every artist knows its extent on
the canvas (``get_window_extent``), in pixels.
"""

from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle  # noqa: E402
from matplotlib.path import Path  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from gpt2_core import figures  # noqa: E402

TOLERANCE = 1.0  # pixels: antialiasing and rounding


def _tick_labels(axis) -> list[Text]:
    """The tick labels an axis draws: those of ticks inside its view limits."""
    low, high = sorted(axis.get_view_interval())
    ticks = axis.get_major_ticks() + axis.get_minor_ticks()
    return [t.label1 for t in ticks if low - 1e-9 <= t.get_loc() <= high + 1e-9 and t.label1.get_visible()]


def _texts(fig: Figure) -> list[Text]:
    """Every text the figure draws: its texts, titles, axis and tick labels, legend entries."""
    found = list(fig.texts) + ([fig._suptitle] if fig._suptitle is not None else [])
    legends = list(fig.legends)
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        found += list(ax.texts) + [ax.title, ax._left_title, ax._right_title]
        if ax.axison:
            for axis in (ax.xaxis, ax.yaxis):
                if axis.get_visible():
                    found += [axis.label, *_tick_labels(axis)]
        legends += [ax.get_legend()] if ax.get_legend() is not None else []
    for legend in legends:
        found += [*legend.get_texts(), legend.get_title()]
    unique = {id(t): t for t in found}  # a figure lists its suptitle among its texts too
    return [t for t in unique.values() if t.get_visible() and t.get_text().strip()]


def _boxes_of(ax) -> list:
    return [p for p in ax.patches if isinstance(p, (FancyBboxPatch, Rectangle, Circle)) and p.get_visible()]


def _boxes(fig: Figure) -> list:
    return [p for ax in fig.axes for p in _boxes_of(ax)]


def _arrows(fig: Figure) -> list[FancyArrowPatch]:
    return [p for ax in fig.axes for p in ax.patches if isinstance(p, FancyArrowPatch)]


def _shrunk(box: Bbox, by: float = TOLERANCE) -> Bbox:
    return Bbox.from_extents(box.x0 + by, box.y0 + by, box.x1 - by, box.y1 - by)


def _name(text: Text) -> str:
    return repr(text.get_text()[:40])


def layout_problems(fig: Figure) -> list[str]:
    """What makes ``fig`` hard to read, one sentence each (empty when nothing does)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = _texts(fig)
    extents = {id(t): t.get_window_extent(renderer) for t in texts}
    problems = []
    canvas = fig.bbox
    for t in texts:
        e = extents[id(t)]
        if e.x0 < canvas.x0 - TOLERANCE or e.y0 < canvas.y0 - TOLERANCE or e.x1 > canvas.x1 + TOLERANCE \
                or e.y1 > canvas.y1 + TOLERANCE:
            problems.append(f"text {_name(t)} leaves the figure")
    # boxes are cut off at the edge of their axes, and the texts written in an axes belong inside it
    for ax in fig.axes:
        frame = ax.get_window_extent(renderer)
        clipped = [(f"box {type(p).__name__}", p) for p in _boxes_of(ax)]
        clipped += [(f"text {_name(t)}", t) for t in ax.texts if t in texts]
        for what, artist in clipped:
            e = artist.get_window_extent(renderer)
            if e.x0 < frame.x0 - TOLERANCE or e.x1 > frame.x1 + TOLERANCE or e.y0 < frame.y0 - TOLERANCE \
                    or e.y1 > frame.y1 + TOLERANCE:
                problems.append(f"{what} is cut off at the edge of its axes")
    # a text sits in the smallest box that holds its centre; it must fit in that box
    boxes = [(p, p.get_window_extent(renderer)) for p in _boxes(fig)]
    for t in texts:
        e = extents[id(t)]
        cx, cy = (e.x0 + e.x1) / 2, (e.y0 + e.y1) / 2
        holders = [(b.width * b.height, b) for _, b in boxes if b.contains(cx, cy)]
        if holders:
            _, b = min(holders, key=lambda hb: hb[0])
            if not (e.x0 >= b.x0 - TOLERANCE and e.x1 <= b.x1 + TOLERANCE and e.y0 >= b.y0 - TOLERANCE
                    and e.y1 <= b.y1 + TOLERANCE):
                problems.append(f"text {_name(t)} spills out of its box")
    for a, b in itertools.combinations(texts, 2):
        if _shrunk(extents[id(a)]).overlaps(_shrunk(extents[id(b)])):
            problems.append(f"texts {_name(a)} and {_name(b)} overlap")
    for arrow in _arrows(fig):
        path = arrow.get_transform().transform_path(arrow.get_path())
        lines = [Path(line) for line in path.to_polygons(closed_only=False)]  # the shaft and the head
        for t in texts:
            if any(line.intersects_bbox(_shrunk(extents[id(t)], 2 * TOLERANCE), filled=False) for line in lines):
                problems.append(f"an arrow runs through text {_name(t)}")
    return problems


def _logits() -> torch.Tensor:
    return torch.linspace(4, -4, 40) + torch.sin(torch.arange(40.0))


# Every diagram function, with the arguments the chapters use (and a harder case where one helps).
DIAGRAMS = {
    "flow: ch2 input": lambda: figures.flow_diagram(
        ["token ids", "token embedding\nlookup: V × d table", "+ position embedding\n(rows 0 … T−1)", "dropout",
         "into the first\ntransformer block"], ["(B, T)", "(B, T, d)", "(B, T, d)", "(B, T, d)"],
        "Figure 6: the model's input, token + position embeddings (each box shows its weights)"),
    "flow: ch3 attention": lambda: figures.flow_diagram(
        ["x", "qkv = x W\n(one Linear,\nd → 3d)", "split heads:\nq, k, v", "scores =\nq kᵀ / √d_h",
         "causal mask,\nsoftmax", "weights · v", "merge heads,\nout_proj", "output"],
        ["(B, T, d)", "(B, T, 3d)", "(B, h, T, d_h)", "(B, h, T, T)", "(B, h, T, T)", "(B, h, T, d_h)",
         "(B, T, d)"], "Figure 4: multi-head causal attention, batched"),
    "flow: ch4 model": lambda: figures.flow_diagram(
        ["token ids", "token +\nposition\nembeddings", "L transformer\nblocks", "final\nLayerNorm",
         "output head\n(tied to the\ntoken embedding)", "logits"],
        ["(B, T)", "(B, T, d)", "(B, T, d)", "(B, T, d)", "(B, T, V)"], "Figure 4: the whole GPT-2 model"),
    "flow: long labels": lambda: figures.flow_diagram(
        ["a very long first step name", "b"], ["an arrow label longer than its arrow"], "t", highlight=[0]),
    "residual: ch4 block": lambda: figures.residual_diagram(
        [["LayerNorm", "multi-head\nattention,\ndropout"], ["LayerNorm", "feed-forward\nd → 4d → d,\ndropout"]],
        "Figure 3: one GPT-2 transformer block (pre-norm)", highlight=[0, 1, 2, 3],
        sums=["x + attn(norm(x))", "x + ff(norm(x))"]),
    "residual: one branch": lambda: figures.residual_diagram([["f"]], "x + f(x)", shape="(n,)"),
    "cycle: ch1 BPE": lambda: figures.cycle_diagram(
        ["count every adjacent\npair, weighted by\nhow often its chunk occurs",
         "pick the most\nfrequent pair\n(ties: smaller ids)",
         "give it the next\nnew id: 256, 257, ...", "replace the pair by\nthe new id everywhere"],
        "Figure 1: the BPE training loop", centre="repeat until\nthe vocabulary\nhas its size"),
    "cycle: ch5 training": lambda: figures.cycle_diagram(
        ["next batch\n(B, T) ids and targets", "forward:\nlogits (B, T, V) → loss", "backward:\na gradient for\n"
         "every parameter", "clip the gradient norm,\nAdamW step with\nthe lr of Figure 1"],
        "Figure 2: the training loop", centre="repeat\nmax_steps times"),
    "shift: ch2": lambda: figures.shift_diagram(["F", "ellow", "-", "C", "itizens", " of", " the", " Senate"],
                                                "Figure 1: one window"),
    "mask: ch3": lambda: figures.mask_diagram(["Your", " journey", " starts", " with", " one", " step"],
                                              windows=(None, 3)),
    "kv cache: ch3": lambda: figures.kv_cache_diagram(["Your", " journey", " starts", " with", " one", " step"], 3),
    "pooling: ch6": lambda: figures.pooling_diagram(emb_dim=256),
    "pooling: no padding": lambda: figures.pooling_diagram(["a", "b", "c"], emb_dim=768, num_classes=3),
    "loss mask: ch7": lambda: figures.loss_mask_diagram(["W", "h", "at", " is", " the", " last", " word", "?",
                                                         " Answer", ":", " against"], 10),
    "lora: ch7": lambda: figures.lora_diagram(
        256, 768, 16, title="Figure 2: LoRA on the qkv layer, x Wᵀ + (alpha / r) x A B, r = 16"),
    "lora: square, rank 1": lambda: figures.lora_diagram(64, 64, 1),
    "lora: tall": lambda: figures.lora_diagram(768, 256, 8),
    "lora: GPT-2 feed-forward": lambda: figures.lora_diagram(768, 3072, 8),
    "sampling: ch5": lambda: figures.plot_sampling(_logits(), [f"tok{i}" for i in range(40)]),
    "sampling: callable labels": lambda: figures.plot_sampling(_logits(), lambda i: f" word{i}", top_k=3, top_p=0.5),
    "sampling: top-k keeps more": lambda: figures.plot_sampling(_logits(), lambda i: f"<{i}>", temperatures=(0.7, 1.5),
                                                                top_k=8, top_p=0.5, show=10),
    "lengths: ch6": lambda: figures.plot_lengths(
        {"easy ham": [2 ** (4 + k % 9) for k in range(1174)], "hard ham": [2 ** (7 + k % 7) for k in range(76)],
         "spam": [2 ** (1 + k % 13) for k in range(1251)]}, 128,
        "Figure 2: tokens per training e-mail, by source (context: 128)"),
    "learning curve: ch6": lambda: figures.plot_learning_curve(
        [16, 64, 256, 2501], {"pretrained + e-mail LM step": [0.81, 0.9, 0.923, 0.981],
                              "pretrained only": [0.824, 0.896, 0.925, 0.979],
                              "random init": [0.768, 0.895, 0.914, 0.974], "Naive Bayes": [0.826, 0.895, 0.946, 0.94]},
        "Figure 5: test accuracy against labelled training e-mails",
        spread={"pretrained + e-mail LM step": [0.071, 0.011, 0.008, 0.001],
                "random init": [0.069, 0.007, 0.013, 0.003]}),
    "attention heads: 4 of 20 tokens": lambda: figures.plot_attention_heads(
        torch.softmax(torch.randn(4, 20, 20).masked_fill(torch.ones(20, 20).triu(1).bool(), -torch.inf), -1),
        ["The", " Congress", " shall", " have", " power", " to", " lay", " and", " collect", " taxes", ",", " and",
         " to", " pay", " the", " debts", " of", " the", " United", " States"], "Figure 6: layer 1"),
}


@pytest.mark.parametrize("name", DIAGRAMS)
def test_diagram_is_readable(name):
    fig = DIAGRAMS[name]()
    try:
        assert layout_problems(fig) == []
    finally:
        plt.close(fig)


def test_every_diagram_function_is_drawn_here():
    drawn = " ".join(DIAGRAMS)
    names = {"flow_diagram": "flow:", "residual_diagram": "residual:", "cycle_diagram": "cycle:",
             "shift_diagram": "shift:", "mask_diagram": "mask:", "kv_cache_diagram": "kv cache:",
             "pooling_diagram": "pooling:", "loss_mask_diagram": "loss mask:", "lora_diagram": "lora:",
             "plot_sampling": "sampling:", "plot_attention_heads": "attention heads:", "plot_lengths": "lengths:",
             "plot_learning_curve": "learning curve:"}
    drawing = {name for name in figures.__all__ if name.endswith("_diagram") or name in names}
    assert drawing <= set(names), f"add {sorted(drawing - set(names))} to DIAGRAMS"
    assert all(prefix in drawn for prefix in names.values())


# The checker itself: it must see each kind of problem.
def _one_box(text: str, fontsize: float = 9) -> Figure:
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.add_patch(FancyBboxPatch((0.4, 0.4), 0.2, 0.2, boxstyle="round,pad=0.01"))
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=fontsize)
    ax.set(xlim=(0, 1), ylim=(0, 1))
    ax.axis("off")
    return fig


@pytest.mark.parametrize("draw, says", [
    (lambda: _one_box("a text much wider than its box"), "spills out"),
    (lambda: _one_box("ok", fontsize=6), None),
])
def test_checker_sees_text_spilling_out_of_a_box(draw, says):
    fig = draw()
    problems = layout_problems(fig)
    plt.close(fig)
    assert any(says in p for p in problems) if says else problems == []


def test_checker_sees_overlapping_texts_and_an_arrow_through_a_text():
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.text(0.2, 0.8, "first label", fontsize=10)
    ax.text(0.25, 0.8, "second label", fontsize=10)
    ax.text(0.5, 0.3, "crossed", ha="center", va="center")
    ax.add_patch(FancyArrowPatch((0.1, 0.3), (0.9, 0.3), arrowstyle="-|>", mutation_scale=10))
    ax.text(0.95, 0.05, "off the edge of the figure")
    ax.axis("off")
    problems = layout_problems(fig)
    plt.close(fig)
    assert any("overlap" in p for p in problems)
    assert any("arrow runs through text 'crossed'" in p for p in problems)
    assert any("leaves the figure" in p for p in problems)
