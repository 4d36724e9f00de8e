"""A GPT that classifies (chapter 6): a new head, pooling, freezing, the loss, one evaluation, predictions.

GPT-1 (Radford et al., 2018) keeps the pretrained network, adds a small linear head that reads the
last token's vector, and fine-tunes *the whole network* (with the language-model loss as an
auxiliary term). ULMFiT (Howard & Ruder, 2018) adds a middle step, language-model training on the
task's own unlabelled text, then fine-tunes the classifier with *discriminative learning rates*
(smaller for lower layers) and *gradual unfreezing* (the top layer first, one more each epoch).

Here: :func:`add_classification_head` swaps the next-token head for a :class:`ClassificationHead`, a
``num_classes``-way linear layer that also says how it *pools* the per-token outputs into one per text
(``last``: the last real token, the only position that has seen the whole text under causal attention;
``mean``: the average over the real tokens; ``both``: the average of the two). :func:`classification_loss`
is the ``loss_fn`` for :func:`gpt2_core.finetuning.loop.finetune`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..checks import check_bool, check_choice, check_int
from ..model.gpt import GPTModel, eval_mode
from ..pretraining.checkpoint import checkpoint_info, load_checkpoint
from .classification_data import WindowedTexts, _check_text, pad_collate
from .loop import FinetuneConfig, FinetuneHistory, finetune

POOLINGS = ("last", "mean", "both")
WINDOW_POOLINGS = ("mean", "max", "first")


class ClassificationHead(nn.Linear):
    """A ``num_classes``-way linear head that knows how to pool its per-token outputs into one per text."""

    def __init__(self, emb_dim: int, num_classes: int, pooling: str = "mean") -> None:
        super().__init__(emb_dim, num_classes)
        self.pooling = check_choice(pooling, "pooling", POOLINGS)
        nn.init.normal_(self.weight, mean=0.0, std=0.02)  # like every other GPT-2 linear layer
        nn.init.zeros_(self.bias)

    def config(self) -> dict:
        """What a checkpoint records of this head (and :func:`load_classifier` rebuilds it from)."""
        return {"num_classes": self.out_features, "pooling": self.pooling}

    def pool(self, logits: torch.Tensor, last_index: torch.Tensor) -> torch.Tensor:
        """One row of class logits per text from per-token ``logits`` (see :func:`pool_logits`)."""
        return pool_logits(logits, last_index, self.pooling)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, pooling={self.pooling!r}"


def _check_model(model: object) -> GPTModel:
    if not isinstance(model, GPTModel):
        raise TypeError(f"expected a GPTModel, got {type(model).__name__}")
    return model


def _head(model: GPTModel) -> ClassificationHead:
    head = _check_model(model).out_head
    if not isinstance(head, ClassificationHead):
        raise ValueError(f"this model still has its next-token head ({head.out_features} outputs = the vocabulary); "
                         "call add_classification_head(model, num_classes) first (and fine-tune it)")
    return head


def add_classification_head(model: GPTModel, num_classes: int = 2, pooling: str = "mean") -> GPTModel:
    """Replace ``model.out_head`` by a fresh :class:`ClassificationHead` (untied); returns the model.

    The new head starts like every other GPT-2 linear layer (weights N(0, 0.02), bias zero).
    """
    _check_model(model)
    check_int(num_classes, "num_classes", low=2)
    ref = model.tok_emb.weight
    model.out_head = ClassificationHead(model.cfg.emb_dim, num_classes, pooling).to(ref.device, ref.dtype)
    return model  # a new module: the tie to tok_emb is gone


def load_classifier(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[GPTModel, Any]:
    """(model, tokenizer) of a classifier saved with :func:`gpt2_core.pretraining.checkpoint.save_checkpoint`."""
    info = checkpoint_info(path)
    head = info["meta"].get("head") or {}
    if head.get("class") != ClassificationHead.__name__:
        raise ValueError(f"{path} does not hold a classifier (its head: {head or 'the next-token head'})")
    model = add_classification_head(GPTModel(info["config"]), head["num_classes"], head["pooling"])
    loaded = load_checkpoint(path, model.to(map_location), restore_rng=False, map_location=map_location)
    return model, loaded["tokenizer"]


def freeze_for_finetuning(model: GPTModel, trainable_blocks: int | None = None, train_embeddings: bool = True) -> int:
    """Choose what trains: the last ``trainable_blocks`` blocks (``None``: all), ``final_norm``, the head and,
    with ``train_embeddings``, the token and position embeddings. Returns the number of trainable parameters.

    The default (everything trains) is GPT-1's full fine-tuning, which measured best here. The head must
    be a classification head already (the tied next-token head would unfreeze the embeddings with it).
    """
    _head(model)
    n_layers = len(model.blocks)
    if trainable_blocks is None:
        trainable_blocks = n_layers
    check_int(trainable_blocks, "trainable_blocks (None: all)", low=0, high=n_layers)
    check_bool(train_embeddings, "train_embeddings")
    model.requires_grad_(False)
    for block in list(model.blocks)[n_layers - trainable_blocks:]:
        block.requires_grad_(True)
    if train_embeddings:
        model.tok_emb.requires_grad_(True)
        model.pos_emb.requires_grad_(True)
    model.final_norm.requires_grad_(True)
    model.out_head.requires_grad_(True)
    return model.num_parameters(trainable_only=True)


def pool_logits(logits: torch.Tensor, last_index: torch.Tensor, pooling: str = "mean") -> torch.Tensor:
    """One row of class logits per text from per-token logits (batch, tokens, classes).

    ``last``: the logits at each text's last real token; ``mean``: their average over the real tokens
    (0 .. last_index), pads left out; ``both``: the average of the two. The head is linear, so pooling its
    outputs equals applying it to the pooled hidden vectors.
    """
    check_choice(pooling, "pooling", POOLINGS)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3:
        raise ValueError("logits must be a (batch, tokens, classes) tensor, got "
                         f"{tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__}")
    last_index = torch.as_tensor(last_index, device=logits.device)
    if last_index.shape != logits.shape[:1] or bool((last_index < 0).any() | (last_index >= logits.shape[1]).any()):
        raise ValueError(f"last_index must hold one position in 0..{logits.shape[1] - 1} per text "
                         f"({logits.shape[0]}), got {last_index.tolist()}")
    rows = torch.arange(logits.shape[0], device=logits.device)
    last = logits[rows, last_index]
    if pooling == "last":
        return last
    real = torch.arange(logits.shape[1], device=logits.device)[None, :] <= last_index[:, None]
    mean = (logits * real[..., None]).sum(1) / real.sum(1, keepdim=True)
    return mean if pooling == "mean" else (last + mean) / 2


def pool_windows(logits: torch.Tensor, owner: Sequence[int] | torch.Tensor, n_texts: int,
                 how: str = "mean") -> torch.Tensor:
    """One row of class logits per text from per-window logits (windows, classes); window ``i`` belongs to
    text ``owner[i]``. ``mean``: the average over the text's windows (every part votes); ``max``: for each
    class its largest window logit (the text is as spammy as its spammiest window, and as hammy as its
    hammiest); ``first``: the first window's (what a reader that truncates sees)."""
    check_choice(how, "how", WINDOW_POOLINGS)
    owner = torch.as_tensor(owner, dtype=torch.long, device=logits.device)
    if logits.dim() != 2 or owner.shape != logits.shape[:1]:
        raise ValueError(f"need (windows, classes) logits and one owner per window, got {tuple(logits.shape)} "
                         f"and {tuple(owner.shape)}")
    if torch.bincount(owner, minlength=n_texts).eq(0).any() or owner.max() >= n_texts:
        raise ValueError(f"every text 0..{n_texts - 1} needs at least one window, and no window another owner")
    classes = logits.shape[1]
    if how == "mean":
        total = logits.new_zeros(n_texts, classes).index_add_(0, owner, logits)
        return total / torch.bincount(owner, minlength=n_texts).to(logits.dtype)[:, None]
    if how == "max":
        return logits.new_full((n_texts, classes), float("-inf")).scatter_reduce(
            0, owner[:, None].expand(-1, classes), logits, reduce="amax")
    first = torch.ones_like(owner, dtype=torch.bool)
    first[1:] = owner[1:] != owner[:-1]
    return logits[first]


@torch.no_grad()
def window_logits(model: GPTModel, texts: WindowedTexts, batch_size: int = 128) -> torch.Tensor:
    """Class logits (windows, classes) of every window of ``texts``, in eval mode, batched by length."""
    _head(model)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i][0]))  # similar lengths: little padding
    out = torch.empty(len(texts), model.out_head.out_features)
    with eval_mode(model):
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            input_ids, _, last_index = pad_collate([texts[i] for i in chunk], texts.pad_id)
            out[chunk] = class_logits(model, input_ids, last_index).float().cpu()
    return out


def classifier_metrics(model: GPTModel, texts: WindowedTexts, how: str = "mean", positive: int = 1,
                       logits: torch.Tensor | None = None) -> dict:
    """The classifier's one evaluation: every window of ``texts`` is run and their logits pooled per text
    (``how``; a text of one window is just that window: ``texts.first_windows()`` reads each text truncated).

    Returns the loss (cross-entropy of the pooled logits), accuracy, precision, recall and F1 of class
    ``positive``, the confusion matrix, ``n`` (texts) and the predictions. Pass ``logits`` (from
    :func:`window_logits`) to pool one run several ways without running it again.
    """
    logits = window_logits(model, texts) if logits is None else logits
    pooled = pool_windows(logits, texts.owner, texts.n_texts, how)
    labels = torch.tensor(texts.labels)
    y_pred = pooled.argmax(-1).tolist()
    cm = confusion_matrix(texts.labels, y_pred, pooled.shape[1])
    return {"loss": F.cross_entropy(pooled, labels).item(), **metrics_from_confusion(cm, positive),
            "confusion": cm, "n": texts.n_texts, "predictions": y_pred}


def class_logits(model: GPTModel, input_ids: torch.Tensor, last_index: torch.Tensor) -> torch.Tensor:
    """Class logits (batch, num_classes), pooled the way the model's head says."""
    return _head(model).pool(model(input_ids.to(model.device)), last_index)


def classification_loss(model: GPTModel, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of one ``(input_ids, labels, last_index)`` batch: the ``loss_fn`` for ``finetune``."""
    input_ids, labels, last_index = batch
    return F.cross_entropy(class_logits(model, input_ids, last_index), labels.to(model.device))


def fine_tune_classifier(model: GPTModel, train_loader: DataLoader, config: FinetuneConfig,
                         val_texts: WindowedTexts | None = None) -> FinetuneHistory:
    """:func:`~gpt2_core.finetuning.loop.finetune` with :func:`classification_loss`; validation accuracy and
    loss (:func:`classifier_metrics`) are recorded at each evaluation when ``val_texts`` is given. Freeze (or
    not) before calling it."""
    _head(model)
    if val_texts is not None and not isinstance(val_texts, WindowedTexts):
        raise TypeError(f"val_texts must be WindowedTexts, got {type(val_texts).__name__}")

    def validate(m: GPTModel) -> dict:
        result = classifier_metrics(m, val_texts)
        return {"val_loss": result["loss"], "val_accuracy": result["accuracy"]}

    return finetune(model, train_loader, classification_loss, config, validate if val_texts is not None else None)


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int = 2) -> list[list[int]]:
    """``cm[t][p]`` = how many examples of true class ``t`` were predicted as ``p``."""
    y_true, y_pred = [int(y) for y in y_true], [int(y) for y in y_pred]
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} labels but y_pred has {len(y_pred)}; they must match")
    cm = [[0] * num_classes for _ in range(num_classes)]
    for t, p in zip(y_true, y_pred, strict=True):
        if not (0 <= t < num_classes and 0 <= p < num_classes):
            raise ValueError(f"label {t if not 0 <= t < num_classes else p} is outside 0..{num_classes - 1}")
        cm[t][p] += 1
    return cm


def metrics_from_confusion(cm: Sequence[Sequence[int]], positive: int = 1) -> dict[str, float]:
    """Accuracy, and precision/recall/F1 of the ``positive`` class; an undefined ratio (0/0) is 0.0."""
    n = len(cm)
    if n < 2 or any(len(row) != n for row in cm):
        raise ValueError(f"a confusion matrix must be square and at least 2x2, got {[len(r) for r in cm]} rows")
    if not 0 <= positive < n:
        raise ValueError(f"positive={positive} is not a class of this {n}x{n} matrix")
    total = sum(sum(row) for row in cm)
    correct = sum(cm[i][i] for i in range(n))
    tp = cm[positive][positive]
    predicted = sum(cm[t][positive] for t in range(n))  # tp + fp
    actual = sum(cm[positive])  # tp + fn
    precision = tp / predicted if predicted else 0.0
    recall = tp / actual if actual else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": correct / total if total else 0.0, "precision": precision, "recall": recall, "f1": f1}


@torch.no_grad()
def classify(model: GPTModel, tokenizer: Any, text: str, max_length: int | None = None,
             labels: Sequence[str] = ("ham", "spam"), how: str = "mean") -> str:
    """The label the fine-tuned ``model`` gives ``text``, read whole: a text longer than ``max_length``
    tokens (default and at most: the model's context) is cut into windows whose logits are pooled (``how``)."""
    head = _head(model)
    _check_text(text, "text")
    if len(labels) != head.out_features:
        raise ValueError(f"got {len(labels)} label names for a head with {head.out_features} classes")
    limit = min(max_length or model.cfg.context_length, model.cfg.context_length)
    texts = WindowedTexts([text], [0], tokenizer, limit)
    return labels[int(classifier_metrics(model, texts, how)["predictions"][0])]
