"""Every chapter-4 checker accepts its reference solution and rejects plausible wrong answers."""

from __future__ import annotations

import pytest
import torch

from gpt2_core.exercises import check_exercise
from gpt2_core.exercises.solutions import ch04 as solution
from gpt2_core.model.config import GPTConfig
from gpt2_core.model.gpt import GPTModel


def _flops_without_head(cfg, training=False):  # the tied head "costs nothing": wrong, it is multiplied
    return solution.flops_per_token(cfg, training) - (3 if training else 1) * 2 * cfg.vocab_size * cfg.emb_dim


def _flops_of_all_parameters(cfg, training=False):
    with torch.device("meta"):
        n = GPTModel(cfg).num_parameters()
    return (3 if training else 1) * (2 * n + 2 * cfg.n_layers * cfg.context_length * cfg.emb_dim)


def _flops_full_attention(cfg, training=False):  # forgets that the causal mask halves attention
    return solution.flops_per_token(cfg, training) + (3 if training else 1) * 2 * cfg.n_layers * \
        cfg.context_length * cfg.emb_dim


# A plausible wrong answer for every checker (tests/test_exercise_solutions.py runs them all)
WRONG = {
    "ch04.count_parameters": lambda cfg: solution.count_parameters(cfg.replace(qkv_bias=True)),
    "ch04.flops_per_token": _flops_without_head,
    "ch04.kv_cache_bytes": lambda cfg, b, t, dtype: solution.kv_cache_bytes(cfg, b, t, dtype) // 2,  # keys only
}


@pytest.mark.parametrize("wrong, says", [
    (_flops_without_head, "output head"),
    (_flops_of_all_parameters, "every parameter"),
    (_flops_full_attention, "causal mask"),
    (lambda cfg, training=False: solution.flops_per_token(cfg), "3x"),  # forgets the backward pass
])
def test_flops_checker_names_the_mistake(wrong, says, capsys):
    assert not check_exercise("ch04.flops_per_token", wrong)
    assert says in capsys.readouterr().out


def test_flops_formula_matches_the_real_models_matmuls():
    cfg = GPTConfig(vocab_size=100, context_length=16, emb_dim=32, n_heads=4, n_layers=3)
    with torch.device("meta"):
        model = GPTModel(cfg)
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert solution.flops_per_token(cfg) == 2 * linear + 2 * 3 * 16 * 32


def test_kv_cache_checker_catches_a_fixed_dtype(capsys):
    always_fp32 = lambda cfg, b, t, dtype: 2 * cfg.n_layers * b * t * cfg.emb_dim * 4
    assert not check_exercise("ch04.kv_cache_bytes", always_fp32)
    assert "bytes a number" in capsys.readouterr().out



def _minus(part):  # a count that leaves out one part of the model
    return lambda cfg: solution.count_parameters(cfg) - part(cfg)


@pytest.mark.parametrize("wrong, says", [
    (_minus(lambda cfg: cfg.context_length * cfg.emb_dim),
     "you counted the token embedding, the transformer blocks and the final LayerNorm but not the position "
     "embedding (context_length x emb_dim)"),
    (_minus(lambda cfg: cfg.vocab_size * cfg.emb_dim), "but not the token embedding"),
    (_minus(lambda cfg: 2 * cfg.emb_dim), "but not the final LayerNorm (2 x emb_dim)"),
    (_minus(lambda cfg: 2 * cfg.emb_dim + cfg.context_length * cfg.emb_dim),
     "but not the position embedding (context_length x emb_dim) and the final LayerNorm"),
    (_minus(lambda cfg: 4 * cfg.emb_dim * cfg.n_layers), "but not the blocks' two LayerNorms"),
    (lambda cfg: (cfg.vocab_size + cfg.context_length + 2) * cfg.emb_dim, "but not the transformer blocks"),
    (lambda cfg: solution.count_parameters(cfg) + cfg.vocab_size * cfg.emb_dim, "tied to the token embedding"),
    (WRONG["ch04.count_parameters"], "qkv_bias=False leaves them out"),
    (lambda cfg: solution.count_parameters(cfg.replace(n_layers=1)), "one transformer block"),
    (lambda cfg: (cfg.vocab_size + cfg.context_length) * cfg.emb_dim + 12 * cfg.emb_dim**2 * cfg.n_layers,
     "add every bias and LayerNorm"),
    (lambda cfg: 7, "count the two embeddings; in each block"),  # no single mistake explains it
])
def test_count_parameters_checker_says_which_part_is_missing(wrong, says, capsys):
    assert not check_exercise("ch04.count_parameters", wrong)
    assert says in capsys.readouterr().out


def test_the_parts_of_the_count_add_up_to_the_model():
    from gpt2_core.exercises.ch04 import _COUNT_CASES, _parts

    for cfg in _COUNT_CASES:
        parts = _parts(cfg)
        blocks = parts.pop("the transformer blocks")
        with torch.device("meta"):
            assert sum(parts.values()) == GPTModel(cfg).num_parameters()
        assert blocks == sum(n for name, n in parts.items() if name not in
                             ("the token embedding", "the position embedding", "the final LayerNorm"))
