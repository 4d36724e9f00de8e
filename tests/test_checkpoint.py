"""Tests for gpt2_core.checkpoint: round trip, bitwise resume, atomic save, corrupt files, mismatches."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from gpt2_core import files
from gpt2_core.model.config import GPTConfig
from gpt2_core.model.gpt import GPTModel
from gpt2_core.pretraining import checkpoint as ckpt
from gpt2_core.pretraining.checkpoint import load_checkpoint, save_checkpoint

CFG = GPTConfig(vocab_size=97, context_length=16, emb_dim=32, n_heads=2, n_layers=2, drop_rate=0.2)


def make_run(seed: int, cfg: GPTConfig = CFG):
    torch.manual_seed(seed)
    model = GPTModel(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 4) * 0.9 ** s)
    return model, opt, sched


def train(model, opt, sched, steps: int) -> list[float]:
    """A few training steps whose data and dropout both draw from the global RNGs."""
    losses = []
    model.train()
    for _ in range(steps):
        batch = torch.randint(0, CFG.vocab_size, (4, CFG.context_length + 1))
        batch = (batch + random.randint(0, 5)) % CFG.vocab_size  # Python's RNG matters too
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses


def assert_same(a, b, where="state"):
    """Recursive equality of state dicts: tensors exactly equal, everything else ==."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b.to(a.device)), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {set(a)} vs {set(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), f"{where}: {a!r} vs {b!r}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}.{i}")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_round_trip(tmp_path):
    model, opt, sched = make_run(0)
    train(model, opt, sched, 3)
    extra = {"losses": [3.5, 3.25], "tokens_seen": 1234, "note": "hi"}
    out = save_checkpoint(tmp_path / "run", model, opt, sched, step=3, extra=extra)
    assert out == tmp_path / "run"

    model2, opt2, sched2 = make_run(1)
    result = load_checkpoint(tmp_path / "run", model2, opt2, sched2)
    assert result["step"] == 3 and result["extra"] == extra
    assert result["config"] == CFG and result["model"] is model2
    assert_same(model.state_dict(), model2.state_dict(), "model")
    assert_same(opt.state_dict(), opt2.state_dict(), "optimizer")
    assert_same(sched.state_dict(), sched2.state_dict(), "scheduler")
    assert model2.out_head.weight is model2.tok_emb.weight  # still tied


def test_load_builds_model_from_config(tmp_path):
    model, _, _ = make_run(0)
    save_checkpoint(tmp_path / "m", model)
    loaded = load_checkpoint(tmp_path / "m")["model"]
    assert isinstance(loaded, GPTModel) and loaded.cfg == CFG
    assert_same(model.state_dict(), loaded.state_dict(), "model")
    assert loaded.out_head.weight is loaded.tok_emb.weight
    # the tied weight is stored once
    assert "out_head.weight" not in load_file(tmp_path / "m" / "model.safetensors")


def test_another_head_round_trip(tmp_path):
    model, _, _ = make_run(0)
    model.out_head = nn.Linear(CFG.emb_dim, 2)  # e.g. chapter 6 swaps the LM head for a 2-class head
    save_checkpoint(tmp_path / "cls", model)
    config = json.loads((tmp_path / "cls" / "config.json").read_text())
    assert config["head"] == {"class": "Linear", "in_features": CFG.emb_dim, "out_features": 2, "bias": True}
    with pytest.raises(ValueError, match="build that model first"):  # this module builds no other head
        load_checkpoint(tmp_path / "cls")
    target = GPTModel(CFG)
    target.out_head = nn.Linear(CFG.emb_dim, 2)
    loaded = load_checkpoint(tmp_path / "cls", target)["model"]
    assert loaded.out_head.weight is not loaded.tok_emb.weight
    assert_same(model.state_dict(), loaded.state_dict(), "model")
    # loading it into a plain LM must fail clearly
    with pytest.raises(ValueError, match="out_head"):
        load_checkpoint(tmp_path / "cls", GPTModel(CFG))


def test_resume_is_bitwise_identical(tmp_path):
    k, n = 3, 7
    model, opt, sched = make_run(0)
    first = train(model, opt, sched, k)
    save_checkpoint(tmp_path / "ck", model, opt, sched, step=k, extra={"losses": first})
    uninterrupted = first + train(model, opt, sched, n - k)

    # different seed: different init and RNG, so only the checkpoint can make them agree
    model2, opt2, sched2 = make_run(42)
    state = load_checkpoint(tmp_path / "ck", model2, opt2, sched2)
    resumed = state["extra"]["losses"] + train(model2, opt2, sched2, n - state["step"])
    assert resumed == uninterrupted
    assert_same(model.state_dict(), model2.state_dict(), "model")
    assert sched.get_last_lr() == sched2.get_last_lr()


def test_resume_without_rng_restore_differs(tmp_path):
    model, opt, sched = make_run(0)
    train(model, opt, sched, 2)
    save_checkpoint(tmp_path / "ck", model, opt, sched, step=2)
    cont = train(model, opt, sched, 2)
    model2, opt2, sched2 = make_run(42)
    load_checkpoint(tmp_path / "ck", model2, opt2, sched2, restore_rng=False)
    assert train(model2, opt2, sched2, 2) != cont  # RNG state is part of what must be restored


def test_rng_states_restored(tmp_path):
    model, _, _ = make_run(0)
    save_checkpoint(tmp_path / "ck", model)
    draws = (torch.rand(3), random.random())
    load_checkpoint(tmp_path / "ck", model)
    again = (torch.rand(3), random.random())
    assert torch.equal(draws[0], again[0]) and draws[1] == again[1]


def test_overwrite_replaces_and_cleans_up(tmp_path):
    model, opt, sched = make_run(0)
    save_checkpoint(tmp_path / "ck", model, step=1)
    train(model, opt, sched, 1)
    save_checkpoint(tmp_path / "ck", model, step=2)
    assert load_checkpoint(tmp_path / "ck")["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no .old / .tmp left behind


def test_crash_mid_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model, opt, sched = make_run(0)
    save_checkpoint(tmp_path / "ck", model, opt, sched, step=1, extra={"v": 1})
    before = {p.name: p.read_bytes() for p in (tmp_path / "ck").iterdir()}
    saved_state = {k: v.clone() for k, v in model.state_dict().items()}
    train(model, opt, sched, 2)

    real_write = files._write_synced
    calls = []

    def crashing_write(path, data):
        calls.append(path.name)
        if len(calls) == 2:
            real_write(path, data[: len(data) // 2])  # half a file, then the "crash"
            raise OSError("disk full (simulated)")
        real_write(path, data)

    monkeypatch.setattr(files, "_write_synced", crashing_write)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(tmp_path / "ck", model, opt, sched, step=3, extra={"v": 2})
    monkeypatch.undo()

    assert len(calls) == 2
    assert {p.name: p.read_bytes() for p in (tmp_path / "ck").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    fresh, opt2, sched2 = make_run(5)
    state = load_checkpoint(tmp_path / "ck", fresh, opt2, sched2)
    assert state["step"] == 1 and state["extra"] == {"v": 1}
    assert_same(saved_state, fresh.state_dict(), "model")


def test_crash_during_swap_is_recovered(tmp_path):
    model, _, _ = make_run(0)
    save_checkpoint(tmp_path / "ck", model, step=4)
    (tmp_path / "ck").rename(tmp_path / "ck.old")  # as if the process died between the two renames
    assert load_checkpoint(tmp_path / "ck")["step"] == 4
    assert (tmp_path / "ck").is_dir() and not (tmp_path / "ck.old").exists()


def test_no_pickle_files_and_no_torch_load(tmp_path, monkeypatch):
    model, opt, sched = make_run(0)
    train(model, opt, sched, 1)
    save_checkpoint(tmp_path / "ck", model, opt, sched, step=1)
    names = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert names == ["config.json", "model.safetensors", "trainer.json", "trainer.safetensors"]

    def no_torch_load(*args, **kwargs):
        raise AssertionError("torch.load must not be used")

    monkeypatch.setattr(torch, "load", no_torch_load)
    load_checkpoint(tmp_path / "ck", model, opt, sched)


# --- errors ------------------------------------------------------------------------------------

@pytest.fixture()
def saved(tmp_path):
    model, opt, sched = make_run(0)
    train(model, opt, sched, 1)
    save_checkpoint(tmp_path / "ck", model, opt, sched, step=1)
    return tmp_path / "ck"


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nothing-here")


@pytest.mark.parametrize("name", ["model.safetensors", "trainer.json", "trainer.safetensors"])
def test_missing_file(saved, name):
    (saved / name).unlink()
    for read in (load_checkpoint, ckpt.checkpoint_info):
        with pytest.raises(ckpt.IncompleteCheckpointError, match=f"incomplete checkpoint \\({name} is missing\\)"):
            read(saved)


def test_missing_config(saved):
    (saved / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_checkpoint(saved)


@pytest.mark.parametrize("name", ["model.safetensors", "trainer.safetensors", "trainer.json", "tokenizer.tiktoken"])
def test_a_checkpoint_cut_short_is_refused_in_one_line_before_anything_is_read(tmp_path, name, monkeypatch):
    """A directory whose save or copy was interrupted: each file is checked against the size config.json
    records, so even a cut that leaves a readable file (a JSON or ranks file cut at a line) is caught, and
    by checkpoint_info, which reads no tensors (what chapter 7's saved model is checked with)."""
    from conftest import tiny_tokenizer

    model, opt, sched = make_run(0, CFG.replace(vocab_size=300))
    path = save_checkpoint(tmp_path / "ck", model, opt, sched, step=2, tokenizer=tiny_tokenizer())
    data = (path / name).read_bytes()
    (path / name).write_bytes(data[: len(data) // 2])
    monkeypatch.setattr(ckpt._Reader, "tensors", lambda *a: pytest.fail("an incomplete checkpoint must not be read"))
    for read in (load_checkpoint, ckpt.checkpoint_info, ckpt.load_tokenizer):
        with pytest.raises(ValueError) as err:
            read(path)
        message = str(err.value)
        assert isinstance(err.value, ckpt.IncompleteCheckpointError) and "\n" not in message
        assert f"{name} has {len(data) // 2:,} of its {len(data):,} bytes" in message and "save it again" in message


def test_checkpoints_saved_before_sizes_were_recorded_load_and_are_checked_by_name(saved):
    config = json.loads((saved / "config.json").read_text())
    assert set(config[ckpt.FILES_KEY]) == {"model.safetensors", "trainer.json", "trainer.safetensors"}
    del config[ckpt.FILES_KEY]
    (saved / "config.json").write_text(json.dumps(config))
    assert load_checkpoint(saved)["step"] == 1
    (saved / "trainer.safetensors").unlink()
    with pytest.raises(ckpt.IncompleteCheckpointError, match="trainer.safetensors is missing"):
        ckpt.checkpoint_info(saved)


def test_info_may_not_take_the_name_of_the_file_sizes(tmp_path):
    with pytest.raises(ValueError, match="files"):
        save_checkpoint(tmp_path / "ck", make_run(0)[0], info={ckpt.FILES_KEY: {}})


@pytest.mark.parametrize("name", ["model.safetensors", "trainer.safetensors"])
def test_truncated_safetensors(saved, name):
    data = (saved / name).read_bytes()
    (saved / name).write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match=name):
        load_checkpoint(saved)


@pytest.mark.parametrize("name", ["config.json", "trainer.json"])
def test_bad_json(saved, name):
    (saved / name).write_text("{not json")
    with pytest.raises(ValueError, match=name):
        load_checkpoint(saved)


def test_wrong_json_content(saved):
    (saved / "config.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="config.json"):
        load_checkpoint(saved)


def test_config_mismatch_names_fields_and_both_values(saved):
    with pytest.raises(ValueError, match=r"emb_dim: checkpoint 32, model 48.*checkpoint's config"):
        load_checkpoint(saved, GPTModel(CFG.replace(emb_dim=48)))
    with pytest.raises(ValueError, match=r"n_layers: checkpoint 2, model 3"):
        load_checkpoint(saved, GPTModel(CFG.replace(n_layers=3)))


def test_same_shapes_other_heads_is_refused(saved):
    # n_heads=2 and n_heads=4 give identical tensor names and shapes: only the config tells them apart
    other = GPTModel(CFG.replace(n_heads=4))
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(ValueError, match=r"n_heads: checkpoint 2, model 4"):
        load_checkpoint(saved, other)
    assert_same(before, other.state_dict(), "model")


def test_several_differences_are_all_named(saved):
    with pytest.raises(ValueError, match=r"vocab_size: checkpoint 97, model 101.*qkv_bias: checkpoint True"):
        load_checkpoint(saved, GPTModel(CFG.replace(vocab_size=101, qkv_bias=False)))


def test_drop_rate_difference_is_allowed(saved):
    model = GPTModel(CFG.replace(drop_rate=0.0))  # dropout does not change what the weights mean
    assert load_checkpoint(saved, model)["config"] == CFG


def test_shape_mismatch_names_tensor_and_shapes(tmp_path):
    model, _, _ = make_run(0)
    model.out_head = nn.Linear(CFG.emb_dim, 2)
    save_checkpoint(tmp_path / "cls", model)
    other = GPTModel(CFG)
    other.out_head = nn.Linear(CFG.emb_dim, 3)  # same config, another classification head
    with pytest.raises(ValueError, match=r"'out_features': 2.*'out_features': 3"):
        load_checkpoint(tmp_path / "cls", other)


def test_newer_format_version_is_refused(saved):
    config = json.loads((saved / "config.json").read_text())
    config["version"] = ckpt.FORMAT_VERSION + 1
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=rf"version {ckpt.FORMAT_VERSION + 1}.*upgrade gpt2_core"):
        load_checkpoint(saved)
    with pytest.raises(ValueError, match="upgrade gpt2_core"):
        ckpt.checkpoint_info(saved)
    config["version"] = "one"
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="invalid format version"):
        load_checkpoint(saved)


def test_failed_load_changes_nothing(saved):
    other = GPTModel(CFG.replace(emb_dim=48))
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(ValueError):
        load_checkpoint(saved, other)
    assert_same(before, other.state_dict(), "model")


def test_missing_optimizer_state(tmp_path):
    model, opt, sched = make_run(0)
    save_checkpoint(tmp_path / "ck", model)
    with pytest.raises(ValueError, match="optimizer"):
        load_checkpoint(tmp_path / "ck", model, opt)
    with pytest.raises(ValueError, match="scheduler"):
        load_checkpoint(tmp_path / "ck", model, scheduler=sched)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(step=-1), ValueError, "step"),
    (dict(step=1.5), ValueError, "step"),
    (dict(extra=[1, 2]), TypeError, "extra"),
    (dict(extra={"x": object()}), TypeError, "JSON"),
])
def test_save_argument_errors(tmp_path, kwargs, error, match):
    model, _, _ = make_run(0)
    with pytest.raises(error, match=match):
        save_checkpoint(tmp_path / "ck", model, **kwargs)
    assert not (tmp_path / "ck").exists()


def test_save_rejects_non_model_and_file_path(tmp_path):
    with pytest.raises(TypeError, match="nn.Module"):
        save_checkpoint(tmp_path / "ck", {"w": torch.zeros(1)})
    with pytest.raises(TypeError, match="GPTConfig"):
        save_checkpoint(tmp_path / "ck", nn.Linear(2, 2))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        save_checkpoint(tmp_path / "file", make_run(0)[0])


class Wrapper(nn.Module):
    """Stands in for DistributedDataParallel, which keeps the model in ``.module``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


@pytest.mark.parametrize("wrap", [Wrapper, torch.compile])
def test_wrapped_models_save_and_load_plain_names(tmp_path, wrap):
    model, _, _ = make_run(0)
    save_checkpoint(tmp_path / "ck", wrap(model))
    names = set(load_file(tmp_path / "ck" / "model.safetensors"))
    assert "tok_emb.weight" in names and not any(n.startswith(("module.", "_orig_mod.")) for n in names)
    target = make_run(3)[0]
    wrapped_target = wrap(target)
    assert load_checkpoint(tmp_path / "ck", wrapped_target)["model"] is wrapped_target
    assert_same(model.state_dict(), target.state_dict(), "model")


# --- warnings, housekeeping, LoRA ----------------------------------------------------------------

def test_cuda_rng_state_that_cannot_be_restored_warns(tmp_path, monkeypatch):
    model, _, _ = make_run(0)
    real_state = ckpt.rng_state
    fake_cuda = [torch.zeros(16, dtype=torch.uint8)] * (torch.cuda.device_count() + 1)  # one GPU too many
    monkeypatch.setattr(ckpt, "rng_state", lambda: {**real_state(), "cuda": fake_cuda})
    save_checkpoint(tmp_path / "ck", model)
    monkeypatch.undo()
    with pytest.warns(RuntimeWarning, match=r"CUDA RNG states for \d+ GPU.*not bitwise identical"):
        load_checkpoint(tmp_path / "ck", model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # restore_rng=False restores nothing, so nothing to warn about
        load_checkpoint(tmp_path / "ck", model, restore_rng=False)


def test_stale_tmp_dirs_of_dead_processes_are_removed(tmp_path):
    model, _, _ = make_run(0)
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(done.stdout)  # that process has exited
    stale = tmp_path / f"ck.tmp-{dead_pid}"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half a file")
    live = tmp_path / f"ck.tmp-{os.getppid()}"  # a running process: maybe saving right now
    live.mkdir()
    other = tmp_path / "other.tmp-1"  # belongs to another path: not ours to clean
    other.mkdir()
    save_checkpoint(tmp_path / "ck", model, step=1)
    names = sorted(p.name for p in tmp_path.iterdir())
    expected = ["ck", live.name, other.name] if os.name == "posix" else ["ck", other.name]
    assert names == sorted(expected)
    assert load_checkpoint(tmp_path / "ck")["step"] == 1


def test_save_refuses_to_replace_a_directory_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a checkpoint.*new or empty directory"):
        save_checkpoint(tmp_path / "notes", make_run(0)[0])
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"
    (tmp_path / "empty").mkdir()
    save_checkpoint(tmp_path / "empty", make_run(0)[0])  # an empty directory is fine
    assert load_checkpoint(tmp_path / "empty")["step"] == 0


def test_checkpoint_info_reads_json_only(saved, monkeypatch):
    monkeypatch.setattr(ckpt._Reader, "tensors", lambda *a: pytest.fail("checkpoint_info must not read tensors"))
    info = ckpt.checkpoint_info(saved)
    assert info["step"] == 1 and info["config"] == CFG and info["extra"] == {}
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        ckpt.checkpoint_info(saved.parent / "missing")


def test_unwrap_model_lives_beside_the_model():
    from gpt2_core.model import gpt as model_module

    inner = make_run(0)[0]
    assert model_module.unwrap_model(Wrapper(Wrapper(inner))) is inner


def test_lora_model_round_trips_through_checkpoint(tmp_path):
    from gpt2_core.finetuning.lora import inject_lora

    model, _, _ = make_run(0)
    inject_lora(model, rank=4, alpha=8.0)
    with torch.no_grad():  # B starts at zero; make the adapters matter so the test can fail
        for name, p in model.named_parameters():
            if name.endswith((".A", ".B")):
                p.normal_(0, 0.5)
    save_checkpoint(tmp_path / "lora", model, step=3)

    torch.manual_seed(99)
    target = GPTModel(CFG)
    inject_lora(target, rank=4, alpha=8.0)
    load_checkpoint(tmp_path / "lora", target)
    x = torch.randint(0, CFG.vocab_size, (2, CFG.context_length))
    model.eval()
    target.eval()
    with torch.no_grad():
        assert torch.equal(model(x), target(x))
    assert_same(model.state_dict(), target.state_dict(), "model")
    # a LoRA checkpoint does not load into a plain model (and says which weights differ)
    with pytest.raises(ValueError, match=r"\.A"):
        load_checkpoint(tmp_path / "lora", GPTModel(CFG))


def test_a_garbled_size_record_is_called_corrupt(saved):
    config = json.loads((saved / "config.json").read_text())
    config[ckpt.FILES_KEY] = {"model.safetensors": "many"}
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="records its files' sizes.*corrupt"):
        ckpt.checkpoint_info(saved)
