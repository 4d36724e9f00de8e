"""What many test files share: a tiny model config, model factories and two tiny tokenizers.

Test files import these directly (``from conftest import TINY, tiny_model, ...``); pytest puts this folder
on the import path.
"""

from __future__ import annotations

from functools import lru_cache

import pytest
import torch

from gpt2_core.course import instruction_runs
from gpt2_core.model.config import GPTConfig
from gpt2_core.model.gpt import GPTModel
from gpt2_core.text.bpe import BPETokenizer

# One block, 16 wide, 8 tokens of context: a whole model in a few thousand numbers, fast enough for
# any test that needs "a GPT" rather than a particular one. Dropout is on, so that training tests see it.
# 300 tokens: the vocabulary of tiny_tokenizer(), so that a checkpoint can record it.
TINY = GPTConfig(vocab_size=300, context_length=8, emb_dim=16, n_heads=2, n_layers=1, drop_rate=0.1)


def tiny_model(seed: int = 0, cfg: GPTConfig = TINY, **changes: object) -> GPTModel:
    """A freshly initialised GPTModel of ``cfg`` (fields changed by ``changes``), seeded."""
    torch.manual_seed(seed)
    return GPTModel(cfg.replace(**changes))


@lru_cache(maxsize=1)
def tiny_tokenizer() -> BPETokenizer:
    """A 300-token BPE tokenizer with ``<|endoftext|>`` (it speaks tiktoken's interface, as every tokenizer here)."""
    text = ("Free money!!! Click here to claim your prize. Hi Tom, lunch at noon? The meeting is moved to "
            "Thursday. We the people of the United States, in order to form a more perfect union. ") * 20
    return BPETokenizer.train(text, 300)


class CharTokenizer:
    """A toy tokenizer with tiktoken's interface: characters 32..126 are ids 0..94, and end-of-text is 95
    (never GPT-2's 50256), so tests catch code that hard-codes GPT-2's id."""

    eot_token = 95
    n_vocab = 96
    special_tokens_set = {"<|endoftext|>"}

    def encode_ordinary(self, text: str) -> list[int]:
        return [min(max(ord(c) - 32, 0), 94) for c in text]

    def encode(self, text: str, **_: object) -> list[int]:  # no special text is ever encoded in these tests
        return self.encode_ordinary(text)

    def decode(self, ids: list[int]) -> str:
        return "".join("<|endoftext|>" if i == self.eot_token else chr(i + 32) for i in ids)


def tiny_char_model(seed: int = 0, context_length: int = 96) -> GPTModel:
    """A model of the ``tiny`` shape over :class:`CharTokenizer`'s 96 ids, in eval mode."""
    torch.manual_seed(seed)
    cfg = GPTConfig.preset("tiny", vocab_size=CharTokenizer.n_vocab, context_length=context_length, drop_rate=0.0)
    return GPTModel(cfg).eval()


# Chapter 7's runs on a tiny model: two steps of four records, every 200th evaluation record.
TINY_INSTRUCTION_RECIPE = instruction_runs.InstructionRecipe(steps=2, batch_size=4, train_records=12, eval_every=200)


@pytest.fixture
def tiny_base(monkeypatch, tmp_path):
    """Chapter 7's runs (instruction_runs) on a tiny model and recipe, saving under ``tmp_path``."""
    monkeypatch.setenv("GPT2_COURSE_DATA", str(tmp_path))
    monkeypatch.setattr(instruction_runs, "profile_recipe", lambda: TINY_INSTRUCTION_RECIPE)
    monkeypatch.setattr(instruction_runs, "base_model_name", lambda: "tiny")
    monkeypatch.setattr(instruction_runs, "load_base_model", lambda device=None, name=None: (
        tiny_model(context_length=256, drop_rate=0.0).eval(), tiny_tokenizer(), "tiny"))
    return tmp_path
