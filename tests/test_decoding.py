"""gpt2_core.decoding: the fast one-token step equals the model's own forward, compiles without graph
breaks, and its cached weight copies follow every change of the weights."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

from gpt2_core.config import GPTConfig
from gpt2_core.decoding import Decoder, decode_step, decoder_for, forget_decoder
from gpt2_core.generate import generate
from gpt2_core.lora import inject_lora, merge_lora
from gpt2_core.model import GPTModel

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


def step_logits(model: GPTModel, idx: torch.Tensor, steps: int, static: bool, copy: bool):
    """Logits of ``steps`` decoding steps after prefilling ``idx``: (model path, decoder path)."""
    decoder = Decoder(model, copy_matrices=copy)
    ours, theirs = model.new_kv_cache(idx.shape[0]), model.new_kv_cache(idx.shape[0])
    with torch.inference_mode():
        model(idx, ours)
        model(idx, theirs)
        tokens = idx[:, -1]
        got, want = [], []
        for _ in range(steps):
            position = torch.tensor([ours.pos])
            got.append(decode_step(decoder.weights, ours, tokens, position, None if static else ours.pos + 1))
            ours.advance(1)
            want.append(model(tokens[:, None], theirs, last_only=True)[:, -1])
            tokens = want[-1].argmax(-1)
    return torch.stack(got), torch.stack(want)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("copy", [False, True])
def test_decode_step_equals_the_model_forward(batch, static, copy):
    got, want = step_logits(small_model(), prompt(batch, 5), steps=8, static=static, copy=copy)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_decode_step_has_no_graph_breaks():
    model = small_model()
    decoder, cache = Decoder(model), model.new_kv_cache(2)
    with torch.inference_mode():
        model(prompt(2, 4), cache)
        explanation = torch._dynamo.explain(decode_step)(decoder.weights, cache, prompt(2, 1)[:, 0],
                                                         torch.tensor([cache.pos]))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_compiled_generation_gives_the_same_tokens():
    """One real torch.compile (inductor, CPU) of the static step: same tokens as eager, past the window too."""
    model = small_model(layers=1)
    idx = prompt(2, 5, seed=3)
    eager = generate(model, idx, CTX)  # 5 + 24 tokens: the window slides at the end
    compiled = generate(model, idx, CTX, compile=True)
    assert torch.equal(eager, compiled)
    decoder = decoder_for(model)
    assert decoder.compiled and decoder.cache(2) is decoder.cache(2)  # buffers reused across calls
    assert torch.equal(generate(model, prompt(2, 3, seed=4), 6, compile=True),
                       generate(model, prompt(2, 3, seed=4), 6, use_cache=False))


@pytest.mark.parametrize("batch", [1, 8])
def test_greedy_tokens_equal_transformers_generate(tmp_path, batch):
    from transformers import GPT2LMHeadModel

    model = small_model(seed=1)
    model.save_hf(tmp_path)
    theirs = GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    idx = prompt(batch, 6, seed=batch)
    with torch.inference_mode():
        want = theirs.generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=12, min_new_tokens=12,
                               do_sample=False, use_cache=True, pad_token_id=0, eos_token_id=None)
    assert torch.equal(generate(model, idx, 12), want)


def test_kv_cache_write_and_mask_are_the_static_form_of_update():
    from gpt2_core.attention import KVCache

    cache = KVCache(1, 2, 3, 4, max_len=6, device="cpu")
    k, v = torch.randn(2, 3, 1, 4), torch.randn(2, 3, 1, 4)
    keys, values = cache.write(0, k, v, torch.tensor([2]))
    assert keys.shape == (2, 3, 6, 4) and torch.equal(keys[:, :, 2:3], k) and torch.equal(values[:, :, 2:3], v)
    assert cache.pos == 0  # writing does not advance: the caller does
    assert cache.mask(torch.tensor([2])).tolist() == [[True, True, True, False, False, False]]
    cache.advance(3)
    cache.reset()
    assert cache.pos == 0 and len(cache.tensors()) == 2


# --- the cached weight copies follow the weights ----------------------------------------------------


def fresh_tokens(model: GPTModel) -> torch.Tensor:
    return generate(model, prompt(2, 4, seed=7), 10, use_cache=False)


def test_decoder_is_reused_while_the_weights_are_unchanged():
    model = small_model()
    first = decoder_for(model)
    generate(model, prompt(1, 3), 4)
    assert decoder_for(model) is first and first.is_current(model)
    assert isinstance(first.weights.head[0], torch.Tensor) and first.weights.head[0].is_contiguous()
    assert first.weights.head[0].shape == (32, VOCAB)  # (in, out): a copy on CPU


def change_by_fused_adamw(model: GPTModel) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=0.05, fused=True)
    model(prompt(2, 8), targets=prompt(2, 8, seed=1)).backward()
    opt.step()  # fused AdamW does not bump the parameters' version counters


def change_in_place(model: GPTModel) -> None:
    with torch.no_grad():
        model.blocks[0].ff.fc.weight.mul_(-1.0)


def change_by_load_state_dict(model: GPTModel) -> None:
    model.load_state_dict(small_model(seed=5).state_dict())


def change_by_lora(model: GPTModel) -> None:
    inject_lora(model, rank=2, alpha=4.0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".B"):
                p.normal_(0.0, 1.0)


@pytest.mark.parametrize("change", [change_by_fused_adamw, change_in_place, change_by_load_state_dict,
                                    change_by_lora])
def test_a_weight_change_rebuilds_the_decoder(change):
    model = small_model()
    before = decoder_for(model)
    generate(model, prompt(2, 4, seed=7), 10)
    change(model)
    model.eval()
    assert not before.is_current(model)
    after = generate(model, prompt(2, 4, seed=7), 10)
    assert torch.equal(after, fresh_tokens(model))
    assert decoder_for(model) is not before


def test_lora_layers_are_called_as_modules_and_merging_rebuilds():
    model = small_model()
    change_by_lora(model)
    lora_tokens = generate(model, prompt(2, 4, seed=7), 10)
    assert torch.equal(lora_tokens, fresh_tokens(model))
    assert not isinstance(decoder_for(model).weights.layers[0].qkv[0], torch.Tensor)
    merge_lora(model)
    assert torch.equal(generate(model, prompt(2, 4, seed=7), 10), fresh_tokens(model))
    assert isinstance(decoder_for(model).weights.layers[0].qkv[0], torch.Tensor)


def test_moving_the_model_rebuilds_the_decoder():
    model = small_model()
    before = decoder_for(model)
    model.double()
    assert not before.is_current(model)
    assert decoder_for(model).weights.head[0].dtype == torch.float64
    assert torch.equal(generate(model, prompt(2, 4, seed=7), 10), fresh_tokens(model))


def test_forget_decoder_and_no_reference_to_the_model():
    model = small_model()
    decoder = decoder_for(model)
    forget_decoder(model)
    assert decoder_for(model) is not decoder
    forget_decoder(small_model())  # a model without a decoder: nothing to do
    ref = weakref.ref(model)
    del model, decoder
    gc.collect()
    assert ref() is None  # the cached decoder does not keep its model alive


def test_errors():
    model = small_model()
    with pytest.raises(TypeError, match="GPTModel"):
        Decoder(torch.nn.Linear(2, 2))
    decoder, cache = Decoder(model), model.new_kv_cache(1, max_len=2)
    with torch.inference_mode():
        decoder.step(torch.tensor([1]), cache)
        decoder.step(torch.tensor([2]), cache)
        with pytest.raises(ValueError, match="full"):
            decoder.step(torch.tensor([3]), cache)
    with torch.inference_mode(), pytest.raises(ValueError, match="not compiled"):
        decoder.step(torch.tensor([1]), model.new_kv_cache(1), compiled=True)
    with torch.inference_mode(), pytest.raises(ValueError, match="batch 1"):
        decoder.step(torch.tensor([1, 2]), model.new_kv_cache(1))
    with torch.inference_mode(), pytest.raises(TypeError, match="1-D torch.long"):
        decoder.step(torch.tensor([[1]]), model.new_kv_cache(1))
    with pytest.raises(ValueError, match="use_cache"):
        generate(model, prompt(1, 2), 3, use_cache=False, compile=True)
    with pytest.raises(TypeError, match="compile"):
        generate(model, prompt(1, 2), 3, compile="yes")


def test_generate_cli_rejects_compile_without_the_cache(capsys):
    from gpt2_core.generate import main

    with pytest.raises(SystemExit) as exc:
        main(["--checkpoint", "somewhere", "--compile", "--no-cache"])
    assert exc.value.code == 2 and "--no-cache" in capsys.readouterr().err
