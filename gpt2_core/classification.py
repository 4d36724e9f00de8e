"""Fine-tuning GPT for classification (chapter 6): a new head, pooling, padded batches, metrics.

GPT-1 (Radford et al., 2018) keeps the pretrained network, adds a small linear head that reads the
last token's vector, and fine-tunes *the whole network* (with the language-model loss as an
auxiliary term). ULMFiT (Howard & Ruder, 2018) adds a middle step, language-model training on the
task's own unlabelled text, then fine-tunes the classifier with *discriminative learning rates*
(smaller for lower layers) and *gradual unfreezing* (the top layer first, one more each epoch).

Here: :func:`add_classification_head` swaps the next-token head for a ``num_classes``-way one that
remembers how it *pools* the per-token outputs into one per text (``last``: the last real token, the
only position that has seen the whole text under causal attention; ``mean``: the average over the
real tokens; ``both``: the average of the two). :func:`classification_loss` is the ``loss_fn`` for
:func:`gpt2_core.finetune.finetune`, and :func:`lm_loader` + :func:`language_model_loss` run the
ULMFiT middle step through the same loop.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .data import create_dataloader, num_windows
from .finetune import FinetuneConfig, FinetuneHistory, finetune
from .model import GPTModel
from .training import calc_loss_batch

POOLINGS = ("last", "mean", "both")


# ------------------------------------------------------------------------------------ the head
def _check_model(model: object) -> GPTModel:
    if not isinstance(model, GPTModel):
        raise TypeError(f"expected a GPTModel, got {type(model).__name__}")
    return model


def _check_pooling(pooling: object) -> str:
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    return pooling  # type: ignore[return-value]


def has_classification_head(model: GPTModel) -> bool:
    """True when ``model.out_head`` is a small classifier (not the tied next-token head)."""
    head = _check_model(model).out_head
    return head.out_features != model.cfg.vocab_size and head.weight is not model.tok_emb.weight


def _require_head(model: GPTModel) -> None:
    if not has_classification_head(model):
        raise ValueError(
            f"this model still has its next-token head ({model.out_head.out_features} outputs = the vocabulary); "
            "call add_classification_head(model, num_classes) first (and fine-tune it)"
        )


def head_pooling(model: GPTModel) -> str:
    """How the classification head of ``model`` pools the token outputs (``last``, ``mean`` or ``both``)."""
    _require_head(_check_model(model))
    return getattr(model.out_head, "pooling", "last")


def add_classification_head(model: GPTModel, num_classes: int = 2, pooling: str = "mean") -> GPTModel:
    """Replace ``model.out_head`` by a fresh ``Linear(emb_dim, num_classes)`` (untied); returns the model.

    The new head starts like every other GPT-2 linear layer (weights N(0, 0.02), bias zero) and
    carries ``pooling``, which every function here then uses to read one prediction per text.
    """
    _check_model(model)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if num_classes == model.cfg.vocab_size:
        raise ValueError(f"num_classes={num_classes} equals the vocabulary size; a classifier this wide "
                         "would be mistaken for the next-token head")
    _check_pooling(pooling)
    ref = model.tok_emb.weight
    head = nn.Linear(model.cfg.emb_dim, num_classes, device=ref.device, dtype=ref.dtype)
    nn.init.normal_(head.weight, mean=0.0, std=0.02)
    nn.init.zeros_(head.bias)
    head.pooling = pooling
    model.out_head = head  # a new module: the tie to tok_emb is gone
    return model


def freeze_for_finetuning(model: GPTModel, trainable_blocks: int | None = None, train_embeddings: bool = True) -> int:
    """Choose what trains: the last ``trainable_blocks`` blocks (``None``: all), ``final_norm``, the head and,
    with ``train_embeddings``, the token and position embeddings. Returns the number of trainable parameters.

    The default (everything trains) is GPT-1's full fine-tuning, which measured best here. The head must
    be a classification head already (the tied next-token head would unfreeze the embeddings with it).
    """
    _require_head(_check_model(model))
    n_layers = len(model.blocks)
    if trainable_blocks is None:
        trainable_blocks = n_layers
    if isinstance(trainable_blocks, bool) or not isinstance(trainable_blocks, int) \
            or not 0 <= trainable_blocks <= n_layers:
        raise ValueError(f"trainable_blocks must be None (all) or an int from 0 to {n_layers} (the number of "
                         f"blocks), got {trainable_blocks!r}")
    if not isinstance(train_embeddings, bool):
        raise TypeError(f"train_embeddings must be True or False, got {train_embeddings!r}")
    model.requires_grad_(False)
    for block in list(model.blocks)[n_layers - trainable_blocks:]:
        block.requires_grad_(True)
    if train_embeddings:
        model.tok_emb.requires_grad_(True)
        model.pos_emb.requires_grad_(True)
    model.final_norm.requires_grad_(True)
    model.out_head.requires_grad_(True)
    return model.num_parameters(trainable_only=True)


# ------------------------------------------------------------------------------------ the data
def _encode(tokenizer, text: str) -> list[int]:  # noqa: ANN001 - a tiktoken Encoding or BPETokenizer
    # tiktoken refuses special-token text such as "<|endoftext|>" inside an e-mail; treat it as text.
    if hasattr(tokenizer, "encode_ordinary"):
        return tokenizer.encode_ordinary(text)
    return tokenizer.encode(text)


def _check_text(text: object, where: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"{where} must be a str, got {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"{where} is empty; give some text to classify (drop empty texts from the data)")
    return text


def pad_id_of(tokenizer) -> int:  # noqa: ANN001
    """The padding id for ``tokenizer``: its ``<|endoftext|>`` id (``eot_token``), whatever its vocabulary."""
    eot = getattr(tokenizer, "eot_token", None)
    if isinstance(eot, int) and not isinstance(eot, bool):
        return eot
    raise ValueError(f"{type(tokenizer).__name__} has no eot_token; pass pad_id= explicitly "
                     "(any id of the model's vocabulary: padded positions are never read)")


def _check_pad_id(pad_id: object) -> int:
    if isinstance(pad_id, bool) or not isinstance(pad_id, int) or pad_id < 0:
        raise ValueError(f"pad_id must be a non-negative int (e.g. tokenizer.eot_token), got {pad_id!r}")
    return pad_id


class ClassificationDataset(Dataset):
    """Texts encoded to token ids (truncated to ``max_length``) with integer labels.

    ``max_length=None`` uses the longest encoded text. Texts longer than ``max_length`` keep their
    first ``max_length`` tokens; how many were cut is in ``n_truncated`` (and a warning says so).
    Batches from :meth:`collate` are right-padded with ``pad_id`` (default: the tokenizer's
    ``<|endoftext|>`` id) and carry each text's last index.
    """

    def __init__(self, texts: Sequence[str], labels: Sequence[int], tokenizer, max_length: int | None = None,  # noqa: ANN001
                 pad_id: int | None = None) -> None:
        texts, labels = list(texts), [int(y) for y in labels]
        if len(texts) != len(labels):
            raise ValueError(f"got {len(texts)} texts but {len(labels)} labels; give one label per text")
        if not texts:
            raise ValueError("no texts given; a dataset needs at least one example")
        if min(labels) < 0:
            raise ValueError(f"labels must be class indices 0, 1, ...; got {min(labels)}")
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)
                                       or max_length <= 0):
            raise ValueError(f"max_length must be a positive int or None, got {max_length!r}")
        self.pad_id = _check_pad_id(pad_id_of(tokenizer) if pad_id is None else pad_id)
        encoded = [_encode(tokenizer, _check_text(t, f"text {i}")) for i, t in enumerate(texts)]
        self.max_length = max_length or max(len(ids) for ids in encoded)
        self.n_truncated = sum(len(ids) > self.max_length for ids in encoded)
        if self.n_truncated:
            warnings.warn(f"{self.n_truncated} of {len(texts)} texts are longer than max_length="
                          f"{self.max_length} tokens and were truncated to their first {self.max_length}",
                          stacklevel=2)
        self.ids = [ids[: self.max_length] for ids in encoded]
        self.full_lengths = [len(ids) for ids in encoded]
        self.labels = labels

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[list[int], int]:
        return self.ids[i], self.labels[i]

    def subset(self, indices: Sequence[int]) -> ClassificationDataset:
        """A dataset of the examples at ``indices`` (already encoded: nothing is tokenized again)."""
        out = object.__new__(ClassificationDataset)
        indices = [int(i) for i in indices]
        if not indices:
            raise ValueError("indices is empty; a dataset needs at least one example")
        out.ids = [self.ids[i] for i in indices]
        out.full_lengths = [self.full_lengths[i] for i in indices]
        out.labels = [self.labels[i] for i in indices]
        out.max_length, out.pad_id = self.max_length, self.pad_id
        out.n_truncated = sum(n > self.max_length for n in out.full_lengths)
        return out

    def collate(self, batch: Sequence[tuple[list[int], int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(input_ids, labels, last_index)``; see :func:`pad_collate`."""
        return pad_collate(batch, self.pad_id)

    def loader(self, batch_size: int = 8, shuffle: bool = False, seed: int = 123) -> DataLoader:
        """A DataLoader over this dataset using :meth:`collate` (seeded shuffling)."""
        gen = torch.Generator().manual_seed(seed)
        return DataLoader(self, batch_size=batch_size, shuffle=shuffle, collate_fn=self.collate, generator=gen)


def pad_collate(batch: Sequence[tuple[Sequence[int], int]], pad_id: int,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad a batch of ``(ids, label)`` to its longest text with ``pad_id`` (e.g. ``tokenizer.eot_token``).

    Returns ``input_ids`` (batch, longest), ``labels`` (batch,) and ``last_index`` (batch,), the
    position of each text's last real token. Right padding is harmless under causal attention:
    positions before the pad never attend to it.
    """
    _check_pad_id(pad_id)
    if not batch:
        raise ValueError("cannot collate an empty batch")
    if any(len(ids) == 0 for ids, _ in batch):
        raise ValueError("a text in the batch has no tokens; drop empty texts before batching")
    longest = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), longest), pad_id, dtype=torch.long)
    for row, (ids, _) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.as_tensor(list(ids), dtype=torch.long)
    labels = torch.tensor([int(y) for _, y in batch], dtype=torch.long)
    last_index = torch.tensor([len(ids) - 1 for ids, _ in batch], dtype=torch.long)
    return input_ids, labels, last_index


# ------------------------------------------------------------------------------ pooling + loss
def pool_logits(logits: torch.Tensor, last_index: torch.Tensor, pooling: str = "mean") -> torch.Tensor:
    """One row of class logits per text from per-token logits (batch, tokens, classes).

    ``last``: the logits at each text's last real token; ``mean``: their average over the real tokens
    (0 .. last_index), pads left out; ``both``: the average of the two. The head is linear, so pooling its
    outputs equals applying it to the pooled hidden vectors.
    """
    _check_pooling(pooling)
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


def last_token_logits(model: GPTModel, input_ids: torch.Tensor, last_index: torch.Tensor) -> torch.Tensor:
    """Class logits (batch, num_classes) read at each text's last real token."""
    return pool_logits(model(input_ids), last_index, "last")


def class_logits(model: GPTModel, input_ids: torch.Tensor, last_index: torch.Tensor) -> torch.Tensor:
    """Class logits (batch, num_classes), pooled the way the model's head says (:func:`head_pooling`)."""
    return pool_logits(model(input_ids.to(model.device)), last_index, head_pooling(model))


def classification_loss(model: GPTModel, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of one ``(input_ids, labels, last_index)`` batch: the ``loss_fn`` for ``finetune``."""
    input_ids, labels, last_index = batch
    return F.cross_entropy(class_logits(model, input_ids, last_index), labels.to(model.device))


def fine_tune_classifier(model: GPTModel, train_loader: DataLoader, config: FinetuneConfig,
                         val_loader: DataLoader | None = None) -> FinetuneHistory:
    """:func:`~gpt2_core.finetune.finetune` with :func:`classification_loss`; validation accuracy and loss
    are recorded at each evaluation when ``val_loader`` is given. Freeze (or not) before calling it."""
    _require_head(_check_model(model))

    def validate(m: GPTModel) -> dict:
        result = evaluate(m, val_loader)
        return {"val_loss": result["loss"], "val_accuracy": result["accuracy"]}

    return finetune(model, train_loader, classification_loss, config, validate if val_loader is not None else None)


# ----------------------------------------------------------------- ULMFiT's middle step: the LM
def lm_loader(texts: Sequence[str], tokenizer, context_length: int, batch_size: int = 32,  # noqa: ANN001
              shuffle: bool = True, seed: int = 123) -> DataLoader:
    """Next-token windows over ``texts`` joined by ``<|endoftext|>``: language-model data from unlabelled text.

    ULMFiT's middle step continues the pretrained model's language-model training on the task's own
    (training) texts before the classifier is trained. Use it with :func:`language_model_loss`. The
    windows do not overlap; ``shuffle=False`` keeps their order (for evaluation).
    """
    texts = [_check_text(t, f"text {i}") for i, t in enumerate(texts)]
    if not texts:
        raise ValueError("no texts given; the language-model step needs some unlabelled text")
    eot = pad_id_of(tokenizer)
    ids: list[int] = []
    for text in texts:
        ids += _encode(tokenizer, text) + [eot]
    full_batches = num_windows(len(ids), context_length, context_length) >= batch_size
    return create_dataloader(ids, context_length=context_length, batch_size=batch_size, shuffle=shuffle,
                             drop_last=shuffle and full_batches, seed=seed)


def language_model_loss(model: GPTModel, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Next-token cross-entropy of one ``(inputs, targets)`` batch: the ``loss_fn`` for the LM step."""
    if has_classification_head(_check_model(model)):
        raise ValueError("this model has a classification head; run the language-model step before "
                         "add_classification_head (it needs the next-token head)")
    return calc_loss_batch(model, *batch)


# ---------------------------------------------------------------------------------- metrics
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
def predict(model: GPTModel, loader: DataLoader, max_batches: int | None = None
            ) -> tuple[list[int], list[int], float]:
    """True labels, predicted labels and mean loss over (up to ``max_batches`` of) ``loader``."""
    _require_head(_check_model(model))
    was_training = model.training
    model.eval()
    y_true: list[int] = []
    y_pred: list[int] = []
    loss_sum = 0.0
    try:
        for b, (input_ids, labels, last_index) in enumerate(loader):
            if max_batches is not None and b >= max_batches:
                break
            logits = class_logits(model, input_ids, last_index)
            loss_sum += F.cross_entropy(logits, labels.to(model.device), reduction="sum").item()
            y_true += labels.tolist()
            y_pred += logits.argmax(dim=-1).tolist()
    finally:
        model.train(was_training)
    return y_true, y_pred, loss_sum / max(len(y_true), 1)


def evaluate(model: GPTModel, loader: DataLoader, positive: int = 1, max_batches: int | None = None) -> dict:
    """Loss, accuracy, precision, recall, F1 (of class ``positive``), the confusion matrix and the predictions."""
    y_true, y_pred, loss = predict(model, loader, max_batches)
    if not y_true:
        raise ValueError("the loader gave no examples to evaluate")
    cm = confusion_matrix(y_true, y_pred, model.out_head.out_features)
    return {"loss": loss, **metrics_from_confusion(cm, positive), "confusion": cm, "n": len(y_true),
            "predictions": y_pred}


@torch.no_grad()
def classify(model: GPTModel, tokenizer, text: str, max_length: int | None = None,  # noqa: ANN001
             labels: Sequence[str] = ("ham", "spam")) -> str:
    """The label the fine-tuned ``model`` gives ``text`` (truncated, with a warning, if too long)."""
    _require_head(_check_model(model))
    _check_text(text, "text")
    if len(labels) != model.out_head.out_features:
        raise ValueError(f"got {len(labels)} label names for a head with {model.out_head.out_features} classes")
    limit = min(max_length or model.cfg.context_length, model.cfg.context_length)
    ids = _encode(tokenizer, text)
    if len(ids) > limit:
        warnings.warn(f"the text has {len(ids)} tokens; only its first {limit} were classified", stacklevel=2)
        ids = ids[:limit]
    was_training = model.training
    model.eval()
    try:
        input_ids = torch.tensor([ids], dtype=torch.long, device=model.device)
        logits = class_logits(model, input_ids, torch.tensor([len(ids) - 1]))
    finally:
        model.train(was_training)
    return labels[int(logits.argmax(-1))]
