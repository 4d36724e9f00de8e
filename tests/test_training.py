"""Tests for gpt2_core.training: loss, optimizer groups, LR schedule, the loop, exact resume, CLI."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY as CFG
from conftest import tiny_model, tiny_tokenizer
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2_core.model.config import GPTConfig
from gpt2_core.pretraining.batches import StepBatches, eval_batches
from gpt2_core.pretraining.loop import History, TrainConfig, train
from gpt2_core.pretraining.optim import lr_schedule, make_optimizer, make_scheduler, param_groups
from gpt2_core.pretraining.runner import RunHistory, run_steps
from gpt2_core.pretraining.step import lm_loss, mean_loss, perplexity, train_step
from gpt2_core.text.windows import GPTDataset, create_dataloader


def token_ids(n: int = 600, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # a learnable pattern (counting mod vocab) with noise, so training lowers the loss
    base = torch.arange(n) % CFG.vocab_size
    noise = torch.randint(0, CFG.vocab_size, (n,), generator=g)
    return torch.where(torch.rand(n, generator=g) < 0.2, noise, base)


def loaders(batch_size: int = 4):
    ids = token_ids()
    return (create_dataloader(ids[:500], context_length=8, batch_size=batch_size, seed=0),
            create_dataloader(ids[500:], context_length=8, batch_size=batch_size, shuffle=False))


# ------------------------------------------------------------------------------------------ loss


def test_lm_loss_is_mean_next_token_cross_entropy():
    model = tiny_model().eval()
    x = torch.randint(0, CFG.vocab_size, (2, 8))
    y = torch.randint(0, CFG.vocab_size, (2, 8))
    logits = model(x)
    manual = -torch.log_softmax(logits, -1).gather(-1, y.unsqueeze(-1)).mean()
    assert torch.allclose(lm_loss(model, (x, y)), manual, atol=1e-6)


def test_initial_loss_is_near_ln_vocab():
    model = tiny_model().eval()
    x = torch.randint(0, CFG.vocab_size, (8, 8))
    loss = lm_loss(model, (x, torch.roll(x, -1, 1))).item()
    assert abs(loss - math.log(CFG.vocab_size)) < 0.3


def test_lm_loss_errors():
    model = tiny_model()
    with pytest.raises(ValueError, match="same shape"):
        lm_loss(model, (torch.zeros(2, 8, dtype=torch.long), torch.zeros(2, 7, dtype=torch.long)))
    with pytest.raises(TypeError, match="inputs, targets"):
        lm_loss(model, torch.zeros(2, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="nothing to learn"):
        lm_loss(model, (torch.zeros(2, 8, dtype=torch.long), torch.full((2, 8), -100)))
    with pytest.raises(TypeError, match="torch.Tensor"):
        lm_loss(model, ([[1, 2]], torch.zeros(1, 2, dtype=torch.long)))


def test_evaluate_averages_batches_in_eval_mode_and_restores_the_mode():
    model = tiny_model().train()
    _, val = loaders()
    batches = list(val)[:2]
    with torch.no_grad():
        model.eval()
        want = sum(lm_loss(model, batch).item() for batch in batches) / 2
        model.train()
    assert mean_loss(model, batches) == pytest.approx(want, rel=1e-6)  # dropout off inside
    assert model.training
    assert math.isnan(mean_loss(model, []))
    eval_set = list(eval_batches(val.dataset, 4, num_batches=2))
    assert len(eval_set) == 2 and eval_set[0][0].shape == (4, 8)


def test_perplexity_is_exp_of_loss():
    assert perplexity(0.0) == 1.0
    assert perplexity(math.log(50257)) == pytest.approx(50257)


# ------------------------------------------------------------------------------------ optimizer


def test_param_groups_decay_matrices_only_and_cover_every_parameter_once():
    model = tiny_model()
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    ids = [id(p) for p in decay["params"] + no_decay["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert any(p is model.tok_emb.weight for p in decay["params"])  # tied embedding decayed, once


def test_make_optimizer_is_adamw_and_rejects_bad_input():
    model = tiny_model()
    opt = make_optimizer(model, 1e-3, 0.05)
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["lr"] == 1e-3
    with pytest.raises(ValueError, match="lr"):
        make_optimizer(model, 0.0)
    with pytest.raises(ValueError, match="weight_decay"):
        make_optimizer(model, 1e-3, -1.0)
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable"):
        make_optimizer(model, 1e-3)


# ------------------------------------------------------------------------------------- schedule


def test_lr_schedule_shape():
    lrs = [lr_schedule(s, 100, 10, 1.0, 0.1) for s in range(120)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:10], strict=False))
    assert lrs[10] == pytest.approx(1.0) and lrs[55] == pytest.approx(0.55)
    assert all(a >= b for a, b in zip(lrs[10:100], lrs[11:100], strict=False))
    assert lrs[100] == lrs[119] == 0.1


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 500), st.data())
def test_lr_schedule_stays_between_min_and_max(max_steps, data):
    warmup = data.draw(st.integers(0, max_steps))
    step = data.draw(st.integers(0, 2 * max_steps))
    lr = lr_schedule(step, max_steps, warmup, 3e-4, 3e-5)
    assert 0 < lr <= 3e-4 + 1e-12
    if step >= warmup:  # warmup starts near zero; afterwards the cosine never goes below min_lr
        assert lr >= 3e-5 - 1e-12


@pytest.mark.parametrize("args, match", [
    ((-1, 10, 0, 1.0, 0.1), "step"), ((0, 0, 0, 1.0, 0.1), "max_steps"), ((0, 10, 11, 1.0, 0.1), "warmup"),
    ((0, 10, 0, 1.0, 2.0), "min_lr"), ((1.5, 10, 0, 1.0, 0.1), "step"),
])
def test_lr_schedule_errors(args, match):
    with pytest.raises((TypeError, ValueError), match=match):
        lr_schedule(*args)


def test_scheduler_follows_lr_schedule():
    opt = make_optimizer(tiny_model(), 2e-3)
    sched = make_scheduler(opt, 20, 5, 2e-3, 2e-4)
    for step in range(25):
        assert opt.param_groups[0]["lr"] == pytest.approx(lr_schedule(step, 20, 5, 2e-3, 2e-4))
        opt.step()
        sched.step()


# ---------------------------------------------------------------------------------- data order


def test_step_batches_are_deterministic_cover_an_epoch_and_split_across_ranks():
    ds = GPTDataset(token_ids(), 8)
    whole = StepBatches(ds, 4, seed=3)
    again = StepBatches(ds, 4, seed=3)
    assert torch.equal(whole.batch(5)[0], again.batch(5)[0])
    first_epoch = torch.cat([whole.batch(b)[0] for b in range(whole.per_epoch)])
    assert len({tuple(r.tolist()) for r in first_epoch}) == whole.per_epoch * 4  # no window twice
    assert not torch.equal(whole.batch(0)[0], whole.batch(whole.per_epoch)[0])  # next epoch reshuffles
    r0, r1 = StepBatches(ds, 2, 3, rank=0, world_size=2), StepBatches(ds, 2, 3, rank=1, world_size=2)
    assert torch.equal(torch.cat([r0.batch(7)[0], r1.batch(7)[0]]), whole.batch(7)[0])
    with pytest.raises(ValueError, match="fewer than one global batch"):
        StepBatches(ds, 1000)


def test_eval_batches_are_fixed_and_spread():
    ds = GPTDataset(token_ids(), 8)
    a, b = list(eval_batches(ds, 4, 3)), list(eval_batches(ds, 4, 3))
    assert len(a) == 3 and all(torch.equal(x[0], y[0]) for x, y in zip(a, b, strict=True))
    assert torch.equal(a[-1][0][-1], ds[len(ds) - 1][0])  # reaches the end of the split


# ---------------------------------------------------------------------------------------- train


def test_train_lowers_the_loss_and_records_history():
    train_loader, val_loader = loaders()
    model = tiny_model()
    cfg = TrainConfig(max_steps=30, lr=1e-2, warmup_steps=3, eval_every=10, eval_batches=2, progress=False)
    history = train(model, train_loader, val_loader, cfg)
    assert history.steps == list(range(1, 31)) and history.eval_steps == [10, 20, 30]
    assert history.tokens == [4 * 8 * s for s in range(1, 31)]
    assert history.lrs[0] == pytest.approx(lr_schedule(0, 30, 3, 1e-2, 1e-3))
    assert history.val_losses[-1] < history.val_losses[0] < math.log(CFG.vocab_size) + 0.5
    assert not model.training and history.seconds > 0


def test_grad_accumulation_matches_a_bigger_batch():
    ds = GPTDataset(token_ids(), 8)
    cfg = GPTConfig(**{**CFG.to_dict(), "drop_rate": 0.0})
    kw = dict(max_steps=4, lr=1e-2, progress=False, eval_batches=1)
    a = train(tiny_model(cfg=cfg), ds, None, TrainConfig(grad_accum=1, **kw), batch_size=4)
    b = train(tiny_model(cfg=cfg), ds, None, TrainConfig(grad_accum=2, **kw), batch_size=2)
    assert b.tokens == a.tokens
    # same windows per step (2 x 2 = 4 consecutive in the same permutation) -> same losses
    assert a.losses == pytest.approx(b.losses, abs=1e-5)


def test_resume_reproduces_the_uninterrupted_run_exactly(tmp_path):
    train_loader, val_loader = loaders()
    kw = dict(max_steps=12, lr=5e-3, warmup_steps=2, eval_every=4, eval_batches=2, progress=False)
    full = train(tiny_model(), train_loader, val_loader, TrainConfig(**kw))  # dropout on: RNG matters

    torch.manual_seed(999)  # whatever happens between runs must not matter
    ckpt = tmp_path / "run"
    first = train(tiny_model(), train_loader, val_loader, TrainConfig(**kw, out_dir=str(ckpt), stop_at_step=5),
                  tokenizer=tiny_tokenizer())
    assert len(first.steps) == 5 and (ckpt / "model.safetensors").is_file()
    torch.manual_seed(12345)
    fresh_train, fresh_val = loaders()
    resumed = train(tiny_model(seed=7), fresh_train, fresh_val, TrainConfig(**kw, resume_from=str(ckpt)),
                    tokenizer=tiny_tokenizer())
    assert resumed.steps == full.steps
    assert resumed.losses == full.losses  # exact, not approximate
    assert resumed.lrs == full.lrs and resumed.tokens == full.tokens
    assert resumed.val_losses[-1] == full.val_losses[-1]


def test_periodic_checkpoints(tmp_path):
    train_loader, val_loader = loaders()
    from gpt2_core.pretraining.checkpoint import load_checkpoint

    cfg = TrainConfig(max_steps=4, checkpoint_every=2, out_dir=str(tmp_path / "c"), progress=False)
    train(tiny_model(), train_loader, val_loader, cfg, tokenizer=tiny_tokenizer())
    state = load_checkpoint(tmp_path / "c", restore_rng=False)
    assert state["step"] == 4 and History.from_dict(state["extra"]["history"]).steps == [1, 2, 3, 4]


@pytest.mark.parametrize("kw, match", [
    (dict(max_steps=0), "max_steps"), (dict(max_steps=5, warmup_steps=6), "warmup"),
    (dict(max_steps=5, grad_accum=0), "grad_accum"), (dict(max_steps=5, grad_clip=0.0), "grad_clip"),
    (dict(max_steps=5, checkpoint_every=2), "out_dir"), (dict(max_steps=5, stop_at_step=6), "stop_at_step"),
    (dict(max_steps=5, eval_batches=0), "eval_batches"), (dict(max_steps=5, lr=1e-3, min_lr=1.0), "min_lr"),
])
def test_train_config_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


def test_train_errors():
    train_loader, val_loader = loaders()
    with pytest.raises(TypeError, match="TrainConfig"):
        train(tiny_model(), train_loader, val_loader, {"max_steps": 3})
    with pytest.raises(TypeError, match="DataLoader"):
        train(tiny_model(), [1, 2, 3], None, TrainConfig(max_steps=1))
    with pytest.raises(ValueError, match="batch_size"):
        train(tiny_model(), GPTDataset(token_ids(), 8), None, TrainConfig(max_steps=1))


def test_history_round_trips():
    h = History(steps=[1], losses=[2.0], lrs=[0.1], tokens=[32], seconds=2.0)
    assert History.from_dict(h.to_dict()) == h and h.tokens_per_second == 16.0


def test_steady_tokens_per_second_is_the_median_step_and_ignores_untimed_steps():
    h = History(steps=[1, 2, 3, 4], tokens=[10, 20, 30, 40], seconds=100.0, step_seconds=[50.0, 1.0, 2.0])
    # steps 2-4 (an older run did not time step 1) ran 10 tokens each: 0.2, 10 and 5 tokens/s
    assert h.steady_tokens_per_second == 5.0
    assert math.isnan(History(steps=[1], tokens=[8], seconds=1.0).steady_tokens_per_second)
    assert History.from_dict({k: v for k, v in h.to_dict().items() if k != "step_seconds"}).step_seconds == []


def test_train_records_one_step_time_per_step():
    train_loader, val_loader = loaders()
    history = train(tiny_model(), train_loader, val_loader, TrainConfig(max_steps=5, progress=False))
    assert len(history.step_seconds) == 5 and all(0 < s < history.seconds for s in history.step_seconds)
    assert history.steady_tokens_per_second > 0


def test_train_step_is_the_loops_step_and_skips_a_non_finite_update():
    batches = [next(iter(loaders()[0])) for _ in range(2)]
    a, b = tiny_model().eval(), tiny_model().eval()  # eval: no dropout, so both compute the same
    opt_a, opt_b = make_optimizer(a, 1e-2), make_optimizer(b, 1e-2)
    loss = train_step(a, opt_a, batches, grad_clip=None)
    for x, y in batches:  # the same by hand
        (lm_loss(b, (x, y)) / 2).backward()
    opt_b.step()
    assert loss == pytest.approx(lm_loss(tiny_model().eval(), batches[0]).item(), abs=1e-6)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert all(p.grad is None for p in a.parameters())  # zeroed for the next step
    before = [p.clone() for p in a.parameters()]
    bad = train_step(a, opt_a, batches, loss_fn=lambda m, batch: lm_loss(m, batch) * float("nan"))
    assert math.isnan(bad) and all(torch.equal(p, q) for p, q in zip(a.parameters(), before, strict=True))
    with pytest.raises(ValueError, match="micro-batch"):
        train_step(a, opt_a, [])


def test_run_steps_records_each_step_and_evaluates_on_schedule():
    model, seen = torch.nn.Linear(2, 2).train(), []
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = {3: [], 4: [1.0, 2.0]}  # step 3 took no update (NaN), step 4 two
    history = run_steps(model, optimizer, RunHistory(seconds=10.0), lambda s: losses.get(s, [0.25]),
                        last_step=5, done=1, eval_every=2, on_eval=seen.append, progress=False)
    assert history.steps == [2, 3, 4, 5] and history.lrs == [0.5] * 4 and history.eval_steps == seen == [2, 4, 5]
    assert history.losses[0] == 0.25 and math.isnan(history.losses[1]) and history.losses[2:] == [1.5, 0.25]
    assert history.seconds >= 10.0 and not model.training  # a resumed run's time goes on; eval mode after
    with pytest.raises(FloatingPointError, match=r"^the loss at step 1 is -inf \(not finite, lr 0\.5\): the run "
                                                 r"diverged, and this step's update was not applied\. Try again\.$"):
        run_steps(model, optimizer, RunHistory(), lambda s: [0.1, -math.inf], last_step=2, progress=False,
                  hint="Try again.")


def test_cross_entropy_reference_matches_functional():
    # lm_loss flattens (B, T, V) -> (B*T, V); check against F.cross_entropy on (B, V, T)
    model = tiny_model().eval()
    x = torch.randint(0, CFG.vocab_size, (3, 8))
    want = F.cross_entropy(model(x).transpose(1, 2), x)
    assert torch.allclose(lm_loss(model, (x, x)), want, atol=1e-6)


# ------------------------------------------------------------------------------------------ CLI


def test_cli_help(capsys):
    from gpt2_core.course.train import main

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--preset", "--context-length", "--batch-size", "--max-steps", "--resume", "--compile", "--bf16"):
        assert flag in out


def test_cli_rejects_bad_arguments(capsys):
    from gpt2_core.course.train import main

    with pytest.raises(SystemExit):
        main(["--preset", "huge"])
    assert "unknown --preset" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--save-every", "3"])
    assert "--out" in capsys.readouterr().err
