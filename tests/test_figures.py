"""Tests for gpt2_core.figures: the shared diagram helper."""

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
    assert texts == ["ids", "lookup", "sum", "(B, T)", "(B, T, d)"]
    assert boxes[1].get_facecolor() != boxes[0].get_facecolor()  # highlighted
    plt.close(fig)


@pytest.mark.parametrize("boxes, arrows, error, match", [
    (["a"], [], ValueError, "at least 2 boxes"), (["a", "b", "c"], ["x"], ValueError, "need 2 arrow labels"),
    ("ab", ["x"], TypeError, "sequences of strings")])
def test_flow_diagram_errors(boxes, arrows, error, match):
    with pytest.raises(error, match=match):
        flow_diagram(boxes, arrows, "t")
