"""Pretraining recipes: everything that makes a run on the State of the Union corpus, in one type.

:class:`Recipe` serves both of the course's pretrained models:

- :func:`course_recipe`, the **learner's own run** in chapter 5 (and the defaults of
  ``python -m gpt2_core.course.train``), sized by the profile:

  - ``tiny``: the ``tiny`` shape, a few seconds on a slice of the corpus (CI; it learns little);
  - ``default``: the ``default`` shape (4 layers, 256 wide, 4 heads, 128 tokens), about eight minutes
    on a laptop CPU: 2.9M tokens, a seventh of what the reference model saw;
  - ``gpt2``: GPT-2 small's shape with GPT-2's tokenizer, briefly, on a GPU.

  ``tiny`` and ``default`` use the reference model's tokenizer, so the two models can be compared
  token for token; ``gpt2`` uses GPT-2's.
- :data:`REFERENCE_RECIPE`, the **reference course model** shipped in ``data/course-model/`` (made by
  :func:`gpt2_core.course.reference.build_reference`): the ``default`` shape for 4,900 steps of 32 windows.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from ..model.config import GPTConfig
from ..profile import data_dir, pick, profile_name
from ..text.corpus import sotu_text
from ..text.ranks import gpt2_encoding
from ..text.windows import create_dataloader
from .checkpoint import load_tokenizer
from .loop import TrainConfig


@dataclass(frozen=True)
class Recipe:
    """A pretraining run: the model's shape (a GPTConfig preset, a context and dropout), the data (the
    SOTU splits, optionally only their first characters) and the optimisation."""

    preset: str
    context_length: int
    batch_size: int
    max_steps: int
    lr: float
    min_lr: float
    warmup_steps: int
    eval_every: int
    eval_batches: int
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    drop_rate: float = 0.0
    train_chars: int | None = None  # use only the first N characters of the training split (None: all of it)
    val_chars: int | None = None
    seed: int = 123

    def model_config(self, vocab_size: int) -> GPTConfig:
        """The model's shape for a tokenizer of ``vocab_size`` tokens."""
        return GPTConfig.preset(self.preset, vocab_size=vocab_size, context_length=self.context_length,
                                drop_rate=self.drop_rate)

    def train_config(self, **overrides: Any) -> TrainConfig:
        """The :class:`TrainConfig` of this recipe; ``overrides`` change fields (e.g. ``progress=False``)."""
        base = dict(max_steps=self.max_steps, lr=self.lr, min_lr=self.min_lr, warmup_steps=self.warmup_steps,
                    weight_decay=self.weight_decay, grad_clip=self.grad_clip, eval_every=self.eval_every,
                    eval_batches=self.eval_batches, seed=self.seed)
        return TrainConfig(**{**base, **overrides})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# The reference course model: 4,900 x 32 x 128 = 20.1M tokens, about ten passes over the training split,
# with an 8,192-token BPE tokenizer trained on that split by chapter 1's trainer.
REFERENCE_RECIPE = Recipe(preset="default", context_length=128, batch_size=32, max_steps=4900, lr=2e-3, min_lr=2e-4,
                          warmup_steps=200, eval_every=350, eval_batches=10)
REFERENCE_VOCAB = 8192
# sha256 of each shipped file; a test checks them, and loading refuses a file that differs.
REFERENCE_SHA256: dict[str, str] = {
    "model.safetensors": "8615ed69962c4e402680ccef0953b8dfd609bf1d62736518440ba07d7104b4fb",
    "config.json": "e0a2c58060ca098e58d5ca0fad97cd7ce69a550b5304c9dba7e21b4283252721",
    "tokenizer.tiktoken": "76d963ac6a409f2f8b16ae6789fce77e112a570f935c287f0a58c8ff923e4f12",
    "history.json": "dc00c7da5d8fb17dfceccd0be325a4b1d5e153e2d519d7f41a09f6bbc739e79d",
}


def course_recipe(profile: str | None = None) -> Recipe:
    """The recipe of chapter 5's run for ``profile`` (default: the active one)."""
    return pick(
        profile=profile or profile_name(),
        # seconds on any CPU: enough for the loss to fall visibly, not to write English
        tiny=Recipe(preset="tiny", context_length=64, batch_size=4, max_steps=30, lr=2e-3, min_lr=2e-4,
                    warmup_steps=3, eval_every=10, eval_batches=2, train_chars=100_000, val_chars=20_000),
        # about 8 minutes on an idle 2-core CPU (~6,500 tokens/s with the 8k course tokenizer):
        # 700 x 32 x 128 = 2.9M tokens, 1.4 passes over the training split.
        default=Recipe(preset="default", context_length=128, batch_size=32, max_steps=700, lr=2e-3, min_lr=2e-4,
                       warmup_steps=50, eval_every=100, eval_batches=10),
        # GPT-2 small with GPT-2's tokenizer, briefly, on a GPU
        gpt2=Recipe(preset="gpt2", context_length=256, batch_size=32, max_steps=1000, lr=6e-4, min_lr=6e-5,
                    warmup_steps=100, eval_every=100, eval_batches=20),
    )


def learner_checkpoint_dir(profile: str | None = None) -> Path:
    """Where chapter 5 saves the learner's own model (with its tokenizer): ``data/checkpoints/ch05-<profile>``."""
    return data_dir() / "checkpoints" / f"ch05-{profile or profile_name()}"


def reference_dir() -> Path:
    """Where the shipped reference model lives: ``data/course-model/``."""
    return data_dir() / "course-model"


def course_tokenizer(profile: str | None = None):  # noqa: ANN201 - a tiktoken Encoding
    """The tokenizer of chapter 5's run: the reference model's (tiny, default) or GPT-2's (gpt2)."""
    if (profile or profile_name()) == "gpt2":
        return gpt2_encoding()
    return load_tokenizer(reference_dir(), REFERENCE_SHA256)


def course_data(recipe: Recipe | None = None, tokenizer: Any = None) -> tuple[DataLoader, DataLoader]:
    """(train, val) loaders of the recipe: SOTU text, ``tokenizer`` (default: the course's), non-overlapping windows."""
    recipe = recipe or course_recipe()
    tokenizer = tokenizer if tokenizer is not None else course_tokenizer()
    train_text, val_text = sotu_text("train"), sotu_text("val")
    if recipe.train_chars is not None:
        train_text = train_text[:recipe.train_chars]
    if recipe.val_chars is not None:
        val_text = val_text[:recipe.val_chars]
    kw = dict(context_length=recipe.context_length, batch_size=recipe.batch_size, seed=recipe.seed)
    return (create_dataloader(train_text, tokenizer, shuffle=True, **kw),
            create_dataloader(val_text, tokenizer, shuffle=False, drop_last=False, **kw))
