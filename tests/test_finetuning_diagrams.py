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


def test_lora_diagram():
    ax = lora_diagram(256, 768, 8).axes[0]
    assert any("8,192" in t.get_text() for t in ax.texts)
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    plt.close("all")


@pytest.mark.parametrize("tokens, prompt_len", [(["a"], 1), (["a", "b"], 0), (["a", "b"], 2)])
def test_loss_mask_errors(tokens, prompt_len):
    with pytest.raises(ValueError, match="prompt_len"):
        loss_mask_diagram(tokens, prompt_len)


@pytest.mark.parametrize("args, match", [((0, 4, 1), "d_in"), ((4, 4, 8), "larger"), ((4, 4, True), "rank")])
def test_lora_diagram_errors(args, match):
    with pytest.raises((TypeError, ValueError), match=match):
        lora_diagram(*args)
