"""Tests for gpt2_core.pretraining.recipes (chapter 5's runs and the reference model's, one Recipe type) and
the base-model switch of chapters 6-8 (gpt2_core.course.reference.load_base_model)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from gpt2_core.course import reference
from gpt2_core.course.reference import BASE_MODEL_ENV, base_model_name, load_base_model
from gpt2_core.model.config import GPTConfig
from gpt2_core.model.gpt import GPTModel
from gpt2_core.pretraining.batches import eval_batches
from gpt2_core.pretraining.recipes import REFERENCE_RECIPE, Recipe, course_data, course_recipe, course_tokenizer
from gpt2_core.pretraining.step import mean_loss


def micro_recipe(**changes) -> Recipe:
    base = Recipe(preset="tiny", context_length=16, batch_size=2, max_steps=2, lr=1e-3, min_lr=1e-4, warmup_steps=1,
                  eval_every=0, eval_batches=2, train_chars=4000, val_chars=2000)
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize("profile, preset, layers", [("tiny", "tiny", 2), ("default", "default", 4),
                                                      ("gpt2", "gpt2", 12)])
def test_course_recipe_per_profile(profile, preset, layers):
    recipe = course_recipe(profile)
    assert recipe.preset == preset
    cfg = recipe.model_config(vocab_size=300)
    assert isinstance(cfg, GPTConfig) and cfg.n_layers == layers and cfg.vocab_size == 300
    assert cfg.context_length == recipe.context_length
    tc = recipe.train_config(progress=False)
    assert tc.max_steps == recipe.max_steps and tc.lr == recipe.lr and tc.progress is False
    assert recipe.warmup_steps < recipe.max_steps and recipe.min_lr < recipe.lr


def test_one_recipe_type_makes_the_reference_model_and_the_learners():
    assert isinstance(REFERENCE_RECIPE, Recipe)
    cfg = course_recipe("default").model_config(vocab_size=8192)
    assert cfg == REFERENCE_RECIPE.model_config(vocab_size=8192)  # the learner's model has the reference's shape
    assert REFERENCE_RECIPE.max_steps * REFERENCE_RECIPE.batch_size == 7 * course_recipe("default").max_steps * 32


def test_course_recipe_follows_the_active_profile(monkeypatch):
    monkeypatch.setenv("GPT2_COURSE_PROFILE", "tiny")
    assert course_recipe() == course_recipe("tiny")
    with pytest.raises(ValueError, match="profile"):
        course_recipe("huge")


def test_course_tokenizer_is_the_reference_one_except_under_gpt2():
    ref = reference.load_reference("cpu")[1]
    assert course_tokenizer("tiny").n_vocab == course_tokenizer("default").n_vocab == ref.n_vocab == 8192
    assert course_tokenizer("gpt2").n_vocab == 50257


def test_course_data_and_its_validation_loss():
    recipe = micro_recipe()
    tok = course_tokenizer("tiny")
    train_loader, val_loader = course_data(recipe, tok)
    x, y = next(iter(train_loader))
    assert x.shape == (2, 16) and torch.equal(x[:, 1:], y[:, :-1]) and int(x.max()) < tok.n_vocab
    torch.manual_seed(0)
    model = GPTModel(recipe.model_config(tok.n_vocab)).train()
    loss = mean_loss(model, eval_batches(val_loader.dataset, recipe.batch_size, recipe.eval_batches))
    assert abs(loss - math.log(tok.n_vocab)) < 0.5 and model.training  # near a uniform guess; mode restored


def test_base_model_name(monkeypatch):
    monkeypatch.delenv(BASE_MODEL_ENV, raising=False)
    assert base_model_name("default") == "reference" and base_model_name("tiny") == "reference"
    assert base_model_name("gpt2") == "gpt2"
    monkeypatch.setenv(BASE_MODEL_ENV, "GPT2")
    assert base_model_name("tiny") == "gpt2"
    monkeypatch.setenv(BASE_MODEL_ENV, "reference")
    assert base_model_name("gpt2") == "reference"
    monkeypatch.setenv(BASE_MODEL_ENV, "llama")
    with pytest.raises(ValueError, match=f"{BASE_MODEL_ENV}='llama'.*reference, gpt2"):
        base_model_name()


def test_load_base_model_reference(monkeypatch):
    monkeypatch.delenv(BASE_MODEL_ENV, raising=False)
    model, tok, name = load_base_model("cpu", "reference")
    assert name == "reference" and isinstance(model, GPTModel) and not model.training
    assert model.cfg.vocab_size == tok.n_vocab and tok.decode(tok.encode("The Union")) == "The Union"
    with pytest.raises(ValueError, match="unknown base model"):
        load_base_model("cpu", "gpt3")


def test_gpt2_base_model_falls_back_to_the_reference_when_offline(monkeypatch, capsys):
    from gpt2_core.model.hf_weights import WeightsDownloadError

    def offline(name, **kwargs):
        raise WeightsDownloadError("no network")

    monkeypatch.setattr(reference, "from_pretrained", offline)
    model, tok, name = load_base_model("cpu", "gpt2")
    assert name == "reference" and model.cfg.vocab_size == tok.n_vocab
    assert "not available" in capsys.readouterr().out


def test_gpt2_base_model_comes_with_gpt2s_tokenizer(monkeypatch):
    marker = GPTModel(GPTConfig(vocab_size=50257, context_length=4, emb_dim=8, n_heads=2, n_layers=1))
    monkeypatch.setattr(reference, "from_pretrained", lambda name, **kw: marker)
    model, tok, name = load_base_model("cpu", "gpt2")
    assert model is marker and not model.training and name == "gpt2" and tok.n_vocab == 50257


def test_the_chapter5_base_model_is_the_learners_checkpoint(tmp_path, monkeypatch, capsys):
    from conftest import tiny_model, tiny_tokenizer

    from gpt2_core.pretraining.checkpoint import save_checkpoint
    from gpt2_core.pretraining.recipes import learner_checkpoint_dir

    monkeypatch.setenv("GPT2_COURSE_DATA", str(tmp_path))
    monkeypatch.setattr(reference, "load_reference", lambda device: ("reference model", "its tokenizer"))
    assert load_base_model("cpu", "chapter5")[2] == "reference"  # chapter 5 not run yet: says so, falls back
    assert "run chapter 5 first" in capsys.readouterr().out
    mine = tiny_model()
    save_checkpoint(learner_checkpoint_dir("tiny"), mine, tokenizer=tiny_tokenizer())
    monkeypatch.setenv("GPT2_COURSE_PROFILE", "tiny")
    monkeypatch.setenv(BASE_MODEL_ENV, "chapter5")
    model, tok, name = load_base_model("cpu")
    assert name == "chapter5" and not model.training and tok.n_vocab == tiny_tokenizer().n_vocab
    assert all(torch.equal(a, b) for a, b in zip(mine.state_dict().values(), model.state_dict().values(), strict=True))
