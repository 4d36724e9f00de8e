"""Tests for gpt2_core.instruction_prompts: prompt formats, dataset, masked collate, loader, loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import CharTokenizer, tiny_char_model
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2_core.finetuning.instruction_prompts import (
    ALPACA_HEADER,
    InstructionDataset,
    answer_text,
    format_alpaca,
    format_prompt,
    instruction_collate,
    instruction_loader,
)
from gpt2_core.pretraining.step import lm_loss

REC = {"instruction": "What is the last word?", "input": "nation army law", "output": "law"}


def test_compact_prompt_and_answer():
    assert format_prompt(REC) == "What is the last word? Input: nation army law Answer:"
    assert format_prompt({"instruction": "Say hi.", "input": ""}) == "Say hi. Answer:"
    assert format_prompt({"instruction": "Say hi."}) == "Say hi. Answer:"
    assert answer_text(REC) == " law"


def test_alpaca_prompt():
    assert format_alpaca(REC) == (f"{ALPACA_HEADER}\n\n### Instruction:\nWhat is the last word?\n\n"
                                  "### Input:\nnation army law\n\n### Response:\n")
    assert "### Input:" not in format_alpaca({"instruction": "Say hi."})


@pytest.mark.parametrize("bad, err, match", [
    ("text", TypeError, "dict"),
    ({"input": "x"}, ValueError, "instruction"),
    ({"instruction": "x", "input": 3}, ValueError, "input"),
    ({"instruction": "say <|endoftext|>"}, ValueError, "end-of-text"),
])
def test_prompt_errors(bad, err, match):
    with pytest.raises(err, match=match):
        format_prompt(bad)
    with pytest.raises(err, match=match):
        format_alpaca(bad)


def test_answer_text_errors():
    with pytest.raises(ValueError, match="output"):
        answer_text({"instruction": "x"})
    with pytest.raises(ValueError, match="end-of-text"):
        answer_text({"instruction": "x", "output": "a<|endoftext|>"})


def test_dataset_items():
    tok = CharTokenizer()
    ds = InstructionDataset([REC], tok, context_length=96)
    ids, prompt_len = ds[0]
    assert tok.decode(ids) == format_prompt(REC) + " law"
    assert prompt_len == len(format_prompt(REC)) and len(ds) == 1 and ds.lengths() == [len(ids)]
    assert ds.eot_id == 95 and ds.records == [REC]
    alpaca = InstructionDataset([REC], tok, context_length=200, prompt_format=format_alpaca)
    assert alpaca[0][1] == len(format_alpaca(REC))


def test_dataset_too_long_is_an_error_or_counted():
    tok = CharTokenizer()
    need = len(format_prompt(REC)) + len(" law") + 1
    InstructionDataset([REC], tok, context_length=need)  # fits exactly, with its end-of-text
    with pytest.raises(ValueError, match="context_length"):
        InstructionDataset([REC], tok, context_length=need - 1)
    short = {"instruction": "Hi?", "output": "yo"}
    ds = InstructionDataset([REC, short], tok, context_length=need - 1, too_long="skip")
    assert ds.skipped == 1 and ds.records == [short]
    with pytest.raises(ValueError, match="all 1 records"):
        InstructionDataset([REC], tok, context_length=need - 1, too_long="skip")


@pytest.mark.parametrize("args, err, match", [
    (([], CharTokenizer(), 96), ValueError, "no records"),
    (([REC], object(), 96), TypeError, "encode"),
    (([REC], CharTokenizer(), 1), ValueError, "context_length"),
    (([{"instruction": "x", "input": ""}], CharTokenizer(), 96), ValueError, "output"),
    (([{**REC, "input": "<|endoftext|>"}], CharTokenizer(), 96), ValueError, "end-of-text"),
])
def test_dataset_errors(args, err, match):
    with pytest.raises(err, match=match):
        InstructionDataset(*args)
    with pytest.raises(ValueError, match="too_long"):
        InstructionDataset([REC], CharTokenizer(), 96, too_long="cut")


def test_collate_pads_shifts_and_masks():
    batch = [([1, 2, 3, 4, 5], 3), ([6, 7], 1)]
    e = 9
    x, y = instruction_collate(batch, e, mask_prompt=False)
    assert x.tolist() == [[1, 2, 3, 4, 5], [6, 7, e, e, e]]
    assert y.tolist() == [[2, 3, 4, 5, e], [7, e, -100, -100, -100]]
    x, y = instruction_collate(batch, e)
    # row 0: prompt [1, 2, 3]; the targets 2 and 3 are prompt, 4 (predicted at position 2) is the answer
    assert y.tolist() == [[-100, -100, 4, 5, e], [7, e, -100, -100, -100]]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.integers(0, 90), min_size=1, max_size=12).flatmap(
    lambda ids: st.tuples(st.just(ids), st.integers(0, len(ids)))), min_size=1, max_size=5))
def test_collate_properties(batch):
    x, y = instruction_collate(batch, 95)
    width = max(len(ids) for ids, _ in batch)
    assert x.shape == y.shape == (len(batch), width)
    for row, (ids, p) in enumerate(batch):
        assert x[row, :len(ids)].tolist() == ids
        assert y[row, len(ids) - 1].item() == 95  # the end-of-text target is always kept
        assert (y[row, len(ids):] == -100).all()
        assert (y[row, :max(p - 1, 0)] == -100).all()
        assert y[row, max(p - 1, 0):len(ids) - 1].tolist() == ids[max(p, 1):]


def test_collate_errors():
    with pytest.raises(ValueError, match="empty batch"):
        instruction_collate([], 5)
    with pytest.raises(TypeError, match="eot_id"):
        instruction_collate([([1], 0)], None)
    with pytest.raises(TypeError, match="prompt_len"):
        instruction_collate([[1, 2]], 5)
    with pytest.raises(ValueError, match="prompt_len"):
        instruction_collate([([1, 2], 3)], 5)
    with pytest.raises(ValueError, match="at least one token"):
        instruction_collate([([], 0)], 5)


def test_loader_is_seeded_and_masked():
    tok = CharTokenizer()
    recs = [{"instruction": f"Q{i}?", "output": "a" * (i % 3 + 1)} for i in range(10)]
    ds = InstructionDataset(recs, tok, 96)
    first = [b[0].tolist() for b in instruction_loader(ds, 4, seed=1)]
    assert first == [b[0].tolist() for b in instruction_loader(ds, 4, seed=1)]
    x, y = next(iter(instruction_loader(ds, 4, shuffle=False)))
    assert x.shape[0] == 4 and (y[:, 0] == -100).all()
    with pytest.raises(TypeError, match="InstructionDataset"):
        instruction_loader([1, 2], 4)
    with pytest.raises(ValueError, match="batch_size"):
        instruction_loader(ds, 0)


def test_loss_is_the_models_own():
    model = tiny_char_model()
    batch = instruction_collate([([5, 6, 7, 8, 9], 2), ([10, 11, 12], 1)], 95)
    x, y = batch
    want = F.cross_entropy(model(x).flatten(0, 1), y.flatten(), ignore_index=-100)
    assert torch.allclose(lm_loss(model, batch), want, atol=1e-5)
    with pytest.raises(ValueError, match="nothing to learn"):
        lm_loss(model, (x, torch.full_like(y, -100)))
    with pytest.raises(TypeError, match="inputs, targets"):
        lm_loss(model, x)
    with pytest.raises(ValueError, match="shape"):
        lm_loss(model, (x, y[:, :2]))
