"""Tests for gpt2_core.instruction_figures: the two diagrams draw, are labelled, and reject bad shapes."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from gpt2_core.instruction_figures import draw_lora, draw_loss_mask  # noqa: E402


def test_loss_mask_diagram():
    ax = draw_loss_mask(["Q", "?", " Answer", ":", " yes"], 4)
    texts = [t.get_text() for t in ax.texts]
    assert texts.count("-100") == 3 and "<eot>" in texts and "␣yes" in texts
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    plt.close("all")


def test_lora_diagram():
    _, ax = plt.subplots()
    assert draw_lora(256, 768, 8, ax=ax) is ax
    assert any("8,192" in t.get_text() for t in ax.texts)
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    plt.close("all")


@pytest.mark.parametrize("tokens, prompt_len", [(["a"], 1), (["a", "b"], 0), (["a", "b"], 2)])
def test_loss_mask_errors(tokens, prompt_len):
    with pytest.raises(ValueError, match="prompt_len"):
        draw_loss_mask(tokens, prompt_len)


@pytest.mark.parametrize("args, match", [((0, 4, 1), "d_in"), ((4, 4, 8), "larger"), ((4, 4, True), "rank")])
def test_lora_diagram_errors(args, match):
    with pytest.raises(ValueError, match=match):
        draw_lora(*args)
