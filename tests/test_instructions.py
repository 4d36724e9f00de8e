"""Tests for gpt2_core.instructions: generator, loader, prompt format, masked collate, scoring."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2_core.bpe_ranks import ENDOFTEXT_ID
from gpt2_core.config import GPTConfig
from gpt2_core.instructions import (
    FAMILIES,
    PROMPT_HEADER,
    InstructionDataset,
    dump_records,
    evaluate_exact_match,
    extract_response,
    format_prompt,
    generate_response,
    generate_responses,
    instruction_collate,
    instruction_loss,
    load_alpaca_json,
    load_instruction_data,
    make_instruction_data,
    normalise_answer,
    number_to_words,
    plural,
    president_by_year,
    split_records,
    write_instruction_data,
)
from gpt2_core.model import GPTModel
from gpt2_core.profile import data_dir
from gpt2_core.tokenizer import gpt2_encoding


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return make_instruction_data()


@pytest.fixture(scope="module")
def enc():
    return gpt2_encoding()


@pytest.fixture(scope="module")
def tiny_model() -> GPTModel:
    torch.manual_seed(0)
    return GPTModel(GPTConfig.preset("tiny", context_length=128, drop_rate=0.0)).eval()


# --------------------------------------------------------------------------- generator
def test_committed_file_equals_regenerated(records):
    committed = (data_dir() / "instructions.json").read_text(encoding="utf-8")
    assert committed == dump_records(records), "run python -c 'from gpt2_core.instructions import " \
                                               "write_instruction_data as w; w()' to regenerate"


def test_generator_is_deterministic_and_seed_dependent(records):
    assert make_instruction_data(60, seed=3) == make_instruction_data(60, seed=3)
    assert make_instruction_data(60, seed=3) != make_instruction_data(60, seed=4)
    assert len(records) >= 1000


def test_families_sizes_and_uniqueness(records):
    counts = Counter(r["family"] for r in records)
    assert set(counts) == set(FAMILIES) and len(counts) >= 10
    assert min(counts.values()) >= 50
    keys = [(r["instruction"], r["input"]) for r in records]
    assert len(keys) == len(set(keys))
    for r in records:
        assert set(r) == {"instruction", "input", "output", "family"}
        assert all(isinstance(v, str) for v in r.values()) and r["output"]


def test_answers_are_correct(records):
    years = president_by_year()
    for r in records:
        fam, x, y = r["family"], r["input"], r["output"]
        if fam == "upper":
            assert y == x.upper()
        elif fam == "lower":
            assert y == x.lower()
        elif fam == "reverse_words":
            assert y.split() == x.split()[::-1]
        elif fam == "sort_numbers":
            assert [int(v) for v in y.split()] == sorted(int(v) for v in x.split())
        elif fam == "arithmetic":
            a, op, b = x.split()
            assert int(y) == (int(a) + int(b) if op == "+" else int(a) - int(b))
        elif fam == "count_words":
            assert int(y) == len(x.split())
        elif fam == "extract_year":
            assert y in x and len(y) == 4
        elif fam == "sotu_president":
            assert years[int(r["instruction"].split()[-1].rstrip("?"))] == y
        elif fam == "first_word":
            assert y == x.split()[0]
        elif fam == "last_word":
            assert y == x.split()[-1]
        elif fam == "spell_number":
            assert y == number_to_words(int(x))
        elif fam == "plural":
            assert y == plural(x)


def test_president_years_skip_double_addresses():
    from gpt2_core.corpus import load_addresses

    per_year = Counter(a.year for a in load_addresses())
    doubles = {y for y, n in per_year.items() if n > 1}
    assert doubles and not doubles & set(president_by_year())


def test_number_to_words_and_plural():
    assert [number_to_words(n) for n in (0, 13, 20, 42, 99)] == [
        "zero", "thirteen", "twenty", "forty-two", "ninety-nine"]
    assert [plural(w) for w in ("nation", "tax", "church", "army", "day")] == [
        "nations", "taxes", "churches", "armies", "days"]
    with pytest.raises(ValueError, match="0-99"):
        number_to_words(100)


def test_generator_errors():
    with pytest.raises(ValueError, match="positive"):
        make_instruction_data(0)
    with pytest.raises(TypeError, match="seed"):
        make_instruction_data(10, seed="x")


def test_write_instruction_data(tmp_path):
    path = write_instruction_data(tmp_path / "x.json", n=24, seed=1)
    assert load_alpaca_json(path) == make_instruction_data(24, seed=1)


# --------------------------------------------------------------------------- loader
def _write(tmp_path, data, raw: str | None = None):
    path = tmp_path / "d.json"
    path.write_text(raw if raw is not None else json.dumps(data), encoding="utf-8")
    return path


def test_load_alpaca_json_defaults_input(tmp_path):
    data = [{"instruction": "a", "output": "b"}, {"instruction": "c", "input": None, "output": "d"}]
    path = _write(tmp_path, data)
    assert load_alpaca_json(path) == [{"instruction": "a", "output": "b", "input": ""},
                                      {"instruction": "c", "input": "", "output": "d"}]
    assert load_instruction_data() == load_alpaca_json(data_dir() / "instructions.json")


@pytest.mark.parametrize("data, match", [
    ({"instruction": "a"}, "JSON list"),
    (["text"], "record 0 .* JSON object"),
    ([{"instruction": "a", "output": "b"}, {"output": "b"}], "record 1 .*'instruction'"),
    ([{"instruction": "a"}], "record 0 .*'output'"),
    ([{"instruction": 3, "output": "b"}], "record 0 .*'instruction' must be a string"),
    ([{"instruction": "a", "input": 5, "output": "b"}], "record 0 .*'input' must be a string"),
])
def test_load_alpaca_json_errors(tmp_path, data, match):
    with pytest.raises(ValueError, match=match):
        load_alpaca_json(_write(tmp_path, data))


def test_load_alpaca_json_bad_file(tmp_path):
    with pytest.raises(ValueError, match="not valid JSON"):
        load_alpaca_json(_write(tmp_path, None, raw="[{"))
    with pytest.raises(FileNotFoundError, match="no Alpaca JSON"):
        load_alpaca_json(tmp_path / "missing.json")


# --------------------------------------------------------------------------- split
def test_split_is_stratified_disjoint_and_fixed(records):
    train, test = split_records(records, 0.2, seed=5)
    assert len(train) + len(test) == len(records)
    assert not {id(r) for r in train} & {id(r) for r in test}
    by_all, by_test = Counter(r["family"] for r in records), Counter(r["family"] for r in test)
    for fam, n in by_all.items():
        assert by_test[fam] == round(0.2 * n)
    assert split_records(records, 0.2, seed=5) == (train, test)
    assert split_records(records, 0.2, seed=6)[1] != test


def test_split_errors(records):
    for bad in (1.0, -0.1, "0.2"):
        with pytest.raises(ValueError, match="test_fraction"):
            split_records(records, bad)


# --------------------------------------------------------------------------- prompt format
def test_format_prompt_with_and_without_input():
    with_input = format_prompt({"instruction": "Do it.", "input": "x y", "output": "z"})
    assert with_input == f"{PROMPT_HEADER}\n\n### Instruction:\nDo it.\n\n### Input:\nx y\n\n### Response:\n"
    without = format_prompt({"instruction": "Do it.", "input": ""})
    assert "### Input:" not in without and without.endswith("### Instruction:\nDo it.\n\n### Response:\n")
    assert format_prompt({"instruction": "Do it."}) == without
    assert PROMPT_HEADER.startswith("Below is an instruction that describes a task")


def test_format_prompt_errors():
    with pytest.raises(TypeError, match="dict"):
        format_prompt("text")
    with pytest.raises(ValueError, match="instruction"):
        format_prompt({"input": "x"})


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="#"), max_size=30).map(str.strip))
def test_extract_response_roundtrip(answer):
    prompt = format_prompt({"instruction": "Say it.", "input": "q"})
    assert extract_response(prompt + answer) == answer
    assert extract_response(prompt + answer + "<|endoftext|>junk") == answer
    assert extract_response(prompt + answer + "\n\n### Instruction:\nmore") == answer


def test_extract_response_plain_and_errors():
    assert extract_response("  just text \n") == "just text"
    with pytest.raises(TypeError):
        extract_response(None)


# --------------------------------------------------------------------------- dataset and collate
def test_dataset_items(enc):
    recs = [{"instruction": "Say hi.", "input": "", "output": "hi"}]
    ds = InstructionDataset(recs, enc)
    ids, prompt_len = ds[0]
    assert enc.decode(ids) == format_prompt(recs[0]) + "hi"
    assert prompt_len == len(enc.encode(format_prompt(recs[0])))
    assert len(ds) == 1 and ds.lengths() == [len(ids)]
    with pytest.raises(TypeError, match="encode"):
        InstructionDataset(recs, object())
    with pytest.raises(ValueError, match="output"):
        InstructionDataset([{"instruction": "x"}], enc)


def test_collate_pads_shifts_and_masks():
    batch = [([1, 2, 3, 4, 5], 3), ([6, 7], 1)]
    x, y = instruction_collate(batch)
    eot = ENDOFTEXT_ID
    assert x.tolist() == [[1, 2, 3, 4, 5], [6, 7, eot, eot, eot]]
    assert y.tolist() == [[2, 3, 4, 5, eot], [7, eot, -100, -100, -100]]
    x, y = instruction_collate(batch, mask_prompt=True)
    # row 0: prompt is [1, 2, 3] -> targets predicting 2 and 3 are masked, first target is 4
    assert y.tolist() == [[-100, -100, 4, 5, eot], [7, eot, -100, -100, -100]]
    x, y = instruction_collate([[1, 2, 3], [4]], pad_id=0, ignore_index=-1, max_length=2)
    assert x.tolist() == [[1, 2], [4, eot]] and y.tolist() == [[2, 3], [eot, -1]]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.integers(0, 50000), min_size=1, max_size=12), min_size=1, max_size=5))
def test_collate_properties(seqs):
    x, y = instruction_collate(seqs)
    width = max(map(len, seqs))
    assert x.shape == y.shape == (len(seqs), width)
    for row, ids in enumerate(seqs):
        assert x[row, : len(ids)].tolist() == ids
        assert y[row, : len(ids) - 1].tolist() == ids[1:]
        assert y[row, len(ids) - 1].item() == ENDOFTEXT_ID  # the first end-of-text is a target
        assert (y[row, len(ids):] == -100).all()


def test_collate_errors():
    with pytest.raises(ValueError, match="empty batch"):
        instruction_collate([])
    with pytest.raises(ValueError, match="mask_prompt"):
        instruction_collate([[1, 2]], mask_prompt=True)
    with pytest.raises(ValueError, match="max_length"):
        instruction_collate([[1, 2]], max_length=0)
    with pytest.raises(ValueError, match="no tokens"):
        instruction_collate([[]])
    with pytest.raises(TypeError, match="list of ids"):
        instruction_collate(["abc"])


def test_collate_device():
    x, y = instruction_collate([[1, 2]], device="cpu")
    assert x.device.type == y.device.type == "cpu" and x.dtype == torch.long


# --------------------------------------------------------------------------- loss
def test_instruction_loss_matches_full_cross_entropy(tiny_model):
    x, y = instruction_collate([([5, 6, 7, 8, 9], 2), ([10, 11, 12], 1)], mask_prompt=True)
    want = F.cross_entropy(tiny_model(x).flatten(0, 1), y.flatten(), ignore_index=-100)
    assert torch.allclose(instruction_loss(tiny_model, x, y), want, atol=1e-5)

    class Plain(torch.nn.Module):  # any other model goes through model(inputs)
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, idx):
            return self.inner(idx)

    assert torch.allclose(instruction_loss(Plain(tiny_model), x, y), want, atol=1e-5)
    with pytest.raises(ValueError, match="ignore_index"):
        instruction_loss(tiny_model, x, torch.full_like(y, -100))


# --------------------------------------------------------------------------- generation and scoring
def test_generate_responses_match_one_by_one(tiny_model, enc, records):
    some = records[:6]
    batched = generate_responses(tiny_model, enc, some, max_new_tokens=4, batch_size=4)
    single = [generate_response(tiny_model, enc, r, max_new_tokens=4) for r in some]
    assert batched == single and all(isinstance(a, str) for a in batched)
    with pytest.raises(ValueError, match="batch_size"):
        generate_responses(tiny_model, enc, some, batch_size=0)


def test_normalise_answer():
    assert normalise_answer("  forty-two. ") == "forty-two"
    assert normalise_answer("a\n b") == "a b"
    assert normalise_answer("ABC") != normalise_answer("abc")


def test_evaluate_exact_match_table(tiny_model, enc, records):
    some = [r for r in records if r["family"] in ("upper", "plural")][:4] + \
           [r for r in records if r["family"] == "plural"][:2]
    preds = [r["output"] + "." for r in some[:3]] + ["wrong"] * 3
    table = evaluate_exact_match(tiny_model, enc, some, predictions=preds)
    assert list(table.columns) == ["family", "n", "correct", "accuracy"]
    overall = table.set_index("family").loc["overall"]
    assert overall["n"] == 6 and overall["correct"] == 3 and overall["accuracy"] == 0.5
    assert table["n"].iloc[:-1].sum() == 6
    generated = evaluate_exact_match(tiny_model, enc, some[:2], max_new_tokens=3)
    assert generated["n"].iloc[-1] == 2
    with pytest.raises(ValueError, match="predictions"):
        evaluate_exact_match(tiny_model, enc, some, predictions=["x"])
    with pytest.raises(ValueError, match="no records"):
        evaluate_exact_match(tiny_model, enc, [])
