"""Cached decoding (dynamic and static caches, eager and compiled) gives the
model's own logits and tokens, equals transformers' generate, and always sees the current weights; the
weights are stored input-major without changing what the model computes."""

from __future__ import annotations

import pytest
import torch

from gpt2_core.finetuning.lora import inject_lora, merge_lora
from gpt2_core.model.attention import KVCache
from gpt2_core.model.config import GPTConfig
from gpt2_core.model.generation import StaticKVCache, generate
from gpt2_core.model.gpt import GPTModel
from gpt2_core.model.hf_weights import save_hf
from gpt2_core.pretraining.checkpoint import load_checkpoint, save_checkpoint

VOCAB, CTX = 97, 24


def small_model(seed: int = 0, layers: int = 2) -> GPTModel:
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=VOCAB, context_length=CTX, emb_dim=32, n_heads=4, n_layers=layers, drop_rate=0.0)
    model = GPTModel(cfg).eval()
    with torch.no_grad():  # wider logits than GPT-2's init: greedy choices far from ties
        for p in model.parameters():
            p.mul_(4.0)
    return model


def prompt(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("static", [False, True])
def test_cached_steps_give_the_logits_of_recomputation(batch, static):
    model, idx = small_model(), prompt(batch, 5)
    cache = model.new_kv_cache(batch, cache_class=StaticKVCache if static else KVCache)
    with torch.inference_mode():
        logits = model.next_token_logits(idx, cache)
        seq = idx
        for _ in range(8):
            torch.testing.assert_close(logits, model(seq)[:, -1], rtol=1e-5, atol=1e-5)
            token = logits.argmax(-1)
            seq = torch.cat([seq, token[:, None]], dim=1)
            logits = model.next_token_logits(token[:, None], cache)
    assert (int(cache.position) if static else cache.pos) == 13


def test_a_static_cache_keeps_its_shapes_and_masks_the_empty_slots():
    cache = StaticKVCache(1, 2, 3, 4, max_len=6, device="cpu")
    k, v = torch.randn(2, 3, 1, 4), torch.randn(2, 3, 1, 4)
    cache.advance(2)
    assert cache.positions(1).tolist() == [2]
    keys, values, mask = cache.store(0, k, v)
    assert keys.shape == (2, 3, 6, 4) and torch.equal(keys[:, :, 2:3], k) and torch.equal(values[:, :, 2:3], v)
    assert mask.tolist() == [[True, True, True, False, False, False]]
    assert cache.pos == 0 and int(cache.position) == 2  # a static cache keeps its position in a tensor


def test_a_dynamic_cache_refuses_overflow_and_another_batch():
    model = small_model()
    cache = model.new_kv_cache(1, max_len=2)
    with torch.inference_mode():
        model.next_token_logits(prompt(1, 2), cache)
        with pytest.raises(ValueError, match="full"):
            model.next_token_logits(prompt(1, 1), cache)
        with pytest.raises(ValueError, match="batch 1"):
            model.next_token_logits(prompt(2, 1), model.new_kv_cache(1))


def test_the_one_token_step_has_no_graph_breaks():
    model = small_model()
    cache = model.new_kv_cache(2, cache_class=StaticKVCache)
    with torch.inference_mode():
        model.next_token_logits(prompt(2, 4), cache)
        explanation = torch._dynamo.explain(GPTModel.next_token_logits)(model, prompt(2, 1), cache)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_compiled_generation_gives_the_same_tokens():
    """One real torch.compile (inductor, CPU) of the model's forward: same tokens as eager, past the window too."""
    model = small_model(layers=1)
    idx = prompt(2, 5, seed=3)
    eager = generate(model, idx, CTX)  # 5 + 24 tokens: the window slides at the end
    assert torch.equal(eager, generate(model, idx, CTX, compile=True))
    assert torch.equal(generate(model, prompt(2, 3, seed=4), 6, compile=True),
                       generate(model, prompt(2, 3, seed=4), 6, use_cache=False))


@pytest.mark.parametrize("batch", [1, 8])
def test_greedy_tokens_equal_transformers_generate(tmp_path, batch):
    from transformers import GPT2LMHeadModel

    model = small_model(seed=1)
    save_hf(model, tmp_path)
    theirs = GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    idx = prompt(batch, 6, seed=batch)
    with torch.inference_mode():
        want = theirs.generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=12, min_new_tokens=12,
                               do_sample=False, use_cache=True, pad_token_id=0, eos_token_id=None)
    assert torch.equal(generate(model, idx, 12), want)


def change_by_fused_adamw(model: GPTModel) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=0.05, fused=True)
    model(prompt(2, 8), targets=prompt(2, 8, seed=1)).backward()
    opt.step()


def change_in_place(model: GPTModel) -> None:
    with torch.no_grad():
        model.blocks[0].ff.fc.weight.mul_(-1.0)


def change_through_data(model: GPTModel) -> None:
    model.blocks[0].att.qkv.weight.data.mul_(-1.0)  # invisible to autograd's version counters


def change_by_lora(model: GPTModel) -> None:
    inject_lora(model, rank=2, alpha=4.0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".B"):
                p.normal_(0.0, 1.0)


@pytest.mark.parametrize("change", [change_by_fused_adamw, change_in_place, change_through_data, change_by_lora])
def test_generation_always_sees_the_current_weights(change):
    model = small_model()
    before = generate(model, prompt(2, 4, seed=7), 10)
    change(model)
    model.eval()
    after = generate(model, prompt(2, 4, seed=7), 10)
    assert not torch.equal(after, before)
    assert torch.equal(after, generate(model, prompt(2, 4, seed=7), 10, use_cache=False))
    if any(name.endswith(".A") for name, _ in model.named_parameters()):
        merge_lora(model)
        assert torch.equal(generate(model, prompt(2, 4, seed=7), 10), after)


def test_weights_are_stored_input_major_and_that_changes_nothing_else(tmp_path):
    model = small_model()
    qkv, emb = model.blocks[0].att.qkv.weight, model.tok_emb.weight
    assert qkv.shape == (96, 32) and qkv.t().is_contiguous()  # nn.Linear's (out, in), lying in memory as (in, out)
    assert emb.shape == (VOCAB, 32) and emb.t().is_contiguous() and model.out_head.weight is emb
    torch.manual_seed(0)
    plain = torch.nn.Linear(32, 96)  # the same numbers as a standard layout would hold
    with torch.no_grad():
        plain.weight.copy_(qkv)
        plain.bias.copy_(model.blocks[0].att.qkv.bias)
    x = torch.randn(5, 32)
    torch.testing.assert_close(model.blocks[0].att.qkv(x), plain(x))
    save_checkpoint(tmp_path / "ck", model)
    loaded = load_checkpoint(tmp_path / "ck")["model"]
    assert loaded.blocks[0].att.qkv.weight.t().is_contiguous()  # loading keeps the layout
    pairs = zip(model.state_dict().values(), loaded.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


def test_the_same_seed_gives_the_same_initial_weights_as_a_standard_layout(monkeypatch):
    """Initial weights are drawn in each matrix's logical order, so the memory layout does not change them."""
    from gpt2_core.model import gpt as gpt_module

    cfg = GPTConfig(vocab_size=VOCAB, context_length=CTX, emb_dim=32, n_heads=4, n_layers=2)
    torch.manual_seed(0)
    input_major = GPTModel(cfg)
    monkeypatch.setattr(gpt_module, "store_input_major", lambda model: None)
    torch.manual_seed(0)
    standard = GPTModel(cfg)
    assert standard.blocks[0].att.qkv.weight.is_contiguous()
    for (name, a), b in zip(input_major.state_dict().items(), standard.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_generate_errors():
    model = small_model()
    with pytest.raises(ValueError, match="use_cache"):
        generate(model, prompt(1, 2), 3, use_cache=False, compile=True)
    with pytest.raises(TypeError, match="compile"):
        generate(model, prompt(1, 2), 3, compile="yes")
    with pytest.raises(TypeError, match="GPTModel"):
        generate(torch.nn.Linear(2, 2), prompt(1, 2), 3, compile=True)
