"""Tests for gpt2_core.reference: the shipped reference course model and the recipe that makes it."""

from __future__ import annotations

import math
import shutil

import pytest
import torch

from gpt2_core.config import GPTConfig
from gpt2_core.corpus import sotu_text
from gpt2_core.data import encode_text
from gpt2_core.model import GPTModel
from gpt2_core.reference import (
    FILES,
    REFERENCE_SHA256,
    ReferenceModelError,
    ReferenceRecipe,
    bits_per_byte,
    build_reference,
    dump_ranks,
    file_hashes,
    load_reference,
    load_reference_config,
    load_tokenizer,
    main,
    parse_ranks,
    reference_dir,
)
from gpt2_core.tokenizer import BPETokenizer


def test_shipped_files_match_their_pinned_hashes_and_size_limits():
    assert set(REFERENCE_SHA256) == set(FILES)
    assert file_hashes() == REFERENCE_SHA256
    sizes = {name: (reference_dir() / name).stat().st_size for name in FILES}
    assert max(sizes.values()) <= 16 * 2**20 and sum(sizes.values()) <= 25 * 2**20


def test_validation_loss_on_a_slice_matches_the_recorded_figure():
    model, tok = load_reference("cpu")
    meta = load_reference_config()
    check = meta["val_check"]
    got = bits_per_byte(model, torch.tensor(encode_text(sotu_text("val"), tok)), tok, max_windows=check["windows"])
    assert got["tokens"] == check["tokens"] and got["bytes"] == check["bytes"]
    assert got["loss"] == pytest.approx(check["loss"], abs=1e-4)
    assert got["bits_per_byte"] == pytest.approx(check["bits_per_byte"], abs=1e-4)
    # and the model learned something: far below a uniform guess over its vocabulary
    assert meta["val"]["loss"] < 0.6 * math.log(tok.n_vocab)


def test_recipe_is_recorded_and_the_tokenizer_retrains_identically():
    meta = load_reference_config()
    assert meta["recipe"] == ReferenceRecipe().to_dict()
    assert GPTConfig.from_dict(meta["model_config"]) == ReferenceRecipe().model_config()
    assert meta["trained"]["tokens"] == ReferenceRecipe().max_steps * 32 * 128
    retrained = BPETokenizer.train(sotu_text("train"), ReferenceRecipe().vocab_size)
    assert retrained.ranks == load_tokenizer()._mergeable_ranks


def test_tokenizer_equals_chapter_1s_bpe_on_held_out_text():
    tok = load_tokenizer()
    meta = load_reference_config()
    ours = BPETokenizer(tok._mergeable_ranks, meta["tokenizer"]["special_tokens"], meta["tokenizer"]["pattern"])
    text = sotu_text("val")[:30_000] + " <|endoftext|> café — 1,234.5 naïve ünïcödé 🙂"
    assert ours.encode(text, allowed_special="all") == tok.encode(text, allowed_special="all")
    assert tok.eot_token == tok.n_vocab - 1 == ReferenceRecipe().vocab_size - 1


def test_a_changed_or_missing_file_is_refused(tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(reference_dir(), copy)
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ReferenceModelError, match="sha256.*git checkout"):
        load_reference("cpu", path=copy)
    load_reference("cpu", path=copy, verify=False)  # a model you re-made yourself
    (copy / "tokenizer.tiktoken").unlink()
    with pytest.raises(ReferenceModelError, match="missing.*python -m gpt2_core.reference"):
        load_reference("cpu", path=copy, verify=False)


def test_build_reference_writes_a_loadable_model(tmp_path):
    recipe = ReferenceRecipe(vocab_size=300, context_length=16, emb_dim=32, n_heads=2, n_layers=1, batch_size=4,
                             max_steps=3, warmup_steps=1, eval_every=0, eval_batches=1, check_windows=4)
    meta = build_reference(tmp_path / "ref", recipe, device="cpu", progress=False)
    assert sorted(p.name for p in (tmp_path / "ref").iterdir()) == sorted(FILES)
    model, tok = load_reference("cpu", path=tmp_path / "ref", verify=False)
    assert tok.n_vocab == 300 and model.cfg == recipe.model_config()
    ids = torch.tensor(encode_text(sotu_text("val"), tok))
    again = bits_per_byte(model, ids, tok, max_windows=4)
    assert again["loss"] == pytest.approx(meta["val_check"]["loss"], abs=1e-5)
    assert model.tok_emb.weight.dtype == torch.float32 and model.out_head.weight is model.tok_emb.weight


def test_bits_per_byte_of_a_uniform_model():
    tok = load_tokenizer()
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


def test_command_line_usage_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2 and "--out DIR" in capsys.readouterr().err
