"""Which model and tokenizer the course starts from, and the recipe of chapter 5's own training run.

Two different things live here:

- :func:`load_base_model` returns the **pretrained starting point** of chapters 6 and 7, with its
  tokenizer: the shipped reference course model (:mod:`gpt2_core.reference`, trained on ~20M tokens of
  State of the Union prose with the course's own tokenizer) by default, or OpenAI's GPT-2 124M with
  GPT-2's tokenizer when ``GPT2_COURSE_BASE_MODEL=gpt2`` (any profile; the default under the ``gpt2``
  profile) and the weights can be downloaded.
- :func:`course_recipe` is the **learner's own pretraining run** in chapter 5 (and the defaults of
  ``python -m gpt2_core.train``), sized by the profile:

  - ``tiny``: the ``tiny`` shape, a few seconds on a slice of the corpus (CI; it learns little);
  - ``default``: the ``default`` shape (4 layers, 256 wide, 4 heads, 128 tokens), about eight minutes
    on a laptop CPU: 2.9M tokens, a seventh of what the reference model saw;
  - ``gpt2``: GPT-2 small's shape with GPT-2's tokenizer, briefly, on a GPU.

  ``tiny`` and ``default`` use the reference model's tokenizer, so the two models can be compared
  token for token; ``gpt2`` uses GPT-2's.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from .config import GPTConfig
from .model import GPTModel
from .profile import get_device, pick, profile_name
from .training import TrainConfig, calc_loss_loader, eval_loader

BASE_MODEL_ENV = "GPT2_COURSE_BASE_MODEL"
BASE_MODELS = ("reference", "gpt2")


# --- the starting point of chapters 6 and 7 -------------------------------------------------------


def base_model_name(profile: str | None = None) -> str:
    """``reference`` or ``gpt2``: ``GPT2_COURSE_BASE_MODEL`` if set, else ``gpt2`` under the gpt2 profile."""
    name = os.environ.get(BASE_MODEL_ENV, "").strip().lower()
    if not name:
        return "gpt2" if (profile or profile_name()) == "gpt2" else "reference"
    if name not in BASE_MODELS:
        raise ValueError(f"{BASE_MODEL_ENV}={name!r} is not a base model; use one of {', '.join(BASE_MODELS)} "
                         f"(reference: the course's shipped model; gpt2: OpenAI's GPT-2 124M, downloaded)")
    return name


def load_base_model(device: torch.device | str | None = None, name: str | None = None):  # noqa: ANN201
    """(model, tokenizer, name): the pretrained model chapters 6 and 7 fine-tune, in eval mode.

    ``name`` (default :func:`base_model_name`) is ``reference`` (the shipped course model and its own
    tokenizer) or ``gpt2`` (OpenAI's GPT-2 124M with GPT-2's tokenizer). When GPT-2's weights cannot be
    downloaded, it says so and returns the reference model instead, so a notebook always runs.
    """
    from .reference import load_reference

    name = name or base_model_name()
    if name not in BASE_MODELS:
        raise ValueError(f"unknown base model {name!r}; use one of {', '.join(BASE_MODELS)}")
    device = torch.device(device) if device is not None else get_device()
    if name == "gpt2":
        from .hf_weights import WeightsDownloadError
        from .tokenizer import gpt2_encoding

        try:
            return GPTModel.from_pretrained("gpt2").to(device).eval(), gpt2_encoding(), "gpt2"
        except (WeightsDownloadError, OSError) as err:
            print(f"OpenAI's GPT-2 weights are not available ({str(err)[:160]}); "
                  "starting from the reference course model instead.")
    model, tokenizer = load_reference(device)
    return model, tokenizer, "reference"


# --- chapter 5's own run --------------------------------------------------------------------------


@dataclass(frozen=True)
class CourseRecipe:
    """The hyper-parameters of chapter 5's pretraining run for one profile."""

    profile: str
    preset: str
    context_length: int
    batch_size: int
    max_steps: int
    lr: float
    min_lr: float
    warmup_steps: int
    weight_decay: float
    grad_clip: float
    drop_rate: float
    eval_every: int
    eval_batches: int
    train_chars: int | None  # use only the first N characters of the training split (None: all of it)
    val_chars: int | None
    seed: int = 123

    def model_config(self, vocab_size: int) -> GPTConfig:
        """The model's shape for a tokenizer of ``vocab_size`` tokens."""
        return GPTConfig.preset(self.preset, vocab_size=vocab_size, context_length=self.context_length,
                                drop_rate=self.drop_rate)

    def train_config(self, **overrides) -> TrainConfig:
        """The :class:`TrainConfig` of this recipe; ``overrides`` change fields (e.g. ``progress=False``)."""
        base = dict(max_steps=self.max_steps, lr=self.lr, min_lr=self.min_lr, warmup_steps=self.warmup_steps,
                    weight_decay=self.weight_decay, grad_clip=self.grad_clip, eval_every=self.eval_every,
                    eval_batches=self.eval_batches, seed=self.seed)
        return TrainConfig(**{**base, **overrides})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def course_recipe(profile: str | None = None) -> CourseRecipe:
    """The recipe of chapter 5's run for ``profile`` (default: the active one)."""
    name = profile or profile_name()
    common = dict(profile=name, weight_decay=0.1, grad_clip=1.0, seed=123)
    return pick(
        profile=name,
        # seconds on any CPU: enough for the loss to fall visibly, not to write English
        tiny=CourseRecipe(preset="tiny", context_length=64, batch_size=4, max_steps=30, lr=2e-3, min_lr=2e-4,
                          warmup_steps=3, drop_rate=0.0, eval_every=10, eval_batches=2,
                          train_chars=100_000, val_chars=20_000, **common),
        # about 8 minutes on an idle 2-core CPU (~6,500 tokens/s with the 8k course tokenizer):
        # 700 x 32 x 128 = 2.9M tokens, 1.4 passes over the training split.
        default=CourseRecipe(preset="default", context_length=128, batch_size=32, max_steps=700, lr=2e-3,
                             min_lr=2e-4, warmup_steps=50, drop_rate=0.0, eval_every=100, eval_batches=10,
                             train_chars=None, val_chars=None, **common),
        # GPT-2 small with GPT-2's tokenizer, briefly, on a GPU
        gpt2=CourseRecipe(preset="gpt2", context_length=256, batch_size=32, max_steps=1000, lr=6e-4,
                          min_lr=6e-5, warmup_steps=100, drop_rate=0.0, eval_every=100, eval_batches=20,
                          train_chars=None, val_chars=None, **common),
    )


def course_tokenizer(profile: str | None = None):  # noqa: ANN201 - a tiktoken Encoding
    """The tokenizer of chapter 5's run: the reference model's (tiny, default) or GPT-2's (gpt2)."""
    if (profile or profile_name()) == "gpt2":
        from .tokenizer import gpt2_encoding

        return gpt2_encoding()
    from .reference import load_tokenizer

    return load_tokenizer()


def course_data(recipe: CourseRecipe | None = None, tokenizer=None) -> tuple[DataLoader, DataLoader]:  # noqa: ANN001
    """(train, val) loaders of the recipe: SOTU text, ``tokenizer`` (default: the recipe's), non-overlapping windows."""
    from .corpus import sotu_text
    from .data import create_dataloader

    recipe = recipe or course_recipe()
    enc = tokenizer if tokenizer is not None else course_tokenizer(recipe.profile)
    train_text, val_text = sotu_text("train"), sotu_text("val")
    if recipe.train_chars is not None:
        train_text = train_text[:recipe.train_chars]
    if recipe.val_chars is not None:
        val_text = val_text[:recipe.val_chars]
    kw = dict(context_length=recipe.context_length, batch_size=recipe.batch_size, seed=recipe.seed)
    return (create_dataloader(train_text, enc, shuffle=True, **kw),
            create_dataloader(val_text, enc, shuffle=False, drop_last=False, **kw))


def course_val_loss(model: torch.nn.Module, recipe: CourseRecipe | None = None,
                    val_loader: DataLoader | None = None) -> float:
    """Validation loss measured the way training reports it (the recipe's fixed, evenly spread batches)."""
    recipe = recipe or course_recipe()
    loader = val_loader if val_loader is not None else course_data(recipe)[1]
    was_training = model.training
    model.eval()
    loss = calc_loss_loader(model, eval_loader(loader.dataset, recipe.batch_size, recipe.eval_batches))
    model.train(was_training)
    return loss
