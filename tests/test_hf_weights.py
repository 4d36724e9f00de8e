"""Parity with transformers' GPT-2: load its checkpoints, export ours back, and clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers  # not importorskip: a missing/broken transformers must fail this suite, not skip it
from safetensors.torch import load_file, save_file

from gpt2_core.model import hf_weights
from gpt2_core.model.config import GPTConfig
from gpt2_core.model.gpt import GPTModel
from gpt2_core.model.hf_weights import WeightsDownloadError, config_from_hf, config_to_hf

# (n_embd, n_head, n_layer, n_positions, vocab_size): odd head counts, tiny vocabularies, 1-3 layers
SHAPES = [(24, 3, 1, 16, 50), (30, 5, 2, 12, 7), (16, 1, 3, 20, 101), (32, 4, 2, 8, 33)]


def hf_model(n_embd, n_head, n_layer, n_positions, vocab_size, attn="eager"):
    torch.manual_seed(n_embd * 7 + n_layer)
    cfg = transformers.GPT2Config(n_embd=n_embd, n_head=n_head, n_layer=n_layer, n_positions=n_positions,
                                  vocab_size=vocab_size, bos_token_id=None, eos_token_id=None,
                                  attn_implementation=attn)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    assert model.config._attn_implementation == attn
    with torch.no_grad():  # non-trivial norms and biases, so that a swapped or missing tensor shows
        for name, p in model.named_parameters():
            if "ln_" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf")
    hf_model(*SHAPES[0]).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_from_hf_matches_transformers(tmp_path, shape, attn):
    theirs = hf_model(*shape, attn=attn)
    theirs.save_pretrained(tmp_path)
    ours = hf_weights.from_hf(tmp_path)
    assert not ours.training and ours.out_head.weight is ours.tok_emb.weight
    assert ours.cfg == GPTConfig(vocab_size=shape[4], context_length=shape[3], emb_dim=shape[0],
                                 n_heads=shape[1], n_layers=shape[2], drop_rate=0.1)
    idx = torch.randint(0, shape[4], (2, shape[3]))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx), theirs(idx).logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("shape", SHAPES[:3])
def test_save_hf_loads_back_into_transformers(tmp_path, shape):
    d, h, n, t, v = shape
    torch.manual_seed(1)
    ours = GPTModel(GPTConfig(vocab_size=v, context_length=t, emb_dim=d, n_heads=h, n_layers=n)).eval()
    assert hf_weights.save_hf(ours, tmp_path / "export") == tmp_path / "export"
    theirs = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "export").eval()
    assert theirs.lm_head.weight.data_ptr() == theirs.transformer.wte.weight.data_ptr()  # tied there too
    idx = torch.randint(0, v, (3, t))
    with torch.no_grad():
        torch.testing.assert_close(theirs(idx).logits, ours(idx), atol=1e-4, rtol=1e-4)
    again = hf_weights.from_hf(tmp_path / "export")  # and our own loader reads our export exactly
    for (name, a), (_, b) in zip(ours.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_export_without_qkv_bias_writes_zero_bias(tmp_path):
    torch.manual_seed(2)
    ours = GPTModel(GPTConfig(vocab_size=20, context_length=8, emb_dim=12, n_heads=2, n_layers=1,
                              qkv_bias=False)).eval()
    hf_weights.save_hf(ours, tmp_path)
    written = load_file(tmp_path / "model.safetensors")
    assert torch.count_nonzero(written["transformer.h.0.attn.c_attn.bias"]) == 0
    back = hf_weights.from_hf(tmp_path)
    idx = torch.randint(0, 20, (1, 8))
    with torch.no_grad():
        torch.testing.assert_close(back(idx), ours(idx))


def test_fused_qkv_is_q_then_k_then_v(hf_dir):
    """c_attn's columns are [q | k | v]; our qkv rows must be the same thirds, transposed."""
    theirs = transformers.GPT2LMHeadModel.from_pretrained(hf_dir)
    ours = hf_weights.from_hf(hf_dir)
    d = ours.cfg.emb_dim
    w_theirs = theirs.transformer.h[0].attn.c_attn.weight  # (in, 3 * out)
    for third in range(3):
        torch.testing.assert_close(ours.blocks[0].att.qkv.weight[third * d:(third + 1) * d],
                                   w_theirs[:, third * d:(third + 1) * d].t())


def test_openai_style_keys_load(tmp_path, hf_dir):
    """OpenAI's hub files have no 'transformer.' prefix and keep each layer's mask buffer."""
    tensors = {k.removeprefix("transformer."): v for k, v in load_file(hf_dir / "model.safetensors").items()}
    tensors["h.0.attn.bias"] = torch.tril(torch.ones(1, 1, 16, 16))
    tensors["lm_head.weight"] = tensors["wte.weight"].clone()
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    (tmp_path / "config.json").write_text((hf_dir / "config.json").read_text())
    a, b = hf_weights.from_hf(tmp_path), hf_weights.from_hf(hf_dir)
    idx = torch.randint(0, 50, (1, 9))
    with torch.no_grad():
        torch.testing.assert_close(a(idx), b(idx))


def test_dtype_device_and_overrides(hf_dir):
    model = hf_weights.from_hf(hf_dir, dtype=torch.float64, device="cpu", drop_rate=0.0)
    assert model.tok_emb.weight.dtype == torch.float64 and model.cfg.drop_rate == 0.0


def test_config_round_trip():
    cfg = GPTConfig.preset("tiny", vocab_size=300, drop_rate=0.0)
    hf = config_to_hf(cfg)
    assert hf["model_type"] == "gpt2" and hf["architectures"] == ["GPT2LMHeadModel"]
    assert hf["bos_token_id"] is None  # 50256 would be outside this vocabulary
    assert config_from_hf(hf) == cfg
    assert config_to_hf(GPTConfig())["eos_token_id"] == 50256


@pytest.mark.parametrize("change, message", [
    ({"activation_function": "relu"}, "activation_function='relu' is not supported"),
    ({"layer_norm_epsilon": 1e-6}, "layer_norm_epsilon=1e-06 is not supported"),
    ({"n_inner": 50}, "n_inner=50 is not supported"),
    ({"model_type": "llama"}, "model_type='llama'"),
    ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
    ({"tie_word_embeddings": False}, "tie_word_embeddings"),
    ({"n_embd": 25}, "not divisible"),
])
def test_unsupported_configs_raise(change, message):
    hf = {**config_to_hf(GPTConfig.preset("tiny")), **change}
    with pytest.raises(ValueError, match=message):
        config_from_hf(hf)


def test_config_missing_fields_and_wrong_type():
    with pytest.raises(ValueError, match="lacks \\['n_layer'\\]"):
        config_from_hf({k: v for k, v in config_to_hf(GPTConfig.preset("tiny")).items() if k != "n_layer"})
    with pytest.raises(TypeError, match="must be a dict"):
        config_from_hf("config.json")  # type: ignore[arg-type]


def test_mixed_dropouts_warn_and_use_resid():
    hf = {**config_to_hf(GPTConfig.preset("tiny")), "attn_pdrop": 0.0, "resid_pdrop": 0.2}
    with pytest.warns(UserWarning, match="one dropout rate"):
        assert config_from_hf(hf).drop_rate == 0.2


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in ("config.json", "model.safetensors"):
        (dst / f).write_bytes((src / f).read_bytes())
    return dst


def test_missing_or_malformed_directory(tmp_path, hf_dir):
    with pytest.raises(ValueError, match="is not a directory"):
        hf_weights.from_hf(tmp_path / "nowhere")
    with pytest.raises(TypeError, match="str or Path"):
        hf_weights.from_hf(42)  # type: ignore[arg-type]
    no_config = _copy(hf_dir, tmp_path / "a")
    (no_config / "config.json").unlink()
    with pytest.raises(ValueError, match="has no config.json"):
        hf_weights.from_hf(no_config)
    bad_json = _copy(hf_dir, tmp_path / "b")
    (bad_json / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        hf_weights.from_hf(bad_json)
    no_weights = _copy(hf_dir, tmp_path / "c")
    (no_weights / "model.safetensors").unlink()
    (no_weights / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="has no model.safetensors \\(found \\['pytorch_model.bin'\\]"):
        hf_weights.from_hf(no_weights)
    garbage = _copy(hf_dir, tmp_path / "d")
    (garbage / "model.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(ValueError, match="could not be read as safetensors"):
        hf_weights.from_hf(garbage)


def _with_config(src: Path, dst: Path, **changes) -> Path:
    folder = _copy(src, dst)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))
    return folder


def test_shape_mismatch_names_the_tensor(tmp_path, hf_dir):
    wider = _with_config(hf_dir, tmp_path / "a", vocab_size=60)
    with pytest.raises(ValueError, match=r"tensor 'wte.weight' has shape \(50, 24\) but .* needs \(60, 24\)"):
        hf_weights.from_hf(wider)
    longer = _with_config(hf_dir, tmp_path / "b", n_positions=32)
    with pytest.raises(ValueError, match="'wpe.weight' has shape \\(16, 24\\) .* needs \\(32, 24\\)"):
        hf_weights.from_hf(longer)


def test_layer_count_mismatch(tmp_path, hf_dir):
    with pytest.raises(ValueError, match="lacks 12 tensor\\(s\\).*h.1.ln_1.weight"):
        hf_weights.from_hf(_with_config(hf_dir, tmp_path / "a", n_layer=2))
    tensors = load_file(hf_dir / "model.safetensors")
    tensors["transformer.h.7.ln_1.weight"] = torch.ones(24)
    extra = _copy(hf_dir, tmp_path / "b")
    save_file(tensors, extra / "model.safetensors")
    with pytest.raises(ValueError, match="does not use: \\['h.7.ln_1.weight'\\]"):
        hf_weights.from_hf(extra)


def test_untied_head_is_refused(tmp_path, hf_dir):
    tensors = load_file(hf_dir / "model.safetensors")
    tensors["lm_head.weight"] = torch.randn_like(tensors["transformer.wte.weight"])
    folder = _copy(hf_dir, tmp_path / "a")
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(ValueError, match="lm_head.weight differs from the token embedding"):
        hf_weights.from_hf(folder)


def test_save_hf_errors(tmp_path):
    model = GPTModel(GPTConfig.preset("tiny", vocab_size=10))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        hf_weights.save_hf(model, tmp_path / "file")
    with pytest.raises(TypeError, match="expected a GPTModel"):
        hf_weights.save_hf(torch.nn.Linear(2, 2), tmp_path / "x")  # type: ignore[arg-type]
    model.out_head.weight = torch.nn.Parameter(model.tok_emb.weight.detach() + 1)
    with pytest.raises(ValueError, match="not tied"):
        hf_weights.save_hf(model, tmp_path / "untied")


def test_save_hf_replaces_each_file_whole_and_keeps_the_learners_other_files(tmp_path, monkeypatch):
    """A full disk (or a crash) while exporting keeps the previous export loadable; a tokenizer the learner put in
    the folder stays."""
    import errno

    from gpt2_core import files

    torch.manual_seed(0)
    first = GPTModel(GPTConfig.preset("tiny", vocab_size=10))
    hf_weights.save_hf(first, tmp_path / "export")
    (tmp_path / "export" / "tokenizer.json").write_text("{}")
    before = {p.name: p.read_bytes() for p in (tmp_path / "export").iterdir()}

    def disk_full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files, "_write_synced", disk_full)
    with pytest.raises(OSError, match="the disk is full.*model.safetensors"):
        hf_weights.save_hf(GPTModel(GPTConfig.preset("tiny", vocab_size=12)), tmp_path / "export")
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in (tmp_path / "export").iterdir()} == before  # nothing half-written
    again = hf_weights.from_hf(tmp_path / "export")
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values(), strict=True))


def test_from_pretrained_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown pretrained model 'gpt5'.*gpt2-medium"):
        hf_weights.from_pretrained("gpt5")
    with pytest.raises(TypeError, match="name must be a str"):
        hf_weights.from_pretrained(3)  # type: ignore[arg-type]


def test_from_pretrained_accepts_a_local_directory(hf_dir):
    assert hf_weights.from_pretrained(str(hf_dir)).cfg == hf_weights.from_hf(hf_dir).cfg


def test_from_pretrained_offline_error_in_process(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message = "cannot download openai-community/gpt2: HF_HUB_OFFLINE.*from_hf"
    with pytest.raises(WeightsDownloadError, match=message):
        hf_weights.from_pretrained("gpt2", cache_dir=tmp_path)


def test_from_pretrained_offline_error_fresh_process(tmp_path):
    """As a learner sees it: HF_HUB_OFFLINE=1 and an empty HF_HOME give one clear message."""
    code = ("from gpt2_core.model import hf_weights\n"
            "try:\n    hf_weights.from_pretrained('gpt2-medium')\n"
            "except Exception as e:\n    print(type(e).__name__, e)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.startswith("WeightsDownloadError cannot download openai-community/gpt2-medium"), out
    assert "hf_weights.from_hf(DIR)" in out.stdout


# ------------------------------------------------------------- the download path, offline
def _hub_cache(root: Path, model, repo: str = "openai-community/gpt2") -> Path:
    """``model`` saved by transformers into a Hugging Face cache layout, as a download would leave it:
    ``models--owner--name/refs/main`` names a commit whose ``snapshots/<commit>/`` holds the files."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    folder = root / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / commit
    model.save_pretrained(snapshot)
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    assert {p.name for p in snapshot.iterdir()} >= {"config.json", "model.safetensors"}
    return root


def test_from_pretrained_loads_a_cached_download_offline(tmp_path, monkeypatch):
    """The download path end to end without a network: the hub is offline, the cache holds the model."""
    theirs = hf_model(32, 4, 2, 16, 40)
    cache = _hub_cache(tmp_path / "hub", theirs)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ours = hf_weights.from_pretrained("gpt2", cache_dir=cache)
    assert ours.cfg.n_layers == 2 and ours.cfg.vocab_size == 40
    idx = torch.randint(0, 40, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx), theirs(idx).logits, atol=1e-4, rtol=1e-4)
    with pytest.raises(WeightsDownloadError, match="gpt2-medium"):  # another name is not in that cache
        hf_weights.from_pretrained("gpt2-medium", cache_dir=cache)


def test_base_model_switch_starts_from_a_cached_gpt2_offline(tmp_path):
    """GPT2_COURSE_BASE_MODEL=gpt2 in a fresh process (the hub reads its cache path at import time) with the
    hub offline: load_base_model returns the cached GPT-2 and GPT-2's tokenizer, not the reference model."""
    _hub_cache(tmp_path / "hub", hf_model(32, 4, 2, 16, 50257))
    code = ("from gpt2_core.course.reference import load_base_model\n"
            "model, tok, name = load_base_model('cpu')\n"
            "print(name, model.cfg.n_layers, model.cfg.vocab_size, tok.n_vocab, tok.eot_token)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"),
           "GPT2_COURSE_BASE_MODEL": "gpt2", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["gpt2", "2", "50257", "50257", "50256"], out
