"""The GPU path on a CUDA device: bf16 + torch.compile training, the KV cache and its compiled static form
(CUDA graphs), checkpoints and the CUDA RNG state. Every test is skipped where CUDA is absent.

Tolerances, and why they are not zero: on a CPU a resumed run is bit-identical to one that never stopped.
On a GPU, under bf16 autocast and torch.compile, some backward kernels (the embedding's scatter-add, the
attention backward) add in a different order from run to run, so two runs from identical states drift by
float rounding. ``RESUME_LOSS_ATOL`` bounds that drift over a few steps: far below what a lost optimizer
state or a wrong data position changes (the loss moves by 0.01 to 0.1 per step in these runs).
"""

from __future__ import annotations

import pytest
import torch

from gpt2_core.model.attention import KVCache
from gpt2_core.model.config import GPTConfig
from gpt2_core.model.generation import StaticKVCache, generate
from gpt2_core.model.gpt import GPTModel
from gpt2_core.model.hf_weights import save_hf
from gpt2_core.pretraining.checkpoint import load_checkpoint, save_checkpoint
from gpt2_core.pretraining.loop import TrainConfig, train
from gpt2_core.text.windows import GPTDataset

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA = torch.device("cuda")
VOCAB, CTX = 97, 32
RESUME_LOSS_ATOL = 2e-3  # bf16 + compile on a GPU: losses of a resumed run vs the uninterrupted one


def small_model(seed: int = 0, drop_rate: float = 0.0, spread: float = 1.0) -> GPTModel:
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=VOCAB, context_length=CTX, emb_dim=64, n_heads=4, n_layers=2, drop_rate=drop_rate)
    model = GPTModel(cfg)
    if spread != 1.0:
        with torch.no_grad():  # wider logits: greedy choices far from ties
            for p in model.parameters():
                p.mul_(spread)
    return model.to(CUDA)


def dataset(n: int = 4000) -> GPTDataset:
    g = torch.Generator().manual_seed(1)
    base = torch.arange(n) % VOCAB  # a learnable pattern with noise
    ids = torch.where(torch.rand(n, generator=g) < 0.2, torch.randint(0, VOCAB, (n,), generator=g), base)
    return GPTDataset(ids, CTX)


def prompt(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed)).to(CUDA)


# --- training ----------------------------------------------------------------------------------------


def test_bf16_compiled_training_lowers_the_loss():
    model = small_model()
    cfg = TrainConfig(max_steps=40, lr=1e-2, warmup_steps=4, eval_batches=2, progress=False)
    history = train(model, dataset(), dataset(1200), cfg, batch_size=8)  # bf16 and compile: CUDA's defaults
    assert history.losses[-1] < 0.7 * history.losses[0]  # 4.59 -> 1.92 in the same run on a CPU (bf16, eager)
    assert history.val_losses[-1] < history.losses[0]
    assert len(history.step_seconds) == 40 and history.steady_tokens_per_second > 0
    assert next(model.parameters()).dtype == torch.float32  # autocast: float32 weights, bf16 matmuls


def test_compiled_loss_under_bf16_autocast_has_no_graph_breaks_on_cuda():
    model = small_model().train()
    idx = prompt(4, CTX)

    def loss(idx, targets):  # noqa: ANN001, ANN202
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return model(idx, targets=targets)

    explanation = torch._dynamo.explain(loss)(idx, torch.roll(idx, -1, 1))
    assert explanation.graph_break_count == 0, explanation.break_reasons


def test_fused_loss_under_bf16_autocast_matches_the_plain_loss_on_cuda():
    import torch.nn.functional as F

    model = small_model().train()
    idx = prompt(4, CTX, seed=2)
    targets = torch.roll(idx, -1, 1)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        fused = model(idx, targets=targets)
        plain = F.cross_entropy(model(idx).flatten(0, 1).float(), targets.flatten())
    assert "Fused" in type(fused.grad_fn).__name__
    torch.testing.assert_close(fused, plain, rtol=1e-2, atol=1e-2)
    fused.backward()
    fused_grad = model.tok_emb.weight.grad.clone()
    model.zero_grad()
    plain.backward()
    scale = model.tok_emb.weight.grad.abs().max()
    torch.testing.assert_close(fused_grad, model.tok_emb.weight.grad, rtol=0, atol=3e-2 * scale.item())


def test_checkpoint_saved_on_cuda_resumes_within_tolerance(tmp_path):
    kw = dict(max_steps=12, lr=3e-3, warmup_steps=2, eval_batches=1, progress=False)
    full = train(small_model(), dataset(), None, TrainConfig(**kw), batch_size=8)
    out = tmp_path / "run"
    first = train(small_model(), dataset(), None, TrainConfig(**kw, out_dir=str(out), stop_at_step=6),
                  batch_size=8)
    assert first.losses == pytest.approx(full.losses[:6], abs=RESUME_LOSS_ATOL)
    resumed = train(small_model(seed=9), dataset(), None, TrainConfig(**kw, resume_from=str(out)), batch_size=8)
    assert resumed.steps == full.steps and resumed.tokens == full.tokens
    assert resumed.losses == pytest.approx(full.losses, abs=RESUME_LOSS_ATOL)
    state = load_checkpoint(out, restore_rng=False, map_location=CUDA)
    assert state["model"].device.type == "cuda" and state["step"] == 6


def test_cuda_rng_state_round_trips(tmp_path):
    model = small_model()
    torch.cuda.manual_seed_all(7)
    torch.randn(3, device=CUDA)  # move the generator off its seed
    save_checkpoint(tmp_path / "c", model, step=1)
    want_cuda, want_cpu = torch.randn(5, device=CUDA), torch.randn(5)
    torch.randn(100, device=CUDA)
    torch.randn(100)
    load_checkpoint(tmp_path / "c", model, restore_rng=True)
    assert torch.equal(torch.randn(5, device=CUDA), want_cuda)
    assert torch.equal(torch.randn(5), want_cpu)


# --- decoding ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 8])
def test_kv_cache_equals_recomputation_on_cuda(batch):
    model = small_model(spread=4.0)
    idx = prompt(batch, 5, seed=batch)
    cached = generate(model, idx, 2 * CTX)  # past the window: the cache is dropped and recomputed
    assert cached.device.type == "cuda"
    assert torch.equal(cached, generate(model, idx, 2 * CTX, use_cache=False))


@pytest.mark.parametrize("static", [False, True])
def test_cached_steps_equal_recomputation_on_cuda(static):
    model = small_model(spread=4.0).eval()
    cache = model.new_kv_cache(2, cache_class=StaticKVCache if static else KVCache)
    seq = prompt(2, 6)
    with torch.inference_mode():
        logits = model.next_token_logits(seq, cache)
        for _ in range(6):
            torch.testing.assert_close(logits, model(seq)[:, -1], rtol=1e-4, atol=1e-4)
            token = logits.argmax(-1)
            seq = torch.cat([seq, token[:, None]], dim=1)
            logits = model.next_token_logits(token[:, None], cache)


@pytest.mark.parametrize("batch", [1, 8])
def test_static_cache_under_compile_with_cuda_graphs_equals_eager(batch):
    model = small_model(spread=4.0)
    idx = prompt(batch, 7, seed=10 + batch)
    eager = generate(model, idx, 40)
    compiled = generate(model, idx, 40, compile=True)
    assert torch.equal(compiled, eager)
    again = generate(model, prompt(batch, 3, seed=99), 20, compile=True)  # reuses the graph and the cache
    assert torch.equal(again, generate(model, prompt(batch, 3, seed=99), 20, use_cache=False))


def test_greedy_tokens_equal_transformers_on_cuda(tmp_path):
    from transformers import GPT2LMHeadModel

    model = small_model(seed=1, spread=4.0)
    save_hf(model, tmp_path)
    theirs = GPT2LMHeadModel.from_pretrained(tmp_path).to(CUDA).eval()
    idx = prompt(2, 6, seed=5)
    with torch.inference_mode():
        want = theirs.generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=16, min_new_tokens=16,
                               do_sample=False, use_cache=True, pad_token_id=0, eos_token_id=None)
    assert torch.equal(generate(model, idx, 16), want)
    assert torch.equal(generate(model, idx, 16, compile=True), want)
