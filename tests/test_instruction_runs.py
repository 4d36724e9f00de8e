"""Chapter 7's runs: the chapter model saved for chapter 8 (or made again), and the seed-spread command."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY_INSTRUCTION_RECIPE as RECIPE
from conftest import tiny_model, tiny_tokenizer

from gpt2_core.course import instruction_runs as runs


def test_the_chapter_model_is_saved_then_loaded_and_remade_when_the_recipe_changes(tiny_base, capsys):
    model, tokenizer, source = runs.chapter_model("cpu")
    assert source.startswith("trained again") and "training it again" in capsys.readouterr().out
    assert runs.chapter_model_dir().is_relative_to(tiny_base) and runs.chapter_model_dir().exists()
    again, tokenizer2, source2 = runs.chapter_model("cpu")
    assert source2.startswith("loaded from") and tokenizer2.n_vocab == tokenizer.n_vocab
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    _, _, source3 = runs.chapter_model("cpu", recipe=runs.InstructionRecipe(steps=3, batch_size=4, train_records=12,
                                                                             eval_every=200))
    assert source3.startswith("trained again")


def test_full_fine_tuning_keeps_the_token_embedding_and_moves_the_rest():
    model = tiny_model(context_length=256, drop_rate=0.0)
    embedding, block = model.tok_emb.weight.detach().clone(), model.blocks[0].ff.fc.weight.detach().clone()
    sets = runs.instruction_sets(RECIPE)
    runs.full_fine_tune(model, tiny_tokenizer(), sets["train"], RECIPE, progress=False)
    assert torch.equal(model.tok_emb.weight, embedding) and model.out_head.weight is model.tok_emb.weight
    assert not torch.equal(model.blocks[0].ff.fc.weight, block)


def test_instruction_sets_shrink_as_the_recipe_says():
    sets = runs.instruction_sets(RECIPE)
    assert len(sets["train"]) == 12
    full = runs.instruction_sets(runs.InstructionRecipe())
    for name in (*runs.SETS, *runs.VALIDATION_SETS):
        assert sets[name] == full[name][::200]


def test_seed_spread_command_writes_every_method_and_seed(tiny_base, tmp_path):
    out = tmp_path / "spread.json"
    assert runs.main(["seed-spread", "--out", str(out), "--seeds", "1", "2"]) == 0
    result = json.loads(out.read_text())
    assert result["command"] == "python -m gpt2_core.course.instruction_runs seed-spread --seeds 1 2"
    assert result["seeds"] == [1, 2] and result["recipe"]["steps"] == 2
    assert set(result["methods"]) == set(runs.METHODS)
    for method in result["methods"].values():
        for key in (*runs.SETS, "format_compliance"):
            values = method[key]["values"]
            assert len(values) == 2 and all(0 <= v <= 1 for v in values)
            assert method[key]["mean"] == pytest.approx(sum(values) / 2)


def test_mix_search_scores_each_share_on_the_validation_sets_only(tiny_base, tmp_path):
    out = tmp_path / "mix.json"
    assert runs.main(["mix-search", "--out", str(out), "--shares", "0", "0.5", "--seeds", "3"]) == 0
    result = json.loads(out.read_text())
    assert result["command"] == "python -m gpt2_core.course.instruction_runs mix-search --shares 0 0.5 --seeds 3"
    assert result["shares"] == [0.0, 0.5] and result["seed"] == 3 and set(result["runs"]) == {"0.0", "0.5"}
    sets = runs.instruction_sets(RECIPE)
    for run in result["runs"].values():
        assert set(run) == set(runs.VALIDATION_SETS)
        for name, scores in run.items():
            assert scores["n"] == len(sets[name]) == len(scores["correct"])
            assert all(isinstance(c, bool) for c in scores["correct"]) and 0 <= scores["supported"] <= 1


def _piece(command: str, **fields: object) -> dict:
    return {"measured": "2026-12-06", "profile": "default", "command": command, "torch_threads": 1,
            "base_model": "reference", "recipe": {"steps": 2}, "seconds": 10.0, **fields}


def test_merge_joins_pieces_of_one_command_and_refuses_others(tmp_path):
    prog = "python -m gpt2_core.course.instruction_runs"
    a = _piece(f"{prog} seed-spread --seeds 1", seeds=[1], methods={"LoRA": {"test": {"values": [0.5]}}})
    b = _piece(f"{prog} seed-spread --seeds 2 3", seeds=[2, 3], methods={"LoRA": {"test": {"values": [0.7, 0.6]}}})
    merged = runs.merge_measurements([a, b])
    assert merged["command"] == f"{prog} seed-spread --seeds 1 2 3" and merged["seeds"] == [1, 2, 3]
    test = merged["methods"]["LoRA"]["test"]
    assert test["values"] == [0.5, 0.7, 0.6] and test["mean"] == pytest.approx(0.6)
    assert test["std"] == pytest.approx(0.1) and len(merged["measured_in"]) == 2 and merged["seconds"] == 20.0
    m1 = _piece(f"{prog} mix-search --shares 0.5 --seeds 9", seed=9, shares=[0.5], runs={"0.5": {"x": 1}})
    m2 = _piece(f"{prog} mix-search --shares 0 --seeds 9", seed=9, shares=[0.0], runs={"0.0": {"x": 2}})
    mix = runs.merge_measurements([m1, m2])
    assert mix["command"] == f"{prog} mix-search --shares 0 0.5 --seeds 9" and list(mix["runs"]) == ["0.0", "0.5"]
    with pytest.raises(ValueError, match="cannot merge a mix search with a seed spread"):
        runs.merge_measurements([a, m1])
    with pytest.raises(ValueError, match="different seed"):
        runs.merge_measurements([m1, {**m2, "seed": 8}])
    with pytest.raises(ValueError, match="a share is measured in two pieces"):
        runs.merge_measurements([m1, m1])
    with pytest.raises(ValueError, match="a seed is measured in two pieces"):
        runs.merge_measurements([a, a])
    with pytest.raises(ValueError, match="at least 2"):
        runs.merge_measurements([a])
    out = tmp_path / "m.json"
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    assert runs.main(["merge", "--parts", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["seeds"] == [1, 2, 3]
