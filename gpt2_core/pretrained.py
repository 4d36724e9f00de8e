"""The course's pretrained model: one GPT per profile, trained on the State of the Union corpus.

Chapter 5 trains it; chapters 6 and 7 start from it. ``course_model()`` returns it, loading the
cached checkpoint ``data/checkpoints/course-<profile>/`` when it exists and was made with the current
recipe, and otherwise training it with :func:`course_recipe` and caching it (so whichever notebook
runs first pays the few minutes, and every later one loads it in a second).

Profiles:

- ``tiny``: the ``tiny`` shape, a few seconds on a slice of the corpus (CI; it learns little).
- ``default``: the ``default`` shape (4 layers, 256 wide, 4 heads, 128 tokens), a few minutes on a
  laptop CPU over the whole training split.
- ``gpt2``: OpenAI's GPT-2 small weights when they can be downloaded; otherwise the ``gpt2`` shape
  trained briefly (on a GPU).

Two processes asking at once do not corrupt the cache: a lock file serialises training, and the
checkpoint itself is written atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from .config import GPTConfig
from .model import GPTModel
from .profile import data_dir, get_device, pick, profile_name
from .training import History, TrainConfig, eval_loader, perplexity, train


@dataclass(frozen=True)
class CourseRecipe:
    """The hyper-parameters of the course model for one profile."""

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

    def model_config(self) -> GPTConfig:
        return GPTConfig.preset(self.preset, context_length=self.context_length, drop_rate=self.drop_rate)

    def train_config(self, **overrides) -> TrainConfig:
        """The :class:`TrainConfig` of this recipe; ``overrides`` change fields (e.g. ``progress=False``)."""
        base = dict(max_steps=self.max_steps, lr=self.lr, min_lr=self.min_lr, warmup_steps=self.warmup_steps,
                    weight_decay=self.weight_decay, grad_clip=self.grad_clip, eval_every=self.eval_every,
                    eval_batches=self.eval_batches, seed=self.seed)
        return TrainConfig(**{**base, **overrides})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def course_recipe(profile: str | None = None) -> CourseRecipe:
    """The recipe (model shape, data, optimisation) of the course model for ``profile`` (default: active)."""
    name = profile or profile_name()
    common = dict(profile=name, weight_decay=0.1, grad_clip=1.0, seed=123)
    return pick(
        profile=name,
        # seconds on any CPU: enough for the loss to fall visibly, not to write English
        tiny=CourseRecipe(preset="tiny", context_length=64, batch_size=4, max_steps=30, lr=2e-3, min_lr=2e-4,
                          warmup_steps=3, drop_rate=0.0, eval_every=10, eval_batches=2,
                          train_chars=100_000, val_chars=20_000, **common),
        # about 9 minutes on an idle 2-core CPU (~1,700 tokens/s): 922k tokens, half of the
        # 1.9M-token training split. Each step costs ~100 MFLOP per token, 80% of it in the
        # 50,257-way output layer, so the vocabulary, not the 4 blocks, sets the pace.
        default=CourseRecipe(preset="default", context_length=128, batch_size=8, max_steps=900, lr=2e-3,
                             min_lr=2e-4, warmup_steps=40, drop_rate=0.0, eval_every=100, eval_batches=10,
                             train_chars=None, val_chars=None, **common),
        # fallback when OpenAI's weights cannot be downloaded: GPT-2 small, briefly, on a GPU
        gpt2=CourseRecipe(preset="gpt2", context_length=256, batch_size=32, max_steps=1000, lr=6e-4,
                          min_lr=6e-5, warmup_steps=100, drop_rate=0.0, eval_every=100, eval_batches=20,
                          train_chars=None, val_chars=None, **common),
    )


def course_checkpoint_dir(profile: str | None = None) -> Path:
    """Where the course model of ``profile`` is cached: ``data/checkpoints/course-<profile>/``."""
    return data_dir() / "checkpoints" / f"course-{profile or profile_name()}"


def course_data(recipe: CourseRecipe | None = None) -> tuple[DataLoader, DataLoader]:
    """(train, val) loaders of the recipe: SOTU text, GPT-2 tokens, non-overlapping windows."""
    from .corpus import sotu_text
    from .data import create_dataloader
    from .tokenizer import gpt2_encoding

    recipe = recipe or course_recipe()
    enc = gpt2_encoding()
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
    from .training import calc_loss_loader

    recipe = recipe or course_recipe()
    loader = val_loader if val_loader is not None else course_data(recipe)[1]
    was_training = model.training
    model.eval()
    loss = calc_loss_loader(model, eval_loader(loader.dataset, recipe.batch_size, recipe.eval_batches))
    model.train(was_training)
    return loss


def train_course_model(recipe: CourseRecipe | None = None, device: torch.device | str | None = None,
                       progress: bool = True) -> tuple[GPTModel, History]:
    """Train the course model from scratch with ``recipe`` (does not save it; see :func:`save_course_model`)."""
    recipe = recipe or course_recipe()
    torch.manual_seed(recipe.seed)
    model = GPTModel(recipe.model_config()).to(device or get_device())
    train_loader, val_loader = course_data(recipe)
    history = train(model, train_loader, val_loader, recipe.train_config(progress=progress))
    return model, history


def save_course_model(model: GPTModel, history: History, recipe: CourseRecipe | None = None) -> Path:
    """Cache ``model`` (trained with ``recipe``) as the course model of the recipe's profile (atomic)."""
    from .checkpoint import save_checkpoint

    recipe = recipe or course_recipe()
    extra = {"recipe": recipe.to_dict(), "history": history.to_dict(),
             "val_loss": history.val_losses[-1] if history.val_losses else None}
    return save_checkpoint(course_checkpoint_dir(recipe.profile), model, step=len(history.steps), extra=extra)


def load_course_model(profile: str | None = None, device: torch.device | str | None = None
                      ) -> tuple[GPTModel, dict] | None:
    """(model, extra) from the cache when it holds a valid checkpoint of the current recipe, else None."""
    from .checkpoint import load_checkpoint

    recipe = course_recipe(profile)
    path = course_checkpoint_dir(recipe.profile)
    if not path.is_dir():
        return None
    try:
        state = load_checkpoint(path, restore_rng=False, map_location=device or get_device())
    except (OSError, ValueError, TypeError, KeyError):
        return None  # incomplete or corrupt: train again
    if state["extra"].get("recipe") != recipe.to_dict():
        return None  # made with another recipe
    return state["model"], state["extra"]


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive lock file beside ``path`` (POSIX); elsewhere, no lock (the save is still atomic)."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _openai_gpt2(device: torch.device) -> GPTModel | None:
    if os.environ.get("GPT2_COURSE_NO_DOWNLOAD"):
        return None
    from .hf_weights import WeightsDownloadError

    try:
        return GPTModel.from_pretrained("gpt2").to(device)
    except (WeightsDownloadError, OSError) as err:
        print(f"OpenAI's GPT-2 weights are not available ({err}); training the gpt2 shape instead.")
        return None


def course_model(profile: str | None = None, device: torch.device | str | None = None,
                 progress: bool = True) -> GPTModel:
    """The course's pretrained model for ``profile`` (default: active), in eval mode on ``device``.

    Loads ``data/checkpoints/course-<profile>/`` when valid; otherwise trains it with
    :func:`course_recipe` (showing progress) and caches it. Under ``gpt2`` it first tries OpenAI's
    weights (set ``GPT2_COURSE_NO_DOWNLOAD=1`` to skip the attempt). Safe to call from several
    processes at once.
    """
    recipe = course_recipe(profile)
    device = torch.device(device) if device is not None else get_device()
    if recipe.profile == "gpt2":
        model = _openai_gpt2(device)
        if model is not None:
            return model.eval()
    path = course_checkpoint_dir(recipe.profile)
    loaded = load_course_model(recipe.profile, device)  # fast path: no lock needed to read a finished one
    if loaded is not None:
        return loaded[0].eval()
    with _lock(path):  # one process trains; the others wait here, then load what it saved
        loaded = load_course_model(recipe.profile, device)
        if loaded is not None:
            return loaded[0].eval()
        print(f"No cached course model for profile {recipe.profile!r}: training it once ({recipe.max_steps} steps); "
              f"it is saved to {path}.")
        model, history = train_course_model(recipe, device, progress)
        save_course_model(model, history, recipe)
        print(f"Course model trained in {history.seconds:.1f} s; val loss {history.val_losses[-1]:.3f} "
              f"(perplexity {perplexity(history.val_losses[-1]):.1f}).")
    return model.eval()
