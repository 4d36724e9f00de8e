"""Tests for gpt2_core.course.reference: the shipped reference course model (a checkpoint whose files keep their
committed bytes), the recipe that makes it, and its command line."""

from __future__ import annotations

import math
import shutil

import pytest
import torch

from gpt2_core.course.reference import (
    ReferenceModelError,
    build_reference,
    file_hashes,
    load_reference,
    main,
    reference_history,
    reference_info,
)
from gpt2_core.model.config import GPTConfig
from gpt2_core.model.gpt import GPTModel
from gpt2_core.pretraining.checkpoint import load_checkpoint
from gpt2_core.pretraining.recipes import REFERENCE_RECIPE, REFERENCE_SHA256, REFERENCE_VOCAB, Recipe, reference_dir
from gpt2_core.pretraining.step import bits_per_byte
from gpt2_core.text.bpe import BPETokenizer
from gpt2_core.text.corpus import sotu_text
from gpt2_core.text.ranks import dump_ranks, parse_ranks
from gpt2_core.text.windows import encode_text


def test_shipped_files_match_their_pinned_hashes_and_size_limits():
    assert file_hashes() == REFERENCE_SHA256
    sizes = {name: (reference_dir() / name).stat().st_size for name in REFERENCE_SHA256}
    assert max(sizes.values()) <= 16 * 2**20 and sum(sizes.values()) <= 25 * 2**20


def test_the_reference_model_loads_through_the_checkpoint_loader():
    loaded = load_checkpoint(reference_dir(), expected_sha256=REFERENCE_SHA256)
    model, tok = load_reference("cpu")
    x = torch.randint(0, tok.n_vocab, (1, 12))
    with torch.no_grad():
        assert torch.equal(loaded["model"].float()(x), model(x))
    assert loaded["tokenizer"].encode("We the People") == tok.encode("We the People")
    assert model.out_head.weight is model.tok_emb.weight and model.tok_emb.weight.dtype == torch.float32


def test_validation_loss_on_a_slice_matches_the_recorded_figure():
    model, tok = load_reference("cpu")
    info = reference_info()
    check = info["val_check"]
    got = bits_per_byte(model, torch.tensor(encode_text(sotu_text("val"), tok)), tok, max_windows=check["windows"])
    assert got["tokens"] == check["tokens"] and got["bytes"] == check["bytes"]
    assert got["loss"] == pytest.approx(check["loss"], abs=1e-4)
    assert got["bits_per_byte"] == pytest.approx(check["bits_per_byte"], abs=1e-4)
    # and the model learned something: far below a uniform guess over its vocabulary
    assert info["val"]["loss"] < 0.6 * math.log(tok.n_vocab)
    assert len(reference_history()["val_losses"]) == len(reference_history()["eval_steps"]) > 10


def test_recipe_is_recorded_and_the_tokenizer_retrains_identically():
    info = reference_info()
    recorded, recipe = info["recipe"], REFERENCE_RECIPE
    for field in ("context_length", "batch_size", "max_steps", "lr", "min_lr", "warmup_steps", "weight_decay",
                  "grad_clip", "eval_every", "eval_batches", "seed"):
        assert recorded[field] == getattr(recipe, field), field
    assert recorded["vocab_size"] == REFERENCE_VOCAB
    assert GPTConfig.from_dict(info["model_config"]) == recipe.model_config(REFERENCE_VOCAB)
    assert info["trained"]["tokens"] == recipe.max_steps * recipe.batch_size * recipe.context_length
    retrained = BPETokenizer.train(sotu_text("train"), REFERENCE_VOCAB)
    assert retrained.ranks == load_reference("cpu")[1]._mergeable_ranks


def test_tokenizer_equals_chapter_1s_bpe_on_held_out_text():
    tok = load_reference("cpu")[1]
    info = reference_info()
    ours = BPETokenizer(tok._mergeable_ranks, info["tokenizer"]["special_tokens"], info["tokenizer"]["pattern"])
    text = sotu_text("val")[:30_000] + " <|endoftext|> café — 1,234.5 naïve ünïcödé 🙂"
    assert ours.encode(text, allowed_special="all") == tok.encode(text, allowed_special="all")
    assert tok.eot_token == tok.n_vocab - 1 == REFERENCE_VOCAB - 1


def test_a_changed_or_missing_file_is_refused(tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(reference_dir(), copy)
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ReferenceModelError, match="does not match its pinned sha256.*git checkout"):
        load_reference("cpu", path=copy)
    load_reference("cpu", path=copy, verify=False)  # a model you re-made yourself
    (copy / "tokenizer.tiktoken").unlink()
    with pytest.raises(ReferenceModelError, match="missing.*python -m gpt2_core.course.reference"):
        load_reference("cpu", path=copy, verify=False)


def test_a_truncated_tokenizer_file_is_refused_even_without_verification(tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(reference_dir(), copy)
    lines = (copy / "tokenizer.tiktoken").read_bytes().splitlines(keepends=True)
    (copy / "tokenizer.tiktoken").write_bytes(b"".join(lines[: len(lines) // 2]))  # cut at a line boundary
    with pytest.raises(ReferenceModelError, match="incomplete"):
        load_reference("cpu", path=copy, verify=False)


def test_build_reference_writes_a_loadable_model(tmp_path):
    recipe = Recipe(preset="tiny", context_length=16, batch_size=4, max_steps=3, lr=1e-3, min_lr=1e-4,
                    warmup_steps=1, eval_every=0, eval_batches=1)
    # val_windows bounds the recorded validation figure (the whole split is most of this test's time otherwise)
    info = build_reference(tmp_path / "ref", recipe, vocab_size=300, device="cpu", progress=False, check_windows=4,
                           val_windows=8)
    model, tok = load_reference("cpu", path=tmp_path / "ref", verify=False)
    assert tok.n_vocab == 300 and model.cfg == recipe.model_config(300)
    ids = torch.tensor(encode_text(sotu_text("val"), tok))
    again = bits_per_byte(model, ids, tok, max_windows=4)
    assert again["loss"] == pytest.approx(info["val_check"]["loss"], abs=1e-5)
    assert info["val"]["windows"] == 8 and info["val"]["tokens"] == 8 * recipe.context_length
    assert info["val"]["loss"] == pytest.approx(bits_per_byte(model, ids, tok, max_windows=8)["loss"], abs=1e-5)
    assert model.tok_emb.weight.dtype == torch.float32 and model.out_head.weight is model.tok_emb.weight
    assert reference_info(tmp_path / "ref")["recipe"]["max_steps"] == 3
    assert len(reference_history(tmp_path / "ref")["losses"]) == 3


def test_bits_per_byte_of_a_uniform_model():
    tok = load_reference("cpu")[1]
    model = GPTModel(GPTConfig(vocab_size=tok.n_vocab, context_length=8, emb_dim=16, n_heads=2, n_layers=1))
    with torch.no_grad():
        model.tok_emb.weight.zero_()  # the tied head then gives equal logits: a uniform guess
    ids = torch.tensor(tok.encode("We the people of the United States, in order to form a more perfect union"))
    got = bits_per_byte(model, ids, tok)
    assert got["loss"] == pytest.approx(math.log(tok.n_vocab), rel=1e-5)
    assert got["bits_per_byte"] == pytest.approx(got["loss"] / math.log(2) * got["tokens"] / got["bytes"])
    with pytest.raises(ValueError, match="more than 8 tokens"):
        bits_per_byte(model, ids[:5], tok)


def test_ranks_round_trip_and_bad_lines():
    ranks = {bytes([b]): b for b in range(256)} | {b"th": 256, b" the": 257}
    assert parse_ranks(dump_ranks(ranks)) == ranks
    with pytest.raises(ValueError, match="line 2"):
        parse_ranks(b"YQ== 0\nnot-base64!! x\n")
    with pytest.raises(ValueError, match="rank 2 where rank 1 belongs"):
        parse_ranks(b"YQ== 0\nYg== 2\n")
    with pytest.raises(ValueError, match="incomplete"):
        parse_ranks(dump_ranks(ranks), expected=300)


def test_command_line(capsys, tmp_path, monkeypatch):
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2 and "--out DIR" in capsys.readouterr().err
    assert main(["--check"]) == 0 and "validation check" in capsys.readouterr().out
    copy = tmp_path / "model"
    shutil.copytree(reference_dir(), copy)
    (copy / "config.json").write_text((copy / "config.json").read_text().replace("4", "5", 1))
    monkeypatch.setattr("gpt2_core.course.reference.reference_dir", lambda: copy)
    assert main(["--check"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not match its pinned sha256" in err[0]  # one line, no traceback
