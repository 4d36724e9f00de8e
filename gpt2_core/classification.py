"""Fine-tuning GPT for classification (chapter 6): a new head, freezing, padded batches, metrics.

The recipe of GPT-1 (Radford et al., 2018) and ULMFiT (Howard & Ruder, 2018): keep the pretrained
network, swap the 50,257-way next-token head for a small ``num_classes``-way head, train only the
top of the network, and read the prediction from the *last real token* of each text, the only
position that (under causal attention) has seen the whole text.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .bpe_ranks import ENDOFTEXT_ID
from .model import GPTModel


# ------------------------------------------------------------------------------------ the head
def _check_model(model: object) -> GPTModel:
    if not isinstance(model, GPTModel):
        raise TypeError(f"expected a GPTModel, got {type(model).__name__}")
    return model


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


def add_classification_head(model: GPTModel, num_classes: int = 2) -> GPTModel:
    """Replace ``model.out_head`` by a fresh ``Linear(emb_dim, num_classes)`` (untied); returns the model.

    The new head starts like every other GPT-2 linear layer: weights N(0, 0.02), bias zero.
    """
    _check_model(model)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if num_classes == model.cfg.vocab_size:
        raise ValueError(f"num_classes={num_classes} equals the vocabulary size; a classifier this wide "
                         "would be mistaken for the next-token head")
    ref = model.tok_emb.weight
    head = nn.Linear(model.cfg.emb_dim, num_classes, device=ref.device, dtype=ref.dtype)
    nn.init.normal_(head.weight, mean=0.0, std=0.02)
    nn.init.zeros_(head.bias)
    model.out_head = head  # a new module: the tie to tok_emb is gone
    return model


def freeze_for_finetuning(model: GPTModel, trainable_blocks: int = 1) -> int:
    """Freeze everything except the last ``trainable_blocks`` blocks, ``final_norm`` and the head.

    Returns the number of trainable parameters. The head must be a classification head already
    (unfreezing the tied next-token head would unfreeze the token embeddings too).
    """
    _require_head(_check_model(model))
    n_layers = len(model.blocks)
    if isinstance(trainable_blocks, bool) or not isinstance(trainable_blocks, int) \
            or not 0 <= trainable_blocks <= n_layers:
        raise ValueError(f"trainable_blocks must be an int from 0 to {n_layers} (the number of blocks), "
                         f"got {trainable_blocks!r}")
    model.requires_grad_(False)
    for block in list(model.blocks)[n_layers - trainable_blocks:]:
        block.requires_grad_(True)
    model.final_norm.requires_grad_(True)
    model.out_head.requires_grad_(True)
    return model.num_parameters(trainable_only=True)


# ------------------------------------------------------------------------------------ the data
def _encode(tokenizer, text: str) -> list[int]:
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


class ClassificationDataset(Dataset):
    """Texts encoded to token ids (truncated to ``max_length``) with integer labels.

    ``max_length=None`` uses the longest encoded text. Texts longer than ``max_length`` keep their
    first ``max_length`` tokens; how many were cut is in ``n_truncated`` (and a warning says so).
    Batches from :meth:`collate` are right-padded with ``pad_id`` and carry each text's last index.
    """

    def __init__(self, texts: Sequence[str], labels: Sequence[int], tokenizer, max_length: int | None = None,
                 pad_id: int = ENDOFTEXT_ID) -> None:
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
        encoded = [_encode(tokenizer, _check_text(t, f"text {i}")) for i, t in enumerate(texts)]
        self.max_length = max_length or max(len(ids) for ids in encoded)
        self.n_truncated = sum(len(ids) > self.max_length for ids in encoded)
        if self.n_truncated:
            warnings.warn(f"{self.n_truncated} of {len(texts)} texts are longer than max_length="
                          f"{self.max_length} tokens and were truncated to their first {self.max_length}",
                          stacklevel=2)
        self.ids = [ids[: self.max_length] for ids in encoded]
        self.labels = labels
        self.pad_id = pad_id

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[list[int], int]:
        return self.ids[i], self.labels[i]

    def collate(self, batch: Sequence[tuple[list[int], int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(input_ids, labels, last_index)``; see :func:`pad_collate`."""
        return pad_collate(batch, self.pad_id)

    def loader(self, batch_size: int = 8, shuffle: bool = False, seed: int = 123) -> DataLoader:
        """A DataLoader over this dataset using :meth:`collate` (seeded shuffling)."""
        gen = torch.Generator().manual_seed(seed)
        return DataLoader(self, batch_size=batch_size, shuffle=shuffle, collate_fn=self.collate, generator=gen)


def pad_collate(batch: Sequence[tuple[Sequence[int], int]], pad_id: int = ENDOFTEXT_ID,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad a batch of ``(ids, label)`` to its longest text.

    Returns ``input_ids`` (batch, longest), ``labels`` (batch,) and ``last_index`` (batch,), the
    position of each text's last real token. Right padding is harmless under causal attention:
    positions before the pad never attend to it.
    """
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


# ---------------------------------------------------------------------------- forward + metrics
def last_token_logits(model: GPTModel, input_ids: torch.Tensor, last_index: torch.Tensor) -> torch.Tensor:
    """Class logits (batch, num_classes) read at each text's last real token."""
    logits = model(input_ids)  # (batch, tokens, num_classes)
    rows = torch.arange(logits.shape[0], device=logits.device)
    return logits[rows, last_index.to(logits.device)]


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
    for b, (input_ids, labels, last_index) in enumerate(loader):
        if max_batches is not None and b >= max_batches:
            break
        logits = last_token_logits(model, input_ids.to(model.device), last_index)
        loss_sum += F.cross_entropy(logits, labels.to(model.device), reduction="sum").item()
        y_true += labels.tolist()
        y_pred += logits.argmax(dim=-1).tolist()
    model.train(was_training)
    return y_true, y_pred, loss_sum / max(len(y_true), 1)


def evaluate(model: GPTModel, loader: DataLoader, positive: int = 1, max_batches: int | None = None) -> dict:
    """Loss, accuracy, precision, recall, F1 (of class ``positive``) and the confusion matrix."""
    y_true, y_pred, loss = predict(model, loader, max_batches)
    if not y_true:
        raise ValueError("the loader gave no examples to evaluate")
    cm = confusion_matrix(y_true, y_pred, model.out_head.out_features)
    return {"loss": loss, **metrics_from_confusion(cm, positive), "confusion": cm, "n": len(y_true)}


# --------------------------------------------------------------------------------- training
def train_classifier(model: GPTModel, train_loader: DataLoader, val_loader: DataLoader, epochs: int = 3,
                     lr: float = 5e-5, weight_decay: float = 0.1, progress: bool = True) -> list[dict]:
    """Fine-tune with AdamW on the trainable parameters; one history row per epoch.

    ``train_loss``/``train_acc`` are running averages over the epoch's batches (dropout on, weights
    changing), the usual cheap estimate; ``val_*`` come from a full pass in eval mode afterwards.
    """
    from tqdm.auto import tqdm

    _require_head(_check_model(model))
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs <= 0:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters: call freeze_for_finetuning with trainable_blocks >= 0 "
                         "(it always leaves the head trainable)")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    history = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        bar = tqdm(train_loader, desc=f"epoch {epoch}/{epochs}", disable=not progress, leave=False)
        for input_ids, labels, last_index in bar:
            labels = labels.to(model.device)
            logits = last_token_logits(model, input_ids.to(model.device), last_index)
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(labels)
            correct += (logits.argmax(-1) == labels).sum().item()
            seen += len(labels)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        val = evaluate(model, val_loader)
        history.append({"epoch": epoch, "train_loss": loss_sum / seen, "train_acc": correct / seen,
                        "val_loss": val["loss"], "val_acc": val["accuracy"],
                        "seconds": time.perf_counter() - start})
    model.eval()
    return history


@torch.no_grad()
def classify(model: GPTModel, tokenizer, text: str, max_length: int | None = None,
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
    input_ids = torch.tensor([ids], dtype=torch.long, device=model.device)
    logits = last_token_logits(model, input_ids, torch.tensor([len(ids) - 1]))
    model.train(was_training)
    return labels[int(logits.argmax(-1))]
