"""Tests for gpt2_core.figures.diagrams: the diagrams of chapters 1-5."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

from gpt2_core.figures import flow_diagram  # noqa: E402


def test_flow_diagram_draws_a_box_per_step_and_a_labelled_arrow_between_each_pair():
    fig = flow_diagram(["ids", "lookup", "sum"], ["(B, T)", "(B, T, d)"], "embeddings", highlight=[1])
    ax = fig.axes[0]
    boxes = [p for p in ax.patches if isinstance(p, FancyBboxPatch)]
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    texts = [t.get_text() for t in ax.texts]
    assert len(boxes) == 3 and len(arrows) == 2 and ax.get_title() == "embeddings"
    assert texts == ["ids", "(B, T)", "lookup", "(B, T, d)", "sum"]  # left to right
    assert boxes[1].get_facecolor() != boxes[0].get_facecolor()  # highlighted
    plt.close(fig)


def test_flow_diagram_boxes_grow_with_their_text():
    short, long = (flow_diagram([text, "b"], ["x"], "t") for text in ("a", "a much longer name for a step"))
    widths = [[p.get_width() for p in f.axes[0].patches if isinstance(p, FancyBboxPatch)] for f in (short, long)]
    assert widths[1][0] > widths[0][0] and widths[1][1] == widths[0][1]
    plt.close("all")


def test_residual_diagram_adds_each_branch_back_to_the_stream():
    from matplotlib.patches import Circle

    from gpt2_core.figures import residual_diagram

    fig = residual_diagram([["LayerNorm", "attention"], ["LayerNorm", "feed-forward"]], "block",
                           highlight=[1, 3], sums=["x + attn(norm(x))", "x + ff(norm(x))"])
    ax = fig.axes[0]
    adds = [p for p in ax.patches if isinstance(p, Circle)]
    boxes = [p for p in ax.patches if isinstance(p, FancyBboxPatch)]
    texts = _texts(fig)
    assert len(adds) == 2 and texts.count("+") == 2 and len(boxes) == 2 + 4  # the two ends and four steps
    assert "x + attn(norm(x))" in texts and "x + ff(norm(x))" in texts and ax.get_title() == "block"
    assert sum("shortcut" in t for t in texts) == 2
    # each "+" receives two arrows with a head: the branch's output and the shortcut from above
    heads = [p.get_path().vertices for p in ax.patches
             if isinstance(p, FancyArrowPatch) and type(p.get_arrowstyle()).__name__ == "CurveFilledB"]
    for add in adds:
        (cx, cy), r = add.center, add.radius
        distances = [((v[:, 0] - cx) ** 2 + (v[:, 1] - cy) ** 2) ** 0.5 for v in heads]
        assert sum(d.min() < r + 0.05 and d[0] > r + 0.05 for d in distances) == 2  # they end there
    assert boxes[2].get_facecolor() != boxes[1].get_facecolor()  # "attention" is highlighted, "LayerNorm" not
    plt.close(fig)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(branches=[]), ValueError, "at least one branch"),
    (dict(branches=["LayerNorm"]), TypeError, "sequence of strings"),
    (dict(branches=[["a"]], sums=["x + a", "x + b"]), ValueError, "one sum per branch")])
def test_residual_diagram_errors(kwargs, error, match):
    from gpt2_core.figures import residual_diagram

    with pytest.raises(error, match=match):
        residual_diagram(title="t", **kwargs)


@pytest.mark.parametrize("boxes, arrows, error, match", [
    (["a"], [], ValueError, "at least 2 boxes"), (["a", "b", "c"], ["x"], ValueError, "need 2 arrow labels"),
    ("ab", ["x"], TypeError, "sequences of strings")])
def test_flow_diagram_errors(boxes, arrows, error, match):
    with pytest.raises(error, match=match):
        flow_diagram(boxes, arrows, "t")


def _texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_cycle_diagram_joins_each_step_to_the_next_and_closes_the_loop():
    from gpt2_core.figures import cycle_diagram

    fig = cycle_diagram(["a", "b", "c"], "loop", centre="until done")
    ax = fig.axes[0]
    boxes = [p for p in ax.patches if isinstance(p, FancyBboxPatch)]
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    assert len(boxes) == 3 and len(arrows) == 3  # the last arrow goes back to the first step
    assert _texts(fig) == ["a", "b", "c", "until done"] and ax.get_title() == "loop"
    assert boxes[0].get_y() > boxes[1].get_y()  # the first step at the top
    plt.close(fig)
    with pytest.raises(ValueError, match="at least 2"):
        cycle_diagram(["only"], "t")


def test_shift_diagram_pairs_each_input_with_the_next_token():
    from gpt2_core.figures import shift_diagram

    fig = shift_diagram(["a", "b", "c"], "shift")
    texts = _texts(fig)
    assert texts[:3] == ["input", "a", "b"] and texts[3:6] == ["target", "b", "c"]
    assert sum(isinstance(p, FancyArrowPatch) for p in fig.axes[0].patches) == 2
    plt.close(fig)


@pytest.mark.parametrize("window, want", [
    (None, [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]),
    (2, [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]),
    (1, [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])])
def test_allowed_keys_is_causal_and_local(window, want):
    from gpt2_core.figures import allowed_keys

    assert [[int(a) for a in row] for row in allowed_keys(4, window)] == want


def test_mask_diagram_marks_exactly_the_forbidden_scores():
    from gpt2_core.figures import allowed_keys, mask_diagram

    fig = mask_diagram(["a", "b", "c", "d"], windows=(None, 2))
    assert len(fig.axes) == 2
    for ax, window in zip(fig.axes, (None, 2), strict=True):
        shown = [t.get_text() for t in ax.texts]
        assert shown.count("−∞") == sum(not a for row in allowed_keys(4, window) for a in row)
        assert ax.get_xlabel() and ax.get_ylabel()
    plt.close(fig)
    with pytest.raises(ValueError, match="window must be at least 1"):
        mask_diagram(["a", "b"], windows=(0,))


def test_kv_cache_diagram_computes_the_prompt_once_then_one_token_per_pass():
    from gpt2_core.figures import kv_cache_diagram

    fig = kv_cache_diagram(["a", "b", "c", "d", "e"], prompt_len=2)
    texts = _texts(fig)
    assert texts.count("new") == 2 + 3 and texts.count("cached") == 2 + 3 + 4
    assert "1 computed, 5 attended" in texts
    plt.close(fig)
    with pytest.raises(ValueError, match="prompt_len"):
        kv_cache_diagram(["a", "b"], prompt_len=2)
