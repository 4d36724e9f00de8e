"""Reliability of the training loop and its CLI: resume is the same run or says why not, bad setups fail
before the first step, a diverging run stops without saving bad weights, bad arguments are usage errors."""

from __future__ import annotations

import re

import pytest
import torch
from conftest import TINY as CFG
from conftest import tiny_model as model
from conftest import tiny_tokenizer

from gpt2_core.pretraining import distributed, step
from gpt2_core.pretraining import loop as training
from gpt2_core.pretraining.checkpoint import load_checkpoint
from gpt2_core.pretraining.loop import History, TrainConfig, TrainSetupError
from gpt2_core.pretraining.loop import train as train_loop
from gpt2_core.pretraining.optim import lr_schedule
from gpt2_core.text.windows import GPTDataset

BASE = dict(max_steps=6, lr=5e-3, warmup_steps=1, eval_batches=1, progress=False)


def train(*args, **kwargs):  # every run here records the tokenizer of its (random) data
    return train_loop(*args, **kwargs, tokenizer=tiny_tokenizer())


def data(n: int = 400) -> GPTDataset:
    return GPTDataset(torch.randint(0, CFG.vocab_size, (n,), generator=torch.Generator().manual_seed(1)), 8)


def weights(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in m.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture()
def stopped(tmp_path):
    """A run of BASE stopped at step 3, checkpointed in tmp_path/run."""
    out = tmp_path / "run"
    train(model(), data(), None, TrainConfig(**BASE, out_dir=str(out), stop_at_step=3), batch_size=4)
    return out


# --------------------------------------------------------------------------------- resume settings


@pytest.mark.parametrize("change, named", [
    (dict(seed=7), "seed: 123 -> 7"),
    (dict(max_steps=8), "max_steps: 6 -> 8"),
    (dict(grad_accum=2), "grad_accum: 1 -> 2"),
    (dict(lr=1e-3), "lr: 0.005 -> 0.001"),
    (dict(weight_decay=0.0), "weight_decay: 0.1 -> 0.0"),
    (dict(betas=(0.9, 0.99)), r"betas: \[0.9, 0.95\] -> \[0.9, 0.99\]"),
    (dict(grad_clip=None), "grad_clip: 1.0 -> None"),
    (dict(shuffle=False), "shuffle: True -> False"),
])
def test_resume_with_other_settings_is_refused_and_names_them(stopped, change, named):
    m = model(5)
    before = weights(m)
    with pytest.raises(TrainSetupError, match=named) as err:
        train(m, data(), None, TrainConfig(**{**BASE, **change}, resume_from=str(stopped)), batch_size=4)
    assert "allow_config_change" in str(err.value)
    assert same(before, m.state_dict())  # refused before anything was loaded or trained


def test_resume_with_other_batch_size_or_data_is_refused(stopped):
    with pytest.raises(TrainSetupError, match=r"batch_size: 4 -> 2.*allow_config_change"):
        train(model(), data(), None, TrainConfig(**BASE, resume_from=str(stopped)), batch_size=2)
    with pytest.raises(TrainSetupError, match=r"train_windows: 49 -> 62"):
        train(model(), data(500), None, TrainConfig(**BASE, resume_from=str(stopped)), batch_size=4)


def test_settings_that_do_not_change_the_run_never_block(stopped, tmp_path):
    full = train(model(), data(), None, TrainConfig(**BASE), batch_size=4)
    other = dict(BASE, eval_every=2, eval_batches=2, progress=False)
    resumed = train(model(9), data(), None, TrainConfig(**other, resume_from=str(stopped), checkpoint_every=1,
                                                         out_dir=str(tmp_path / "elsewhere")), batch_size=4)
    assert resumed.losses == full.losses  # still the same run, exactly


def test_allowed_changes_are_printed_and_applied(stopped, capsys):
    cfg = TrainConfig(**{**BASE, "lr": 1e-3, "max_steps": 8}, resume_from=str(stopped), allow_config_change=True)
    history = train(model(), data(), None, cfg, batch_size=4)
    out = capsys.readouterr().out
    assert "changed settings" in out and "lr: 0.005 -> 0.001" in out and "max_steps: 6 -> 8" in out
    assert history.steps == list(range(1, 9))
    # steps 4.. follow the new schedule, not the saved one
    assert history.lrs[3:] == pytest.approx([lr_schedule(s, 8, 1, 1e-3, 1e-4) for s in range(3, 8)])


def test_old_checkpoints_without_run_settings_still_resume(stopped):
    import json

    trainer = json.loads((stopped / "trainer.json").read_text())
    del trainer["extra"]["run_settings"]  # as written before settings were recorded
    (stopped / "trainer.json").write_text(json.dumps(trainer))
    config = json.loads((stopped / "config.json").read_text())
    del config["files"]  # ... and before the files' sizes were (an edited trainer.json would not match its size)
    (stopped / "config.json").write_text(json.dumps(config))
    full = train(model(), data(), None, TrainConfig(**BASE), batch_size=4)
    resumed = train(model(), data(), None, TrainConfig(**BASE, resume_from=str(stopped)), batch_size=4)
    assert resumed.losses == full.losses


def test_checkpoint_without_optimizer_state_is_a_setup_error(tmp_path):
    from gpt2_core.pretraining.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "weights-only", model())
    with pytest.raises(TrainSetupError, match="cannot resume.*no optimizer state"):
        train(model(), data(), None, TrainConfig(**BASE, resume_from=str(tmp_path / "weights-only")), batch_size=4)


def test_resume_into_a_model_of_another_shape_is_a_setup_error(stopped):
    with pytest.raises(TrainSetupError, match=r"n_heads: checkpoint 2, model 4"):
        train(model(cfg=CFG.replace(n_heads=4)), data(), None, TrainConfig(**BASE, resume_from=str(stopped)),
              batch_size=4)


# -------------------------------------------------------------------------------------- fail early


@pytest.fixture()
def no_training(monkeypatch):
    """Any attempt to compute a training loss fails the test: the error must come first."""
    monkeypatch.setattr(step, "lm_loss", lambda *a: pytest.fail("training started"))
    monkeypatch.setattr(training, "train_step", lambda *a, **k: pytest.fail("training started"))


def test_out_dir_that_is_a_file_fails_before_the_first_step(tmp_path, no_training):
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "sub"):
        with pytest.raises(TrainSetupError, match=r"out_dir: .*(not a directory|is a file)"):
            train(model(), data(), None, TrainConfig(**BASE, out_dir=str(out)), batch_size=4)


def test_out_dir_that_is_someone_elses_folder_fails_early(tmp_path, no_training):
    (tmp_path / "notes.txt").write_text("keep")
    with pytest.raises(TrainSetupError, match="not a checkpoint"):
        train(model(), data(), None, TrainConfig(**BASE, out_dir=str(tmp_path)), batch_size=4)
    assert (tmp_path / "notes.txt").read_text() == "keep"


@pytest.mark.skipif(not __import__("os").path.isdir("/proc"), reason="needs Linux's /proc")
def test_unwritable_out_dir_fails_early(no_training):
    """/proc says yes to os.access(W_OK) for root, yet no file can be made there: only writing a probe tells."""
    with pytest.raises(TrainSetupError, match="not writable"):
        train(model(), data(), None, TrainConfig(**BASE, out_dir="/proc/gpt2-run"), batch_size=4)


def test_out_dir_without_a_tokenizer_fails_early(tmp_path, no_training):
    with pytest.raises(TrainSetupError, match="no tokenizer was given"):
        train_loop(model(), data(), None, TrainConfig(**BASE, out_dir=str(tmp_path / "run")), batch_size=4)


def test_missing_or_invalid_resume_fails_early(tmp_path, no_training):
    with pytest.raises(TrainSetupError, match="no checkpoint directory there"):
        train(model(), data(), None, TrainConfig(**BASE, resume_from=str(tmp_path / "gone")), batch_size=4)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "config.json").write_text("{}")
    with pytest.raises(TrainSetupError, match="not a usable checkpoint.*config.json"):
        train(model(), data(), None, TrainConfig(**BASE, resume_from=str(tmp_path / "junk")), batch_size=4)


def test_batch_larger_than_the_data_fails_before_any_work(monkeypatch, no_training):
    monkeypatch.setattr(training, "optimizer_for", lambda *a, **k: pytest.fail("optimizer built"))
    with pytest.raises(TrainSetupError, match="fewer than one global batch"):
        train(model(), data(), None, TrainConfig(**BASE), batch_size=64)


def test_windows_longer_than_the_context_fail_early(no_training):
    long = GPTDataset(torch.randint(0, CFG.vocab_size, (400,)), 16)
    with pytest.raises(TrainSetupError, match="context_length is 8"):
        train(model(), long, None, TrainConfig(**BASE), batch_size=4)


# ---------------------------------------------------------------------------------- non-finite loss


def test_diverging_run_stops_at_the_first_non_finite_loss(tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig(max_steps=10, lr=1e6, grad_clip=None, progress=False, out_dir=str(out), checkpoint_every=1)
    m = model(cfg=CFG.replace(drop_rate=0.0))
    with pytest.raises(FloatingPointError, match=r"step \d+ is nan.*Lower the learning rate \(lr=1e\+06\)") as err:
        train(m, data(), None, cfg, batch_size=4)
    bad_step = int(re.search(r"step (\d+)", str(err.value)).group(1))
    assert 1 < bad_step < 10
    # the checkpoint of the step before is the last good one (nothing of the failing step was applied or saved)
    state = load_checkpoint(out, model(cfg=CFG.replace(drop_rate=0.0)), restore_rng=False)
    assert state["step"] == bad_step - 1
    assert all(torch.isfinite(v).all() for v in state["model"].state_dict().values())
    assert same(weights(state["model"]), m.state_dict())


def test_inf_loss_leaves_the_last_checkpoint_untouched(tmp_path, monkeypatch):
    out = tmp_path / "run"
    cfg = TrainConfig(**{**BASE, "max_steps": 8}, out_dir=str(out), checkpoint_every=2)
    real = training.train_step
    calls = []

    def loss_turns_inf(model, optimizer, micro_batches, **kw):  # steps 1-4 fine, then the loss is +inf
        calls.append(1)
        if len(calls) > 4:
            kw["loss_fn"] = lambda m, batch: step.lm_loss(m, batch) * float("inf")
        return real(model, optimizer, micro_batches, **kw)

    monkeypatch.setattr(training, "train_step", loss_turns_inf)
    with pytest.raises(FloatingPointError, match="step 5 is inf.*last checkpoint in .*run was not overwritten"):
        train(model(), data(), None, cfg, batch_size=4)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    state = load_checkpoint(out, restore_rng=False)
    assert state["step"] == 4 and History.from_dict(state["extra"]["history"]).steps == [1, 2, 3, 4]
    assert before == {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


# ----------------------------------------------------------------------------------- DDP dropout seeds


def test_dropout_seeds_differ_per_rank_and_step_and_are_reproducible():
    seeds = {distributed.dropout_seed(123, r, s) for r in range(4) for s in range(50)}
    assert len(seeds) == 200
    assert distributed.dropout_seed(123, 1, 7) == distributed.dropout_seed(123, 1, 7)
    assert all(0 <= s < 2**63 for s in seeds)  # torch.manual_seed takes a 64-bit seed


# -------------------------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("argv, reason", [
    (["--batch-size", "0"], "argument --batch-size: must be > 0, got 0"),
    (["--max-steps", "-3"], "argument --max-steps: must be > 0, got -3"),
    (["--max-steps", "0"], "argument --max-steps: must be > 0, got 0"),
    (["--grad-accum", "0"], "argument --grad-accum: must be > 0"),
    (["--lr", "0"], "argument --lr: must be > 0"),
    (["--lr", "fast"], "argument --lr: expected a number, got 'fast'"),
    (["--warmup", "-1"], "argument --warmup: must be >= 0"),
    (["--train-chars", "0"], "argument --train-chars: must be > 0"),
    (["--resume", "/no/such/run"], "argument --resume: no checkpoint directory at '/no/such/run'"),
])
def test_cli_bad_arguments_are_usage_errors(capsys, argv, reason):
    from gpt2_core.course.train import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("python -m gpt2_core.course.train: error:") and reason in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_cli_out_that_is_a_file_is_a_usage_error(capsys, tmp_path):
    from gpt2_core.course.train import main

    (tmp_path / "f").write_text("x")
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path / "f")])
    assert exc.value.code == 2 and "not a directory" in capsys.readouterr().err.splitlines()[-1]


@pytest.mark.parametrize("argv, env, reason", [
    ([], {"GPT2_COURSE_PROFILE": "huge"}, "GPT2_COURSE_PROFILE='huge' is not a profile"),
    ([], {"GPT2_COURSE_DEVICE": "cuda"}, "CUDA is not available"),
    ([], {"GPT2_COURSE_DEVICE": "tpu"}, "is not a device name"),
    (["--out", "/proc/gpt2-run"], {}, "--out: cannot write /proc/gpt2-run: /proc is not writable"),
])
def test_cli_environment_and_unwritable_out_are_usage_errors(capsys, monkeypatch, argv, env, reason):
    from gpt2_core.course.train import main

    if env.get("GPT2_COURSE_DEVICE") == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as exc:
        main(["--max-steps", "1", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and reason in err[-1] and "Traceback" not in "\n".join(err)


@pytest.fixture()
def gpt2_tokenizer(monkeypatch):
    """The CLI's data steps with GPT-2's offline tokenizer (no dependency on the reference model files)."""
    from gpt2_core.text.ranks import gpt2_encoding

    monkeypatch.setattr("gpt2_core.course.train.course_tokenizer", lambda profile=None: gpt2_encoding())


@pytest.mark.parametrize("extra, reason", [
    (["--train-chars", "10"], "the text has only"),  # not even one window
    (["--train-chars", "2000", "--batch-size", "64"], "batch_size=64"),  # not one batch
])
def test_cli_too_little_text_is_a_usage_error(capsys, gpt2_tokenizer, extra, reason):
    from gpt2_core.course.train import main

    with pytest.raises(SystemExit) as exc:
        main(["--profile", "tiny", "--max-steps", "5", "--no-progress", *extra])
    assert exc.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("python -m gpt2_core.course.train: error:") and reason in last and "--train-chars" in last


def test_cli_resume_with_other_settings_is_a_usage_error_unless_allowed(capsys, gpt2_tokenizer, tmp_path):
    from gpt2_core.course.train import main

    out = str(tmp_path / "run")
    common = ["--profile", "tiny", "--train-chars", "6000", "--context-length", "16", "--batch-size", "2",
              "--eval-batches", "1", "--warmup", "0", "--no-progress", "--preset", "tiny"]
    assert main([*common, "--max-steps", "2", "--out", out]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main([*common, "--max-steps", "3", "--resume", out, "--out", out])
    assert exc.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "max_steps: 2 -> 3" in last and "--allow-config-change" in last
    assert main([*common, "--max-steps", "3", "--resume", out, "--out", out, "--allow-config-change"]) == 0
    assert "max_steps: 2 -> 3" in capsys.readouterr().out
    assert load_checkpoint(out, restore_rng=False)["step"] == 3
