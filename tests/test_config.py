"""GPTConfig: validation, presets, copies and serialisation; preset parameter counts."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from gpt2_core.model.config import GPT2_VOCAB_SIZE, GPTConfig
from gpt2_core.model.gpt import GPTModel


def count_on_meta(cfg: GPTConfig) -> int:
    """Build on the meta device: shapes without memory, so even gpt2-xl counts in milliseconds."""
    with torch.device("meta"):
        return GPTModel(cfg).num_parameters()


def formula_count(cfg: GPTConfig) -> int:
    """Parameters of GPT-2 by hand: embeddings + blocks + final norm (the head is tied)."""
    d, v, t, n = cfg.emb_dim, cfg.vocab_size, cfg.context_length, cfg.n_layers
    block = (3 * d * d + 3 * d) + (d * d + d) + (4 * d * d + 4 * d) + (4 * d * d + d) + 4 * d
    return v * d + t * d + n * block + 2 * d


def test_defaults_are_gpt2_small():
    assert GPTConfig() == GPTConfig.preset("gpt2")
    assert GPTConfig().vocab_size == GPT2_VOCAB_SIZE
    assert GPTConfig().head_dim == 64


@pytest.mark.parametrize("name, expected", [
    ("gpt2", 124_439_808), ("gpt2-medium", 354_823_168),
    ("gpt2-large", 774_030_080), ("gpt2-xl", 1_557_611_200),
])
def test_preset_parameter_counts_match_openai(name, expected):
    cfg = GPTConfig.preset(name)
    assert count_on_meta(cfg) == expected  # the published sizes of OpenAI's checkpoints
    assert formula_count(cfg) == expected


@pytest.mark.parametrize("name", ["tiny", "default"])
def test_profile_presets_build_and_count(name):
    cfg = GPTConfig.preset(name)
    assert count_on_meta(cfg) == formula_count(cfg)
    assert cfg.emb_dim % cfg.n_heads == 0


def test_preset_overrides_and_names():
    cfg = GPTConfig.preset("tiny", vocab_size=100, drop_rate=0.0)
    assert (cfg.vocab_size, cfg.drop_rate, cfg.emb_dim) == (100, 0.0, GPTConfig.preset("tiny").emb_dim)
    names = {"gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "tiny", "default"}
    assert names <= set(GPTConfig.preset_names())


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match="unknown preset 'gpt3'.*gpt2-medium"):
        GPTConfig.preset("gpt3")


def test_replace_and_dict_round_trip():
    cfg = GPTConfig.preset("tiny")
    changed = cfg.replace(n_layers=3)
    assert changed.n_layers == 3 and cfg.n_layers != 3  # the original is untouched
    assert GPTConfig.from_dict(changed.to_dict()) == changed
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n_layers = 5  # type: ignore[misc]


def test_from_dict_rejects_unknown_fields_and_non_dicts():
    with pytest.raises(ValueError, match="unknown GPTConfig fields \\['n_embd'\\]"):
        GPTConfig.from_dict({"n_embd": 10})
    with pytest.raises(TypeError, match="expects a dict"):
        GPTConfig.from_dict([("emb_dim", 8)])  # type: ignore[arg-type]


def test_emb_dim_must_divide_into_heads():
    with pytest.raises(ValueError, match="emb_dim=10 is not divisible by n_heads=3"):
        GPTConfig(emb_dim=10, n_heads=3)


@pytest.mark.parametrize("field", ["vocab_size", "context_length", "emb_dim", "n_heads", "n_layers"])
@pytest.mark.parametrize("value", [0, -4])
def test_sizes_must_be_positive(field, value):
    with pytest.raises(ValueError, match=f"{field} must be >= 1"):
        GPTConfig(**{field: value})


@pytest.mark.parametrize("value", [8.0, "8", True, None])
def test_sizes_must_be_ints(value):
    with pytest.raises(TypeError, match="n_layers must be an int"):
        GPTConfig(n_layers=value)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 2, "0.1"])
def test_drop_rate_range(rate):
    with pytest.raises((TypeError, ValueError), match="drop_rate"):
        GPTConfig(drop_rate=rate)


def test_qkv_bias_must_be_bool():
    with pytest.raises(TypeError, match="qkv_bias must be True or False"):
        GPTConfig(qkv_bias=1)  # type: ignore[arg-type]
