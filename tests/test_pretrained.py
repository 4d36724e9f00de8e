"""Tests for gpt2_core.pretrained: the base model switch of chapters 6-7 and chapter 5's run recipes."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from gpt2_core.config import GPTConfig
from gpt2_core.model import GPTModel
from gpt2_core.pretrained import (
    BASE_MODEL_ENV,
    CourseRecipe,
    base_model_name,
    course_data,
    course_recipe,
    course_tokenizer,
    course_val_loss,
    load_base_model,
)


def micro_recipe(**changes) -> CourseRecipe:
    base = CourseRecipe(profile="tiny", preset="tiny", context_length=16, batch_size=2, max_steps=2, lr=1e-3,
                        min_lr=1e-4, warmup_steps=1, weight_decay=0.1, grad_clip=1.0, drop_rate=0.0,
                        eval_every=0, eval_batches=2, train_chars=4000, val_chars=2000)
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize("profile, preset, layers", [("tiny", "tiny", 2), ("default", "default", 4),
                                                      ("gpt2", "gpt2", 12)])
def test_course_recipe_per_profile(profile, preset, layers):
    recipe = course_recipe(profile)
    assert recipe.profile == profile and recipe.preset == preset
    cfg = recipe.model_config(vocab_size=300)
    assert isinstance(cfg, GPTConfig) and cfg.n_layers == layers and cfg.vocab_size == 300
    assert cfg.context_length == recipe.context_length
    tc = recipe.train_config(progress=False)
    assert tc.max_steps == recipe.max_steps and tc.lr == recipe.lr and tc.progress is False
    assert recipe.warmup_steps < recipe.max_steps and recipe.min_lr < recipe.lr


def test_default_recipe_has_the_reference_models_shape():
    from gpt2_core.reference import ReferenceRecipe

    cfg = course_recipe("default").model_config(vocab_size=8192)
    assert cfg.replace(drop_rate=0.0) == ReferenceRecipe().model_config()


def test_course_recipe_follows_the_active_profile(monkeypatch):
    monkeypatch.setenv("GPT2_COURSE_PROFILE", "tiny")
    assert course_recipe().profile == "tiny"
    with pytest.raises(ValueError, match="profile"):
        course_recipe("huge")


def test_course_tokenizer_is_the_reference_one_except_under_gpt2():
    from gpt2_core.reference import load_tokenizer

    assert course_tokenizer("tiny").n_vocab == course_tokenizer("default").n_vocab == load_tokenizer().n_vocab
    assert course_tokenizer("gpt2").n_vocab == 50257


def test_course_data_and_val_loss():
    recipe = micro_recipe()
    tok = course_tokenizer("tiny")
    train_loader, val_loader = course_data(recipe, tok)
    x, y = next(iter(train_loader))
    assert x.shape == (2, 16) and torch.equal(x[:, 1:], y[:, :-1]) and int(x.max()) < tok.n_vocab
    torch.manual_seed(0)
    model = GPTModel(recipe.model_config(tok.n_vocab)).train()
    loss = course_val_loss(model, recipe, val_loader)
    assert abs(loss - torch.log(torch.tensor(float(tok.n_vocab))).item()) < 0.5 and model.training


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
    from gpt2_core.hf_weights import WeightsDownloadError

    def offline(name, **kwargs):
        raise WeightsDownloadError("no network")

    monkeypatch.setattr(GPTModel, "from_pretrained", staticmethod(offline))
    model, tok, name = load_base_model("cpu", "gpt2")
    assert name == "reference" and model.cfg.vocab_size == tok.n_vocab
    assert "not available" in capsys.readouterr().out


def test_gpt2_base_model_comes_with_gpt2s_tokenizer(monkeypatch):
    marker = GPTModel(GPTConfig(vocab_size=50257, context_length=4, emb_dim=8, n_heads=2, n_layers=1))
    monkeypatch.setattr(GPTModel, "from_pretrained", staticmethod(lambda name, **kw: marker))
    model, tok, name = load_base_model("cpu", "gpt2")
    assert model is marker and not model.training and name == "gpt2" and tok.n_vocab == 50257
