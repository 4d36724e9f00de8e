"""Tests for gpt2_core.pretrained: recipes, and course_model's train-once-then-load cache."""

from __future__ import annotations

import dataclasses
import threading

import pytest
import torch

from gpt2_core import pretrained
from gpt2_core.config import GPTConfig
from gpt2_core.model import GPTModel
from gpt2_core.pretrained import (
    CourseRecipe,
    course_checkpoint_dir,
    course_model,
    course_recipe,
    course_val_loss,
    load_course_model,
)
from gpt2_core.profile import cache_dir


def micro_recipe(profile: str = "tiny", **changes) -> CourseRecipe:
    """A recipe that trains in well under a second."""
    base = CourseRecipe(profile=profile, preset="tiny", context_length=16, batch_size=2, max_steps=2, lr=1e-3,
                        min_lr=1e-4, warmup_steps=1, weight_decay=0.1, grad_clip=1.0, drop_rate=0.0,
                        eval_every=0, eval_batches=1, train_chars=4000, val_chars=2000)
    return dataclasses.replace(base, **changes)


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """An empty data folder that shares the real download cache (the corpus), and a counted micro recipe."""
    real_cache = cache_dir()
    monkeypatch.setenv("GPT2_COURSE_DATA", str(tmp_path))
    (tmp_path / "cache").symlink_to(real_cache, target_is_directory=True)
    recipes = {"recipe": micro_recipe()}
    monkeypatch.setattr(pretrained, "course_recipe",
                        lambda profile=None: dataclasses.replace(recipes["recipe"], profile=profile or "tiny"))
    calls = []
    real_train = pretrained.train_course_model

    def counted(*args, **kwargs):
        calls.append(1)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(pretrained, "train_course_model", counted)
    return recipes, calls


@pytest.mark.parametrize("profile, preset, layers", [("tiny", "tiny", 2), ("default", "default", 4),
                                                      ("gpt2", "gpt2", 12)])
def test_course_recipe_per_profile(profile, preset, layers):
    recipe = course_recipe(profile)
    assert recipe.profile == profile and recipe.preset == preset
    cfg = recipe.model_config()
    assert isinstance(cfg, GPTConfig) and cfg.n_layers == layers and cfg.context_length == recipe.context_length
    tc = recipe.train_config(progress=False)
    assert tc.max_steps == recipe.max_steps and tc.lr == recipe.lr and tc.progress is False
    assert recipe.warmup_steps < recipe.max_steps and recipe.min_lr < recipe.lr


def test_default_recipe_is_the_brief_shape():
    cfg = course_recipe("default").model_config()
    assert (cfg.n_layers, cfg.emb_dim, cfg.n_heads, cfg.context_length) == (4, 256, 4, 128)


def test_course_recipe_follows_the_active_profile(monkeypatch):
    monkeypatch.setenv("GPT2_COURSE_PROFILE", "tiny")
    assert course_recipe().profile == "tiny"
    with pytest.raises(ValueError, match="profile"):
        course_recipe("huge")


def test_course_model_trains_once_then_loads(sandbox):
    _, calls = sandbox
    model = course_model("tiny", device="cpu", progress=False)
    assert isinstance(model, GPTModel) and not model.training and model.cfg.context_length == 16
    assert (course_checkpoint_dir("tiny") / "model.safetensors").is_file() and len(calls) == 1
    again = course_model("tiny", device="cpu", progress=False)
    assert len(calls) == 1  # loaded, not retrained
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values(),
                                                  strict=True))
    loaded, extra = load_course_model("tiny", "cpu")
    assert extra["recipe"]["max_steps"] == 2 and extra["val_loss"] == pytest.approx(course_val_loss(
        loaded, pretrained.course_recipe("tiny")), rel=1e-5)


def test_a_changed_recipe_or_corrupt_checkpoint_is_retrained(sandbox):
    recipes, calls = sandbox
    course_model("tiny", device="cpu", progress=False)
    recipes["recipe"] = micro_recipe(max_steps=3)
    assert load_course_model("tiny", "cpu") is None
    course_model("tiny", device="cpu", progress=False)
    assert len(calls) == 2
    (course_checkpoint_dir("tiny") / "model.safetensors").write_bytes(b"not safetensors")
    assert load_course_model("tiny", "cpu") is None
    course_model("tiny", device="cpu", progress=False)
    assert len(calls) == 3 and load_course_model("tiny", "cpu") is not None


def test_concurrent_callers_train_once(sandbox):
    _, calls = sandbox
    results, errors = [], []

    def call():
        try:
            results.append(course_model("tiny", device="cpu", progress=False))
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 2 and len(calls) == 1


def test_gpt2_profile_falls_back_to_training_when_offline(sandbox, monkeypatch):
    from gpt2_core.hf_weights import WeightsDownloadError

    def offline(name, **kwargs):
        raise WeightsDownloadError("offline")

    monkeypatch.setattr(GPTModel, "from_pretrained", staticmethod(offline))
    _, calls = sandbox
    model = course_model("gpt2", device="cpu", progress=False)
    assert isinstance(model, GPTModel) and len(calls) == 1
    assert course_checkpoint_dir("gpt2").name == "course-gpt2"


def test_gpt2_profile_prefers_openai_weights(sandbox, monkeypatch):
    marker = GPTModel(GPTConfig(vocab_size=10, context_length=4, emb_dim=8, n_heads=2, n_layers=1))
    monkeypatch.setattr(GPTModel, "from_pretrained", staticmethod(lambda name, **kw: marker))
    _, calls = sandbox
    assert course_model("gpt2", device="cpu") is marker and not marker.training and calls == []
