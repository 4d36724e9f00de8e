"""Chapter 8's runs: one budget for every method, the recipe variants, and the measurements' merge."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import CharTokenizer, tiny_char_model

from gpt2_core.course import reward_runs
from gpt2_core.course.reward_runs import REWARDS, VARIANTS, RewardRecipe, merge, run_grpo, run_methods

RECORDS = [{"instruction": "Repeat the word.", "input": w, "output": w, "family": "first_word"} for w in
           ("cat", "dog", "sun", "map")]


def test_grpo_takes_as_many_optimizer_steps_of_as_many_sequences_as_the_offline_methods():
    recipe = RewardRecipe()
    assert recipe.minibatches * recipe.batch == recipe.questions * recipe.k  # one sampling step, whole batches
    assert recipe.sampling_steps * recipe.minibatches == recipe.steps
    assert recipe.sampling_steps * recipe.questions * recipe.k == recipe.steps * recipe.batch
    small = RewardRecipe(questions=2, k=4, batch=32, steps=10)
    assert small.minibatches == 1 and small.sampling_steps == 10  # fewer sequences than a batch: one step each


def test_every_variant_names_real_recipe_fields_and_rewards():
    fields = {f.name for f in dataclasses.fields(RewardRecipe)}
    for name, (method, changes) in VARIANTS.items():
        assert method in reward_runs.SPREAD_METHODS, name
        assert set(changes) <= fields, name
        assert dataclasses.replace(RewardRecipe(), **changes).reward in REWARDS


def test_grpo_run_counts_its_budget_and_tracks_validation():
    tok = CharTokenizer()
    start = tiny_char_model()
    recipe = RewardRecipe(k=4, questions=2, batch=4, steps=4, lr=1e-3, track_every=2)  # 2 minibatches a step
    seen = []
    model, history = run_grpo(start, tiny_char_model(), tok, RECORDS, recipe, seed=1, progress=False,
                              metrics_fn=lambda m: seen.append(m) or {"validation": 0.0})
    assert model is not start and len(history.steps) == recipe.sampling_steps == 2
    assert history.eval_steps == [1, 2] and all(m is model for m in seen)
    assert not model.tok_emb.weight.requires_grad  # chapter 7's frozen embedding stays frozen


def test_run_methods_rejects_an_unknown_method(monkeypatch):
    monkeypatch.setattr(reward_runs, "training_pool", lambda recipe: RECORDS)
    with pytest.raises(ValueError, match="unknown method"):
        run_methods(tiny_char_model(), CharTokenizer(), RewardRecipe(k=2), 0, ["PPO"])


def _part(seeds, values, command="python -m gpt2_core.course.reward_runs seed-spread"):
    return {"measured": "2026-12-06", "profile": "default", "command": command, "torch_threads": 1, "seconds": 10.0,
            "recipe": {"lr": 2e-5}, "start_model": "loaded", "seeds": seeds, "start_exact_match_supported": 0.7,
            "start": {"test": 0.7}, "n": {"test": 800},
            "methods": {"GRPO": {"test": {"values": values, "mean": sum(values) / len(values), "std": 0.0}}}}


def test_merge_joins_seed_pieces_into_one_spread_and_refuses_mismatches():
    merged = merge([_part([123, 7], [0.70, 0.72]), _part([2024], [0.74])])
    test = merged["methods"]["GRPO"]["test"]
    assert merged["seeds"] == [123, 7, 2024] and test["values"] == [0.70, 0.72, 0.74]
    assert test["mean"] == pytest.approx(0.72) and test["std"] == pytest.approx(0.02)
    assert merged["start_exact_match_supported"] == 0.7 and merged["command"].endswith("--seeds 123 7 2024")
    with pytest.raises(ValueError, match="two pieces"):
        merge([_part([123], [0.7]), _part([123], [0.7])])
    other = {**_part([7], [0.7]), "recipe": {"lr": 1e-4}}
    with pytest.raises(ValueError, match="recipe"):
        merge([_part([123], [0.7]), other])
    with pytest.raises(ValueError, match="at least 2"):
        merge([_part([123], [0.7])])


def test_greedy_tracker_scores_only_the_supported_families():
    tok, model = CharTokenizer(), tiny_char_model()
    records = RECORDS + [{**RECORDS[0], "family": "president"}]
    metrics_fn = reward_runs.greedy_tracker(tok, records, 3)
    with torch.no_grad():
        assert metrics_fn(model) == {"validation": 0.0}  # an untrained model ends no answer


def test_the_pool_mixes_in_procedure_questions_never_asked_before():
    recipe = RewardRecipe(pool=40, procedure_share=0.5)
    pool = reward_runs.training_pool(recipe)
    assert len(pool) == 40 and sum(r.get("source") == "procedure" for r in pool) == 20
    asked = {(r["instruction"], r["input"]) for records in reward_runs.ch7.instruction_sets(
        reward_runs.ch7.InstructionRecipe()).values() for r in records}
    assert not any((r["instruction"], r["input"]) in asked for r in pool)
    assert not any(r.get("source") == "procedure" for r in reward_runs.training_pool(RewardRecipe(pool=40)))


def test_a_history_without_an_update_at_some_step_writes_null_not_nan():
    from gpt2_core.finetuning.grpo import GRPOHistory

    history = GRPOHistory(steps=[1, 2], losses=[float("nan"), 0.5], kl=[float("nan"), 0.01], reward=[0.1, 0.2])
    written = reward_runs._history_dict(history)
    assert written["losses"] == [None, 0.5] and written["kl"] == [None, 0.01] and written["reward"] == [0.1, 0.2]
    assert "lrs" not in written  # only the curves a notebook draws
