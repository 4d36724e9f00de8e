"""gpt2_core.figures: chapter 7's two diagrams (loss mask, LoRA) draw, are labelled, and reject bad shapes."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from gpt2_core.figures import lora_diagram, loss_mask_diagram  # noqa: E402


def test_loss_mask_diagram():
    ax = loss_mask_diagram(["Q", "?", " Answer", ":", " yes"], 4).axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert texts.count("-100") == 3 and "<eot>" in texts and "␣yes" in texts
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    plt.close("all")


def test_lora_diagram_shows_that_a_b_has_the_shape_of_w_transposed():
    from matplotlib.patches import Rectangle

    ax = lora_diagram(256, 768, 16).axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert any("16,384" in t for t in texts) and ax.get_title()
    assert any("A·B: 256 x 768" in t and "the shape of Wᵀ" in t for t in texts)
    w, a, b, ab = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert (ab.get_width(), ab.get_height()) == pytest.approx((w.get_width(), w.get_height()))  # same shape
    assert a.get_height() == pytest.approx(ab.get_height()) and a.get_x() + a.get_width() < ab.get_x()  # A: its rows
    assert b.get_width() == pytest.approx(ab.get_width()) and b.get_y() > ab.get_y() + ab.get_height()  # B: columns
    assert a.get_width() / w.get_height() == pytest.approx(16 / 256)  # to scale
    plt.close("all")


@pytest.mark.parametrize("tokens, prompt_len", [(["a"], 1), (["a", "b"], 0), (["a", "b"], 2)])
def test_loss_mask_errors(tokens, prompt_len):
    with pytest.raises(ValueError, match="prompt_len"):
        loss_mask_diagram(tokens, prompt_len)


@pytest.mark.parametrize("args, match", [((0, 4, 1), "d_in"), ((4, 4, 8), "larger"), ((4, 4, True), "rank")])
def test_lora_diagram_errors(args, match):
    with pytest.raises((TypeError, ValueError), match=match):
        lora_diagram(*args)
