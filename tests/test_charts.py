"""gpt2_core.figures: the charts (chapter 6's results, attention heads, sampling), labels placed beside
points, and the pooling diagram draw, carry titles and axis labels, and refuse malformed input."""

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
    _labelled(plots.plot_learning_curve([16, 64], {"a": [0.6, 0.8]}, spread={"a": [0.05, 0.01]}))
    fig = plots.plot_lengths({"ham": [10, 50, 300], "spam": [5, 129, 2000]}, 128)
    assert all(ax.get_title(loc="left") and ax.get_ylabel() for ax in fig.axes) and fig.axes[-1].get_xlabel()
    plt.close(fig)


def test_plot_lengths_counts_texts_per_group_in_panels_of_their_own():
    lengths = {"easy": [100, 120, 130, 3000], "hard": [2000]}  # a one-text group must read as one text
    fig = plots.plot_lengths(lengths, 128)
    for ax, (name, values) in zip(fig.axes, lengths.items(), strict=True):
        assert sum(p.get_height() for p in ax.patches) == len(values)  # counts, not densities
        assert ax.get_title(loc="left").startswith(f"{name}: {len(values)} texts, {sum(n > 128 for n in values)}")
        assert [line.get_xdata()[0] for line in ax.lines] == [128]  # the context, in every panel
    assert not fig.axes[0].get_legend()  # no legend to cover anything
    plt.close(fig)
    with pytest.raises(ValueError, match="non-empty"):
        plots.plot_lengths({"a": []}, 128)
    with pytest.raises(ValueError, match="window must be >= 1"):
        plots.plot_lengths({"a": [3]}, 0)


def test_learning_curve_draws_an_error_bar_per_point_with_the_methods_apart():
    fig = plots.plot_learning_curve([16, 64], {"a": [0.6, 0.8], "b": [0.7, 0.9]}, spread={"a": [0.05, 0.01]})
    ax = fig.axes[0]
    lines = [c.lines[0] for c in ax.containers]
    assert [list(line.get_ydata()) for line in lines] == [[60.0, 80.0], [70.0, 90.0]]
    xs_a, xs_b = lines[0].get_xdata(), lines[1].get_xdata()
    assert all(a < b for a, b in zip(xs_a, xs_b, strict=True))  # nudged apart, in order
    assert ax.containers[0].has_yerr and not ax.containers[1].has_yerr  # only "a" has a spread
    plt.close(fig)


def test_label_points_keeps_labels_apart():
    fig, ax = plt.subplots(figsize=(4, 3))
    xy = [(0, 0), (0.01, 0.0), (0.02, 0.01), (1, 1), (0.5, 0.5)]  # three points almost on top of each other
    ax.scatter(*zip(*xy, strict=True))
    ax.margins(0.3)
    notes = plots.label_points(ax, xy, ["France", "Russia", "Germany", "far", "middle"])
    extents = [n.get_window_extent() for n in notes]
    assert [n.get_text() for n in notes] == ["France", "Russia", "Germany", "far", "middle"]
    assert not any(a.overlaps(b) for i, a in enumerate(extents) for b in extents[i + 1:])
    with pytest.raises(ValueError, match="as many labels"):
        plots.label_points(ax, xy, ["a"])
    plt.close(fig)


def test_plot_attention_heads_draws_each_head_with_every_token():
    import torch

    weights = torch.softmax(torch.randn(3, 5, 5), -1)
    fig = plots.plot_attention_heads(weights, ["a", "b", "c", "d", "e"], "three heads", columns=2)
    shown = [ax for ax in fig.axes if ax.get_visible() and ax.get_title().startswith("head")]
    assert [ax.get_title() for ax in shown] == ["head 1", "head 2", "head 3"]
    assert fig.get_suptitle() == "three heads"
    assert [t.get_text() for t in shown[0].get_yticklabels()] == ["a", "b", "c", "d", "e"]
    assert shown[0].images[0].get_array().ravel().tolist() == pytest.approx(weights[0].ravel().tolist())
    with pytest.raises(ValueError, match="one label per token"):
        plots.plot_attention_heads(weights, ["a"], "t")
    plt.close("all")


def test_plot_sampling_counts_what_top_k_and_top_p_keep():
    import torch

    from gpt2_core.model.generation import top_k_filter, top_p_filter

    logits = torch.tensor([3.0, 2.5, 2.0, 1.0, 0.5, 0.0, -1.0, -2.0])
    fig = plots.plot_sampling(logits, [f"t{i}" for i in range(8)], top_k=2, top_p=0.8, show=6)
    kept_p = int(torch.isfinite(top_p_filter(logits, 0.8)).sum())
    kept_k = int(torch.isfinite(top_k_filter(logits, 2)).sum())
    assert fig.axes[1].get_title() == f"top-k keeps {kept_k} tokens, top-p keeps {kept_p}"
    temperature_bars = [p.get_height() for p in fig.axes[0].patches]
    assert len(temperature_bars) == 3 * 6  # 6 tokens under each of 3 temperatures
    sharp = torch.softmax(logits / 0.5, -1)[0].item()
    assert temperature_bars[0] == pytest.approx(sharp)
    _labelled(fig)
    with_names = plots.plot_sampling(logits, lambda i: f"<{i}>", show=3)
    assert [t.get_text() for t in with_names.axes[0].get_xticklabels()] == ["<0>", "<1>", "<2>"]
    plt.close("all")


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(logits=[[1.0, 2.0]]), ValueError, "1-D"),
    (dict(labels=["a"]), ValueError, "as many labels"),
    (dict(temperatures=(0.0,)), ValueError, "> 0"),
    (dict(top_k=0), ValueError, "top_k"),
    (dict(top_p=1.5), ValueError, "top_p"),
    (dict(temperatures=()), ValueError, "temperature")])
def test_plot_sampling_errors(kwargs, error, match):
    args = dict(logits=[1.0, 2.0, 0.5], labels=["a", "b", "c"]) | kwargs
    with pytest.raises(error, match=match):
        plots.plot_sampling(**args)


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


def test_runs_sharing_a_schedule_share_one_learning_rate_line():
    from types import SimpleNamespace
    a = SimpleNamespace(steps=[1, 2, 3], losses=[3.0, 2.0, 1.0], lrs=[1e-4, 2e-4, 1e-4])
    b = SimpleNamespace(steps=[1, 2, 3], losses=[3.5, 2.5, 2.0], lrs=[1e-4, 2e-4, 1e-4])
    c = SimpleNamespace(steps=[1, 2], losses=[1.0, 0.5], lrs=[1e-3, 1e-3])
    fig = plots.plot_finetune({"a": a, "b": b})
    ax_loss, ax_lr = fig.axes
    assert len(ax_loss.lines) == 2 and [line.get_label() for line in ax_lr.lines] == ["all runs"]
    fig = plots.plot_finetune({"a": a, "b": b, "c": c})
    assert [line.get_label() for line in fig.axes[1].lines] == ["a, b", "c"]


def test_family_scores_mark_a_zero_bar_and_keep_the_legend_clear_of_the_bars():
    scores = {"a": {"x": 0.5, "y": 0.0, "z": 0.9}, "b": {"x": 0.7, "y": 0.2, "z": 0.0}}
    fig = plots.plot_family_scores(scores, ["x", "y", "z"], divider_after="y", title="t")
    ax = fig.axes[0]
    assert len(ax.patches) == 6
    zero_marks = [line for line in ax.lines if line.get_marker() == "_"]
    assert sorted(len(line.get_xdata()) for line in zero_marks) == [1, 1]  # one zero bar per run
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert all(not legend.overlaps(p.get_window_extent()) for p in ax.patches)
    with pytest.raises(ValueError, match="at least one"):
        plots.plot_family_scores({}, ["x"])


def test_save_figure_writes_a_whole_png_atomically(tmp_path):
    from gpt2_core.figures import save_figure

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    target = tmp_path / "out" / "curve.png"
    target.parent.mkdir()
    target.write_bytes(b"an older picture")
    assert save_figure(fig, target) == target
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and list(target.parent.iterdir()) == [target]
    plt.close(fig)
