"""A toy tokenizer for chapter-7 tests: one token per character, end-of-text at an unusual id."""

from __future__ import annotations

import torch

from gpt2_core.config import GPTConfig
from gpt2_core.model import GPTModel


class CharTokenizer:
    """Characters 32..126 are ids 0..94; ``eot_token`` is 95 (never GPT-2's 50256)."""

    eot_token = 95
    n_vocab = 96

    def encode(self, text: str) -> list[int]:
        return [min(max(ord(c) - 32, 0), 94) for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join("<|endoftext|>" if i == self.eot_token else chr(i + 32) for i in ids)


def tiny_char_model(seed: int = 0, context_length: int = 96) -> GPTModel:
    torch.manual_seed(seed)
    cfg = GPTConfig.preset("tiny", vocab_size=CharTokenizer.n_vocab, context_length=context_length, drop_rate=0.0)
    return GPTModel(cfg).eval()
