"""Classification fine-tuning: the head, freezing, padded batches, last-token logits, metrics, errors."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2_core import classification as clf
from gpt2_core.config import GPTConfig
from gpt2_core.exercises import check_exercise
from gpt2_core.model import GPTModel

CFG = GPTConfig(vocab_size=300, context_length=12, emb_dim=16, n_heads=2, n_layers=3, drop_rate=0.0)


class ByteTokenizer:
    """One token per UTF-8 byte: enough to test the pipeline without the GPT-2 ranks."""

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))


def _model(num_classes: int | None = 2, seed: int = 0) -> GPTModel:
    torch.manual_seed(seed)
    model = GPTModel(CFG)
    if num_classes:
        clf.add_classification_head(model, num_classes)
    return model.eval()


# ------------------------------------------------------------------------------------ the head
def test_add_head_replaces_and_unties():
    model = _model(None)
    emb_before = model.tok_emb.weight.detach().clone()
    assert not clf.has_classification_head(model)
    clf.add_classification_head(model, 3)
    assert clf.has_classification_head(model)
    assert (model.out_head.in_features, model.out_head.out_features) == (16, 3)
    assert model.out_head.weight is not model.tok_emb.weight
    assert model(torch.tensor([[1, 2, 3]])).shape == (1, 3, 3)
    torch.testing.assert_close(model.tok_emb.weight, emb_before)  # embeddings untouched


@pytest.mark.parametrize("bad", [1, 0, 2.0, True, CFG.vocab_size])
def test_add_head_rejects_bad_num_classes(bad):
    with pytest.raises(ValueError, match="num_classes"):
        clf.add_classification_head(_model(None), bad)


def test_add_head_rejects_non_models():
    with pytest.raises(TypeError, match="GPTModel"):
        clf.add_classification_head(torch.nn.Linear(2, 2))


# ------------------------------------------------------------------------------------ freezing
def _trainable_names(model: GPTModel) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def _names_under(model: GPTModel, *prefixes: str) -> set[str]:
    return {name for name, _ in model.named_parameters() if name.startswith(prefixes)}


def test_freeze_keeps_exactly_last_block_final_norm_and_head():
    model = _model()
    count = clf.freeze_for_finetuning(model, trainable_blocks=1)
    want = _names_under(model, "blocks.2.", "final_norm.", "out_head.")
    assert _trainable_names(model) == want
    assert count == sum(p.numel() for n, p in model.named_parameters() if n in want)
    assert count == model.num_parameters(trainable_only=True)


def test_freeze_more_blocks_and_none():
    model = _model()
    clf.freeze_for_finetuning(model, trainable_blocks=2)
    assert _trainable_names(model) == _names_under(model, "blocks.1.", "blocks.2.", "final_norm.", "out_head.")
    clf.freeze_for_finetuning(model, trainable_blocks=0)  # re-freezing also works
    assert _trainable_names(model) == _names_under(model, "final_norm.", "out_head.")
    assert not model.tok_emb.weight.requires_grad and not model.pos_emb.weight.requires_grad


def test_freeze_errors():
    with pytest.raises(ValueError, match="add_classification_head"):
        clf.freeze_for_finetuning(_model(None))
    for bad in (-1, 4, 1.5):
        with pytest.raises(ValueError, match="trainable_blocks"):
            clf.freeze_for_finetuning(_model(), bad)


# ---------------------------------------------------------------------------- dataset + collate
def test_collate_right_pads_and_records_last_index():
    ids, labels, last = clf.pad_collate([([5, 6, 7], 1), ([8], 0), ([9, 10], 1)], pad_id=99)
    assert ids.tolist() == [[5, 6, 7], [8, 99, 99], [9, 10, 99]]
    assert labels.tolist() == [1, 0, 1]
    assert last.tolist() == [2, 0, 1]
    with pytest.raises(ValueError, match="empty batch"):
        clf.pad_collate([])
    with pytest.raises(ValueError, match="no tokens"):
        clf.pad_collate([([], 0)])


def test_dataset_truncates_with_a_warning_and_count():
    texts = ["short", "exactly8", "much longer than eight"]
    with pytest.warns(UserWarning, match="1 of 3 texts"):
        ds = clf.ClassificationDataset(texts, [0, 1, 0], ByteTokenizer(), max_length=8)
    assert ds.n_truncated == 1 and len(ds) == 3
    assert ds[2] == (list(b"much lon"), 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = clf.ClassificationDataset(texts, [0, 1, 0], ByteTokenizer())  # None: the longest text
    assert ds.max_length == len("much longer than eight") and ds.n_truncated == 0


def test_dataset_loader_batches_with_last_index():
    ds = clf.ClassificationDataset(["ab", "abcd", "a"], [0, 1, 1], ByteTokenizer(), pad_id=0)
    ids, labels, last = next(iter(ds.loader(batch_size=3)))
    assert ids.shape == (3, 4) and last.tolist() == [1, 3, 0] and labels.tolist() == [0, 1, 1]
    assert ids[2].tolist() == [ord("a"), 0, 0, 0]


def test_dataset_errors():
    tok = ByteTokenizer()
    with pytest.raises(ValueError, match="2 texts but 1 labels"):
        clf.ClassificationDataset(["a", "b"], [0], tok)
    with pytest.raises(ValueError, match="text 1 is empty"):
        clf.ClassificationDataset(["a", "  "], [0, 1], tok)
    with pytest.raises(ValueError, match="max_length"):
        clf.ClassificationDataset(["a"], [0], tok, max_length=0)
    with pytest.raises(ValueError, match="at least one"):
        clf.ClassificationDataset([], [], tok)
    with pytest.raises(TypeError, match="must be a str"):
        clf.ClassificationDataset([3], [0], tok)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 10), min_size=1, max_size=4))
def test_padded_batch_gives_the_same_logits_as_each_text_alone(lengths):
    """The pad never changes the answer: the last real token's logits equal the unpadded run's."""
    model = _model()
    gen = torch.Generator().manual_seed(sum(lengths))
    seqs = [torch.randint(0, CFG.vocab_size, (n,), generator=gen).tolist() for n in lengths]
    ids, _, last = clf.pad_collate([(s, 0) for s in seqs], pad_id=7)
    with torch.no_grad():
        batched = clf.last_token_logits(model, ids, last)
        alone = torch.stack([model(torch.tensor([s]))[0, -1] for s in seqs])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------------------------ metrics
def test_confusion_matrix_by_hand():
    y_true = [0, 0, 1, 1, 1, 0, 1]
    y_pred = [0, 1, 1, 0, 1, 0, 1]
    # true 0: predicted 0 twice, 1 once; true 1: predicted 0 once, 1 three times
    assert clf.confusion_matrix(y_true, y_pred) == [[2, 1], [1, 3]]
    assert clf.confusion_matrix([2, 0], [1, 2], num_classes=3) == [[0, 0, 1], [0, 0, 0], [0, 1, 0]]
    with pytest.raises(ValueError, match="must match"):
        clf.confusion_matrix([0], [0, 1])
    with pytest.raises(ValueError, match="outside"):
        clf.confusion_matrix([0, 2], [0, 1])


def test_metrics_by_hand():
    # tn=50, fp=10, fn=5, tp=35: precision 35/45, recall 35/40, accuracy 85/100
    m = clf.metrics_from_confusion([[50, 10], [5, 35]])
    assert m["accuracy"] == pytest.approx(0.85)
    assert m["precision"] == pytest.approx(7 / 9)
    assert m["recall"] == pytest.approx(7 / 8)
    assert m["f1"] == pytest.approx(2 * (7 / 9) * (7 / 8) / (7 / 9 + 7 / 8))
    # ham as the positive class: precision 50/55, recall 50/60
    m0 = clf.metrics_from_confusion([[50, 10], [5, 35]], positive=0)
    assert (m0["precision"], m0["recall"]) == (pytest.approx(50 / 55), pytest.approx(50 / 60))
    # nothing predicted positive: precision is 0/0, reported as 0.0 (and so is F1)
    none = clf.metrics_from_confusion([[8, 0], [2, 0]])
    assert none == {"accuracy": 0.8, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    with pytest.raises(ValueError, match="square"):
        clf.metrics_from_confusion([[1, 2]])
    with pytest.raises(ValueError, match="positive"):
        clf.metrics_from_confusion([[1, 0], [0, 1]], positive=2)


def test_evaluate_matches_hand_counts_of_predictions():
    model = _model()
    ds = clf.ClassificationDataset(["hello", "spam spam", "hi", "win money", "ok"], [0, 1, 0, 1, 1],
                                   ByteTokenizer(), pad_id=0)
    y_true, y_pred, _ = clf.predict(model, ds.loader(2))
    result = clf.evaluate(model, ds.loader(2))
    tp = sum(t == p == 1 for t, p in zip(y_true, y_pred, strict=True))
    assert result["n"] == 5
    assert result["accuracy"] == pytest.approx(sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / 5)
    assert result["recall"] == pytest.approx(tp / 3)
    assert sum(map(sum, result["confusion"])) == 5 and result["loss"] > 0


def test_evaluate_and_classify_refuse_a_model_without_a_classification_head():
    model = _model(None)
    ds = clf.ClassificationDataset(["a"], [0], ByteTokenizer())
    with pytest.raises(ValueError, match="add_classification_head"):
        clf.evaluate(model, ds.loader())
    with pytest.raises(ValueError, match="add_classification_head"):
        clf.classify(model, ByteTokenizer(), "hello")


# ------------------------------------------------------------------------- training + classify
def _toy_data(n: int) -> tuple[list[str], list[int]]:
    # class 1 texts end in "!", class 0 texts in "."; only the last token tells them apart
    gen = torch.Generator().manual_seed(n)
    texts, labels = [], []
    for i in range(n):
        stem = "".join(chr(97 + int(c)) for c in torch.randint(0, 26, (int(torch.randint(2, 9, (1,), generator=gen)),),
                                                              generator=gen))
        texts.append(stem + ("!" if i % 2 else "."))
        labels.append(i % 2)
    return texts, labels


def test_training_learns_a_last_token_rule_and_reports_history():
    torch.manual_seed(0)
    model = _model()
    clf.freeze_for_finetuning(model, trainable_blocks=1)
    frozen_before = model.blocks[0].att.qkv.weight.detach().clone()
    texts, labels = _toy_data(64)
    ds = clf.ClassificationDataset(texts, labels, ByteTokenizer(), pad_id=0)
    history = clf.train_classifier(model, ds.loader(16, shuffle=True), ds.loader(32), epochs=6, lr=3e-3,
                                   progress=False)
    assert [h["epoch"] for h in history] == list(range(1, 7))
    assert set(history[0]) == {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"}
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    assert history[-1]["val_acc"] == 1.0
    torch.testing.assert_close(model.blocks[0].att.qkv.weight, frozen_before)  # frozen stays frozen
    assert clf.classify(model, ByteTokenizer(), "qwerty!") == "spam"
    assert clf.classify(model, ByteTokenizer(), "qwerty.", labels=("no", "yes")) == "no"


def test_train_classifier_errors():
    model = _model()
    ds = clf.ClassificationDataset(["a"], [0], ByteTokenizer())
    with pytest.raises(ValueError, match="epochs"):
        clf.train_classifier(model, ds.loader(), ds.loader(), epochs=0)
    with pytest.raises(ValueError, match="lr"):
        clf.train_classifier(model, ds.loader(), ds.loader(), epochs=1, lr=0)
    with pytest.raises(ValueError, match="add_classification_head"):
        clf.train_classifier(_model(None), ds.loader(), ds.loader(), epochs=1)


def test_classify_errors_and_truncation_warning():
    model = _model()
    tok = ByteTokenizer()
    with pytest.raises(ValueError, match="empty"):
        clf.classify(model, tok, "")
    with pytest.raises(ValueError, match="empty"):
        clf.classify(model, tok, "   ")
    with pytest.raises(TypeError, match="str"):
        clf.classify(model, tok, None)
    with pytest.raises(ValueError, match="3 label names"):
        clf.classify(model, tok, "hi", labels=("a", "b", "c"))
    with pytest.warns(UserWarning, match="only its first 12"):
        long_label = clf.classify(model, tok, "x" * 40)
    assert long_label == clf.classify(model, tok, "x" * 12)
    with pytest.warns(UserWarning, match="only its first 5"):
        clf.classify(model, tok, "x" * 40, max_length=5)


# ------------------------------------------------------------------------------------ exercises
def test_exercise_checkers_accept_right_and_reject_wrong_answers(capsys):
    def accuracy(y_true, y_pred):
        return sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(y_true)

    def f1(cm):
        return clf.metrics_from_confusion(cm)["f1"]

    def pick(logits, lengths):
        return logits[torch.arange(len(lengths)), lengths - 1]

    def stub(*args):
        raise NotImplementedError

    assert check_exercise("ch06.accuracy", accuracy)
    assert check_exercise("ch06.f1_from_confusion", f1)
    assert check_exercise("ch06.last_token_logits", pick)
    assert not check_exercise("ch06.accuracy", lambda t, p: 1.0)
    assert not check_exercise("ch06.f1_from_confusion", lambda cm: cm[1][1] / (cm[1][1] + cm[0][1]))
    assert not check_exercise("ch06.last_token_logits", lambda logits, lengths: logits[:, -1])
    assert not check_exercise("ch06.accuracy", stub)
    out = capsys.readouterr().out
    assert "padding" in out and "not attempted" in out
