"""gpt2_core.figures: chapter 6's charts and the pooling diagram draw, carry titles and axis labels, and
refuse malformed input."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from gpt2_core import figures as plots  # noqa: E402
from gpt2_core.finetuning.loop import FinetuneHistory  # noqa: E402


def _labelled(fig) -> None:
    for ax in fig.axes:
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    plt.close(fig)


def test_figures_have_titles_and_axis_labels():
    _labelled(plots.pooling_diagram(["a", "b", "<pad>"], emb_dim=8))
    _labelled(plots.plot_confusion([[5, 1], [2, 7]]))
    h = FinetuneHistory(steps=[1, 2, 3], losses=[0.7, 0.5, 0.4], lrs=[1e-4, 2e-4, 1e-4])
    _labelled(plots.plot_finetune({"run": h}, smooth=2))
    _labelled(plots.plot_learning_curve([16, 64], {"a": [0.6, 0.8], "b": [0.7, 0.9]}))


def test_pooling_diagram_text_mentions_the_shapes():
    fig = plots.pooling_diagram(emb_dim=64, num_classes=3)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "Linear(64, 3)" in texts and "(64,)" in texts and "(3,)" in texts
    plt.close(fig)


def test_plot_errors():
    with pytest.raises(ValueError, match="real token"):
        plots.pooling_diagram(["<pad>", "a"])
    with pytest.raises(ValueError, match="square"):
        plots.plot_confusion([[1, 2]])
    with pytest.raises(ValueError, match="labels"):
        plots.plot_confusion([[1, 2], [3, 4]], labels=("a",))
    with pytest.raises(ValueError, match="at least one"):
        plots.plot_finetune({})
    with pytest.raises(TypeError, match="FinetuneHistory"):
        plots.plot_finetune({"x": [1, 2]})
    with pytest.raises(ValueError, match="2 points for 3"):
        plots.plot_learning_curve([1, 2, 3], {"a": [0.1, 0.2]})
    with pytest.raises(ValueError, match="label counts"):
        plots.plot_learning_curve([], {})
    plt.close("all")
