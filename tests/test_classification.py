"""Classification fine-tuning: the head, pooling, freezing, padded batches, the LM step, metrics, errors."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2_core.finetuning import classification as clf
from gpt2_core.finetuning import classification_data as cdata
from gpt2_core.finetuning.loop import FinetuneConfig, FinetuneHistory, finetune
from gpt2_core.model.config import GPTConfig
from gpt2_core.model.gpt import GPTModel
from gpt2_core.pretraining.checkpoint import load_checkpoint, save_checkpoint
from gpt2_core.pretraining.step import lm_loss

CFG = GPTConfig(vocab_size=300, context_length=12, emb_dim=16, n_heads=2, n_layers=3, drop_rate=0.0)


class ByteTokenizer:
    """One token per UTF-8 byte, with tiktoken's interface: enough to test the pipeline without the GPT-2 ranks."""

    eot_token = 299
    n_vocab = 300
    special_tokens_set = {"<|endoftext|>"}

    def encode_ordinary(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    encode = encode_ordinary

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


def _model(num_classes: int | None = 2, seed: int = 0, pooling: str = "last") -> GPTModel:
    torch.manual_seed(seed)
    model = GPTModel(CFG)
    if num_classes:
        clf.add_classification_head(model, num_classes, pooling)
    return model.eval()


# ------------------------------------------------------------------------------------ the head
def test_add_head_replaces_and_unties():
    model = _model(None)
    emb_before = model.tok_emb.weight.detach().clone()
    assert not isinstance(model.out_head, clf.ClassificationHead)
    clf.add_classification_head(model, 3)
    assert isinstance(model.out_head, clf.ClassificationHead)
    assert (model.out_head.in_features, model.out_head.out_features) == (16, 3)
    assert model.out_head.weight is not model.tok_emb.weight
    assert model(torch.tensor([[1, 2, 3]])).shape == (1, 3, 3)
    torch.testing.assert_close(model.tok_emb.weight, emb_before)  # embeddings untouched


@pytest.mark.parametrize("bad", [1, 0, 2.0, True])
def test_add_head_rejects_bad_num_classes(bad):
    with pytest.raises((TypeError, ValueError), match="num_classes"):
        clf.add_classification_head(_model(None), bad)


def test_add_head_rejects_non_models():
    with pytest.raises(TypeError, match="GPTModel"):
        clf.add_classification_head(torch.nn.Linear(2, 2))


def test_the_head_carries_its_pooling_and_the_model_knows_nothing_of_it():
    assert _model(pooling="mean").out_head.pooling == "mean"
    assert clf.add_classification_head(_model(None), 2).out_head.pooling == "mean"  # the default
    with pytest.raises(ValueError, match="pooling"):
        clf.add_classification_head(_model(None), 2, pooling="max")
    logits = torch.randn(2, 4, 3)
    head = clf.ClassificationHead(16, 3, "both")
    torch.testing.assert_close(head.pool(logits, torch.tensor([3, 1])),
                               clf.pool_logits(logits, torch.tensor([3, 1]), "both"))


def test_a_classifier_round_trips_through_a_checkpoint(tmp_path):
    model = _model(pooling="mean")
    with torch.no_grad():
        model.out_head.weight.normal_()
    save_checkpoint(tmp_path / "clf", model, tokenizer=None)
    loaded, _ = clf.load_classifier(tmp_path / "clf")
    assert isinstance(loaded.out_head, clf.ClassificationHead) and loaded.out_head.pooling == "mean"
    x = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    with pytest.raises(ValueError, match="load_classifier"):  # the checkpoint module builds no chapter-6 head
        load_checkpoint(tmp_path / "clf")
    other = clf.add_classification_head(GPTModel(CFG), 2, pooling="last")
    with pytest.raises(ValueError, match="pooling"):
        load_checkpoint(tmp_path / "clf", other)
    save_checkpoint(tmp_path / "lm", GPTModel(CFG))
    with pytest.raises(ValueError, match="does not hold a classifier"):
        clf.load_classifier(tmp_path / "lm")


# ------------------------------------------------------------------------------------ freezing
def _trainable_names(model: GPTModel) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def _names_under(model: GPTModel, *prefixes: str) -> set[str]:
    return {name for name, _ in model.named_parameters() if name.startswith(prefixes)}


def test_freeze_keeps_exactly_last_block_final_norm_and_head():
    model = _model()
    count = clf.freeze_for_finetuning(model, trainable_blocks=1, train_embeddings=False)
    want = _names_under(model, "blocks.2.", "final_norm.", "out_head.")
    assert _trainable_names(model) == want
    assert count == sum(p.numel() for n, p in model.named_parameters() if n in want)
    assert count == model.num_parameters(trainable_only=True)


def test_freeze_more_blocks_and_none():
    model = _model()
    clf.freeze_for_finetuning(model, trainable_blocks=2, train_embeddings=False)
    assert _trainable_names(model) == _names_under(model, "blocks.1.", "blocks.2.", "final_norm.", "out_head.")
    clf.freeze_for_finetuning(model, trainable_blocks=0, train_embeddings=False)  # re-freezing also works
    assert _trainable_names(model) == _names_under(model, "final_norm.", "out_head.")
    assert not model.tok_emb.weight.requires_grad and not model.pos_emb.weight.requires_grad


def test_freeze_default_trains_everything_and_embeddings_can_stay_frozen():
    model = _model()
    assert clf.freeze_for_finetuning(model) == model.num_parameters()
    assert _trainable_names(model) == {name for name, _ in model.named_parameters()}
    clf.freeze_for_finetuning(model, trainable_blocks=1, train_embeddings=True)
    assert _trainable_names(model) == _names_under(model, "tok_emb.", "pos_emb.", "blocks.2.", "final_norm.",
                                                   "out_head.")


def test_freeze_errors():
    with pytest.raises(ValueError, match="add_classification_head"):
        clf.freeze_for_finetuning(_model(None))
    for bad in (-1, 4, 1.5):
        with pytest.raises((TypeError, ValueError), match="trainable_blocks"):
            clf.freeze_for_finetuning(_model(), bad)
    with pytest.raises(TypeError, match="train_embeddings"):
        clf.freeze_for_finetuning(_model(), 1, train_embeddings="yes")


# ---------------------------------------------------------------------------- dataset + collate
def test_collate_right_pads_and_records_last_index():
    ids, labels, last = cdata.pad_collate([([5, 6, 7], 1), ([8], 0), ([9, 10], 1)], pad_id=99)
    assert ids.tolist() == [[5, 6, 7], [8, 99, 99], [9, 10, 99]]
    assert labels.tolist() == [1, 0, 1]
    assert last.tolist() == [2, 0, 1]
    with pytest.raises(ValueError, match="empty batch"):
        cdata.pad_collate([], 0)
    with pytest.raises(ValueError, match="no tokens"):
        cdata.pad_collate([([], 0)], 0)
    for bad in (-1, None, 1.5, True):
        with pytest.raises((TypeError, ValueError), match="pad_id"):
            cdata.pad_collate([([1], 0)], bad)


def test_pad_id_comes_from_the_tokenizer():
    ds = cdata.WindowedTexts(["ab", "a"], [0, 1], ByteTokenizer(), window=8)
    assert ds.pad_id == 299 and next(iter(ds.loader(2)))[0][1].tolist() == [ord("a"), 299]
    assert cdata.WindowedTexts(["a"], [0], ByteTokenizer(), 8, pad_id=5).pad_id == 5
    with pytest.raises(TypeError, match="tiktoken's interface"):
        cdata.WindowedTexts(["a"], [0], object(), 8)


def test_first_windows_read_each_text_truncated():
    texts = ["short", "exactly8", "much longer than eight"]
    first = cdata.WindowedTexts(texts, [0, 1, 0], ByteTokenizer(), window=8).first_windows()
    assert len(first) == 3 and first.n_texts == 3
    assert first[2] == (list(b"much lon"), 0) and first[1] == (list(b"exactly8"), 1)


def test_loader_batches_with_last_index():
    ds = cdata.WindowedTexts(["ab", "abcd", "a"], [0, 1, 1], ByteTokenizer(), window=8, pad_id=0)
    ids, labels, last = next(iter(ds.loader(batch_size=3)))
    assert ids.shape == (3, 4) and last.tolist() == [1, 3, 0] and labels.tolist() == [0, 1, 1]
    assert ids[2].tolist() == [ord("a"), 0, 0, 0]


def test_windowed_texts_errors():
    tok = ByteTokenizer()
    with pytest.raises(ValueError, match="2 texts and 1 labels"):
        cdata.WindowedTexts(["a", "b"], [0], tok, 8)
    with pytest.raises(ValueError, match="text 1 is empty"):
        cdata.WindowedTexts(["a", "  "], [0, 1], tok, 8)
    with pytest.raises(ValueError, match="window"):
        cdata.WindowedTexts(["a"], [0], tok, 0)
    with pytest.raises(ValueError, match="at least one"):
        cdata.WindowedTexts([], [], tok, 8)
    with pytest.raises(TypeError, match="must be a str"):
        cdata.WindowedTexts([3], [0], tok, 8)
    with pytest.raises(ValueError, match="labels must be class indices"):
        cdata.WindowedTexts(["a"], [-1], tok, 8)
    with pytest.raises(ValueError, match="indices is empty"):
        cdata.WindowedTexts(["a"], [0], tok, 8).subset([])


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 10), min_size=1, max_size=4))
def test_padded_batch_gives_the_same_logits_as_each_text_alone(lengths):
    """The pad never changes the answer: the last real token's logits equal the unpadded run's."""
    model = _model()
    gen = torch.Generator().manual_seed(sum(lengths))
    seqs = [torch.randint(0, CFG.vocab_size, (n,), generator=gen).tolist() for n in lengths]
    ids, _, last = cdata.pad_collate([(s, 0) for s in seqs], pad_id=7)
    with torch.no_grad():
        batched = clf.pool_logits(model(ids), last, "last")
        alone = torch.stack([model(torch.tensor([s]))[0, -1] for s in seqs])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-4)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 10), min_size=1, max_size=4), st.sampled_from(clf.POOLINGS))
def test_every_pooling_is_blind_to_padding(lengths, pooling):
    model = _model(pooling=pooling)
    gen = torch.Generator().manual_seed(sum(lengths))
    seqs = [torch.randint(0, CFG.vocab_size, (n,), generator=gen).tolist() for n in lengths]
    ids, _, last = cdata.pad_collate([(s, 0) for s in seqs], pad_id=7)
    with torch.no_grad():
        batched = clf.class_logits(model, ids, last)
        alone = torch.cat([clf.class_logits(model, torch.tensor([s]), torch.tensor([len(s) - 1])) for s in seqs])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-4)


def test_pool_logits_by_hand_and_errors():
    logits = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [100.0, 100.0]], [[2.0, 4.0], [0.0, 0.0], [0.0, 0.0]]])
    last = torch.tensor([1, 0])
    assert clf.pool_logits(logits, last, "last").tolist() == [[3.0, 2.0], [2.0, 4.0]]
    assert clf.pool_logits(logits, last, "mean").tolist() == [[2.0, 1.0], [2.0, 4.0]]
    assert clf.pool_logits(logits, last, "both").tolist() == [[2.5, 1.5], [2.0, 4.0]]
    with pytest.raises(ValueError, match="pooling"):
        clf.pool_logits(logits, last, "max")
    with pytest.raises(ValueError, match="batch, tokens, classes"):
        clf.pool_logits(logits[0], last)
    with pytest.raises(ValueError, match="last_index"):
        clf.pool_logits(logits, torch.tensor([3, 0]))
    with pytest.raises(ValueError, match="last_index"):
        clf.pool_logits(logits, torch.tensor([1]))


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


def test_classifier_metrics_match_hand_counts_of_predictions():
    model = _model()
    texts = cdata.WindowedTexts(["hello", "spam spam", "hi", "win money", "ok"], [0, 1, 0, 1, 1], ByteTokenizer(),
                                window=16, pad_id=0)
    result = clf.classifier_metrics(model, texts)
    y_true, y_pred = texts.labels, result["predictions"]
    tp = sum(t == p == 1 for t, p in zip(y_true, y_pred, strict=True))
    assert result["n"] == 5
    assert result["accuracy"] == pytest.approx(sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / 5)
    assert result["recall"] == pytest.approx(tp / 3)
    assert sum(map(sum, result["confusion"])) == 5 and result["loss"] > 0


def test_metrics_and_classify_refuse_a_model_without_a_classification_head():
    model = _model(None)
    texts = cdata.WindowedTexts(["a"], [0], ByteTokenizer(), 8)
    with pytest.raises(ValueError, match="add_classification_head"):
        clf.classifier_metrics(model, texts)
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


@pytest.mark.parametrize("pooling", ["last", "both"])
def test_fine_tuning_learns_a_last_token_rule_through_the_shared_loop(pooling):
    model = _model(pooling=pooling)
    clf.freeze_for_finetuning(model, trainable_blocks=1, train_embeddings=False)
    frozen_before = model.blocks[0].att.qkv.weight.detach().clone()
    texts, labels = _toy_data(64)
    ds = cdata.WindowedTexts(texts, labels, ByteTokenizer(), window=16, pad_id=0)
    config = FinetuneConfig(steps=24, lr=3e-3, warmup_steps=2, eval_every=12, progress=False)
    history = clf.fine_tune_classifier(model, ds.loader(16, shuffle=True), config, ds)
    assert isinstance(history, FinetuneHistory) and history.eval_steps == [12, 24]
    assert set(history.evals[0]) == {"val_loss", "val_accuracy"}
    assert history.evals[-1]["val_loss"] < history.evals[0]["val_loss"] or history.evals[0]["val_accuracy"] == 1.0
    assert history.evals[-1]["val_accuracy"] == 1.0
    torch.testing.assert_close(model.blocks[0].att.qkv.weight, frozen_before)  # frozen stays frozen
    assert not model.training
    assert clf.classify(model, ByteTokenizer(), "qwerty!") == "spam"
    assert clf.classify(model, ByteTokenizer(), "qwerty.", labels=("no", "yes")) == "no"


def test_classification_loss_is_cross_entropy_of_the_pooled_logits():
    model = _model(pooling="mean")
    batch = cdata.pad_collate([([1, 2, 3], 1), ([4], 0)], 0)
    want = torch.nn.functional.cross_entropy(clf.pool_logits(model(batch[0]), batch[2], "mean"), batch[1])
    torch.testing.assert_close(clf.classification_loss(model, batch), want)
    ds = cdata.WindowedTexts(["a"], [0], ByteTokenizer(), 8)
    with pytest.raises(ValueError, match="add_classification_head"):
        clf.fine_tune_classifier(_model(None), ds.loader(), FinetuneConfig(steps=1, lr=1e-3, progress=False))
    with pytest.raises(TypeError, match="val_texts must be WindowedTexts"):
        clf.fine_tune_classifier(_model(), ds.loader(), FinetuneConfig(steps=1, lr=1e-3, progress=False), ds.loader())


# ----------------------------------------------------------------- the language-model step
def test_lm_loader_joins_texts_with_endoftext_and_trains_the_lm():
    loader = cdata.lm_loader(["abcdef", "ghijkl"], ByteTokenizer(), context_length=4, batch_size=2, shuffle=False)
    stream = list(b"abcdef") + [299] + list(b"ghijkl") + [299]
    inputs, targets = next(iter(loader))
    assert inputs.tolist() == [stream[0:4], stream[4:8]] and targets.tolist() == [stream[1:5], stream[5:9]]
    model = _model(None)
    before = lm_loss(model, (inputs, targets)).item()
    finetune(model, loader, lm_loss, FinetuneConfig(steps=20, lr=1e-2, progress=False))
    assert lm_loss(model, (inputs, targets)).item() < before
    shuffled = cdata.lm_loader(["abcdef", "ghijkl"] * 4, ByteTokenizer(), context_length=4, batch_size=2)
    assert all(len(b[0]) == 2 for b in shuffled)  # full batches only when training


def test_lm_step_errors():
    with pytest.raises(ValueError, match="unlabelled text"):
        cdata.lm_loader([], ByteTokenizer(), 4)
    with pytest.raises(ValueError, match="empty"):
        cdata.lm_loader(["abc", " "], ByteTokenizer(), 4)
    with pytest.raises(ValueError, match="context_length"):
        cdata.lm_loader(["ab"], ByteTokenizer(), 8)
    batch = (torch.tensor([[1, 2]]), torch.tensor([[2, 3]]))
    with pytest.raises(ValueError, match="needs the model's next-token head"):
        lm_loss(_model(), batch)  # the LM step comes before add_classification_head


def test_classify_errors_and_reading_a_long_text_whole():
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
    text = "spam! " * 3 + "hello there, friend" * 2  # 56 bytes: 5 windows of the 12-token context
    windows = cdata.split_windows(tok.encode_ordinary(text), 12)
    with torch.no_grad():
        logits = torch.cat([clf.class_logits(model, torch.tensor([w]), torch.tensor([len(w) - 1])) for w in windows])
    for how, pooled in [("mean", logits.mean(0)), ("max", logits.max(0).values), ("first", logits[0])]:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # read whole: nothing is truncated, nothing to warn about
            assert clf.classify(model, tok, text, how=how) == ("ham", "spam")[int(pooled.argmax())]
    assert clf.classify(model, tok, text, max_length=5) in ("ham", "spam")


def test_split_windows_cuts_consecutive_windows():
    assert cdata.split_windows(range(7), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert cdata.split_windows([1, 2], 3) == [[1, 2]]
    assert cdata.split_windows(range(6), 3) == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(ValueError, match="window"):
        cdata.split_windows([1], 0)


def test_windowed_texts_make_every_window_an_example_with_its_texts_label():
    tok = ByteTokenizer()
    texts = cdata.WindowedTexts(["abcdefg", "hi", "0123456789"], [1, 0, 1], tok, window=4)
    assert texts.n_texts == 3 and texts.windows_per_text() == [2, 1, 3] and len(texts) == 6
    assert texts.owner == [0, 0, 1, 2, 2, 2]
    assert texts[1] == (list(b"efg"), 1) and texts[2] == (list(b"hi"), 0)
    part = texts.subset([2, 0])
    assert part.labels == [1, 1] and part.windows_per_text() == [3, 2] and part.owner == [0, 0, 0, 1, 1]
    first = texts.first_windows()
    assert first.windows_per_text() == [1, 1, 1] and first[0] == (list(b"abcd"), 1)
    input_ids, labels, last_index = next(iter(texts.loader(batch_size=6)))
    assert input_ids.shape == (6, 4) and labels.tolist() == [1, 1, 0, 1, 1, 1]
    assert last_index.tolist() == [3, 2, 1, 3, 3, 1]
    with pytest.raises(ValueError, match="one label per text"):
        cdata.WindowedTexts(["a"], [0, 1], tok, 4)


def test_pool_windows_by_hand():
    logits = torch.tensor([[1.0, 0.0], [3.0, 4.0], [0.0, 2.0], [5.0, -1.0]])
    owner = [0, 0, 1, 1]
    assert clf.pool_windows(logits, owner, 2, "mean").tolist() == [[2.0, 2.0], [2.5, 0.5]]
    assert clf.pool_windows(logits, owner, 2, "max").tolist() == [[3.0, 4.0], [5.0, 2.0]]
    assert clf.pool_windows(logits, owner, 2, "first").tolist() == [[1.0, 0.0], [0.0, 2.0]]
    with pytest.raises(ValueError, match="how"):
        clf.pool_windows(logits, owner, 2, "median")
    with pytest.raises(ValueError, match="at least one window"):
        clf.pool_windows(logits, owner, 3)


def test_classifier_metrics_pool_the_windows_of_long_texts():
    model, tok = _model(pooling="mean"), ByteTokenizer()
    long = cdata.WindowedTexts(["free money " * 5, "lunch?"], [1, 0], tok, 12)
    logits = clf.window_logits(model, long)
    assert logits.shape == (len(long), 2)
    for how in ("mean", "max", "first"):
        expected = clf.pool_windows(logits, long.owner, 2, how).argmax(-1).tolist()
        assert clf.classifier_metrics(model, long, how, logits=logits)["predictions"] == expected
