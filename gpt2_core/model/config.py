"""GPTConfig: the handful of numbers that define a GPT-2-shaped model, with OpenAI's presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..checks import check_bool, check_int, check_number

GPT2_VOCAB_SIZE = 50257

# OpenAI's four released shapes (Radford et al., 2019), plus the course's profile sizes.
_PRESETS: dict[str, dict] = {
    "gpt2": dict(emb_dim=768, n_heads=12, n_layers=12, context_length=1024),
    "gpt2-medium": dict(emb_dim=1024, n_heads=16, n_layers=24, context_length=1024),
    "gpt2-large": dict(emb_dim=1280, n_heads=20, n_layers=36, context_length=1024),
    "gpt2-xl": dict(emb_dim=1600, n_heads=25, n_layers=48, context_length=1024),
    # profile sizes: small enough for CI (tiny) and a laptop CPU (default)
    "tiny": dict(emb_dim=64, n_heads=2, n_layers=2, context_length=64),
    "default": dict(emb_dim=256, n_heads=4, n_layers=4, context_length=128),
}


@dataclass(frozen=True)
class GPTConfig:
    """Shape and regularisation of a GPT model. Defaults are GPT-2 small (124M)."""

    vocab_size: int = GPT2_VOCAB_SIZE
    context_length: int = 1024
    emb_dim: int = 768
    n_heads: int = 12
    n_layers: int = 12
    drop_rate: float = 0.1
    qkv_bias: bool = True

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers"):
            check_int(getattr(self, name), f"GPTConfig.{name}", low=1)
        if self.emb_dim % self.n_heads:
            raise ValueError(
                f"emb_dim={self.emb_dim} is not divisible by n_heads={self.n_heads}; each head gets "
                f"emb_dim // n_heads dimensions, so pick n_heads that divides emb_dim"
            )
        if check_number(self.drop_rate, "GPTConfig.drop_rate", low=0.0) >= 1.0:
            raise ValueError(f"GPTConfig.drop_rate must be in [0, 1), got {self.drop_rate!r}")
        check_bool(self.qkv_bias, "GPTConfig.qkv_bias")

    @property
    def head_dim(self) -> int:
        return self.emb_dim // self.n_heads

    @classmethod
    def preset(cls, name: str, **overrides) -> GPTConfig:
        """A named shape: ``gpt2``, ``gpt2-medium``, ``gpt2-large``, ``gpt2-xl``, ``tiny``, ``default``."""
        if name not in _PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(_PRESETS)}")
        return cls(**{**_PRESETS[name], **overrides})

    @staticmethod
    def preset_names() -> list[str]:
        return list(_PRESETS)

    def replace(self, **changes) -> GPTConfig:
        """A copy with some fields changed (the config itself is immutable)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GPTConfig:
        if not isinstance(data, dict):
            raise TypeError(f"GPTConfig.from_dict expects a dict, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown GPTConfig fields {sorted(unknown)}; expected a subset of "
                             f"{sorted(known)}")
        return cls(**data)
