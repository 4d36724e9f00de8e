"""GPTModel and its pieces: shapes, causality, determinism, KV cache, tying, input errors."""

from __future__ import annotations

import math

import pytest
import torch

from gpt2_core.model.config import GPTConfig
from gpt2_core.model.gpt import GELU, FeedForward, GPTModel, LayerNorm, TransformerBlock

CFG = GPTConfig(vocab_size=61, context_length=16, emb_dim=24, n_heads=3, n_layers=2, drop_rate=0.0)


@pytest.fixture(scope="module")
def model() -> GPTModel:
    torch.manual_seed(0)
    return GPTModel(CFG).eval()


def test_layernorm_matches_torch():
    ln, ref = LayerNorm(7), torch.nn.LayerNorm(7, eps=1e-5)
    with torch.no_grad():
        ln.weight.uniform_(), ln.bias.uniform_()
        ref.weight.copy_(ln.weight), ref.bias.copy_(ln.bias)
    x = torch.randn(3, 5, 7) * 4 + 2
    torch.testing.assert_close(ln(x), ref(x))
    mean, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True, unbiased=False)
    torch.testing.assert_close(ln(x), (x - mean) / torch.sqrt(var + 1e-5) * ln.weight + ln.bias)


def test_gelu_is_the_tanh_approximation():
    x = torch.linspace(-5, 5, 101)
    formula = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    torch.testing.assert_close(GELU()(x), formula)


def test_feedforward_and_block_keep_shape():
    x = torch.randn(2, 5, CFG.emb_dim)
    ff = FeedForward(CFG)
    assert ff.fc.out_features == 4 * CFG.emb_dim and ff(x).shape == x.shape
    assert TransformerBlock(CFG)(x).shape == x.shape


def test_logits_shape_and_device(model):
    idx = torch.randint(0, CFG.vocab_size, (3, 7))
    assert model(idx).shape == (3, 7, CFG.vocab_size)
    assert model.device == torch.device("cpu")


def test_weights_are_tied(model):
    assert model.out_head.weight is model.tok_emb.weight
    untied = sum(p.numel() for p in model.parameters()) + model.out_head.weight.numel()
    assert model.num_parameters() == untied - CFG.vocab_size * CFG.emb_dim


def test_trainable_only_count(model):
    fresh = GPTModel(CFG)
    fresh.tok_emb.weight.requires_grad_(False)
    assert fresh.num_parameters(trainable_only=True) == model.num_parameters() - CFG.vocab_size * CFG.emb_dim


def test_causal(model):
    torch.manual_seed(1)
    idx = torch.randint(0, CFG.vocab_size, (2, 12))
    for cut in (1, 6, 11):
        other = idx.clone()
        other[:, cut:] = (other[:, cut:] + 1) % CFG.vocab_size
        with torch.no_grad():
            a, b = model(idx), model(other)
        torch.testing.assert_close(a[:, :cut], b[:, :cut])
        assert not torch.allclose(a[:, cut:], b[:, cut:])


def test_eval_is_deterministic_and_train_uses_dropout():
    torch.manual_seed(0)
    m = GPTModel(CFG.replace(drop_rate=0.3))
    idx = torch.randint(0, CFG.vocab_size, (2, 10))
    with torch.no_grad():
        m.eval()
        assert torch.equal(m(idx), m(idx))
        m.train()
        assert not torch.allclose(m(idx), m(idx))


@pytest.mark.parametrize("splits", [[1] * 10, [4, 6], [1, 9], [7, 1, 1, 1], [3, 3, 4]])
def test_kv_cache_equals_full_forward(model, splits):
    idx = torch.randint(0, CFG.vocab_size, (2, sum(splits)))
    cache = model.new_kv_cache(batch=2)
    pieces, start = [], 0
    with torch.no_grad():
        for n in splits:
            pieces.append(model.hidden_states(idx[:, start:start + n], cache))
            start += n
        torch.testing.assert_close(torch.cat(pieces, 1), model.hidden_states(idx), atol=1e-5, rtol=1e-5)
    assert cache.pos == sum(splits)


def test_kv_cache_respects_context_length(model):
    cache = model.new_kv_cache(batch=1)
    with torch.no_grad():
        model.next_token_logits(torch.zeros(1, CFG.context_length - 1, dtype=torch.long), cache)
        model.next_token_logits(torch.zeros(1, 1, dtype=torch.long), cache)
        with pytest.raises(ValueError, match="longer than context_length"):
            model.next_token_logits(torch.zeros(1, 1, dtype=torch.long), cache)


def test_small_kv_cache_overflows_clearly(model):
    cache = model.new_kv_cache(batch=1, max_len=4)
    with torch.no_grad(), pytest.raises(ValueError, match="KV cache is full"):
        model.next_token_logits(torch.zeros(1, 5, dtype=torch.long), cache)


def test_init_statistics():
    torch.manual_seed(0)
    m = GPTModel(GPTConfig(vocab_size=500, context_length=32, emb_dim=64, n_heads=4, n_layers=8))
    assert abs(m.tok_emb.weight.std().item() - 0.02) < 0.002
    residual = m.blocks[0].att.out_proj.weight.std().item()
    assert abs(residual - 0.02 / math.sqrt(16)) < 0.001  # scaled by 1/sqrt(2 * n_layers)
    assert torch.count_nonzero(m.blocks[0].ff.fc.bias) == 0


def test_rejects_non_config():
    with pytest.raises(TypeError, match="expects a GPTConfig"):
        GPTModel({"emb_dim": 8})  # type: ignore[arg-type]


@pytest.mark.parametrize("idx, error, message", [
    ([[1, 2, 3]], TypeError, "must be a torch.Tensor"),
    (torch.tensor([[1.0, 2.0]]), TypeError, "integer tensor"),
    (torch.tensor([[True, False]]), TypeError, "integer tensor"),
    (torch.tensor([1, 2, 3]), ValueError, "shape \\(batch, tokens\\)"),
    (torch.zeros(1, 0, dtype=torch.long), ValueError, "empty"),
    (torch.zeros(1, 17, dtype=torch.long), ValueError, "17 tokens is longer than context_length=16"),
    (torch.tensor([[0, 61]]), ValueError, "token id 61 is outside the vocabulary \\[0, 61\\)"),
    (torch.tensor([[-1, 3]]), ValueError, "token id -1 is outside"),
])
def test_bad_input_errors(model, idx, error, message):
    with pytest.raises(error, match=message):
        model(idx)


def test_int32_ids_are_accepted(model):
    idx = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        torch.testing.assert_close(model(idx.int()), model(idx))


# --------------------------------------------------------------------------- chapter 4 exercises


def _count(cfg: GPTConfig) -> int:
    d = cfg.emb_dim
    block = 3 * d * d + (3 * d if cfg.qkv_bias else 0) + d * d + d + 8 * d * d + 5 * d + 4 * d
    return cfg.vocab_size * d + cfg.context_length * d + cfg.n_layers * block + 2 * d


def _stub(*args):
    raise NotImplementedError


@pytest.mark.parametrize("name, right, wrong", [
    ("ch04.count_parameters", _count, lambda cfg: _count(cfg.replace(qkv_bias=True))),
])
def test_exercise_checkers(capsys, name, right, wrong):
    from gpt2_core.exercises import check_exercise

    assert check_exercise(name, right) is True
    assert check_exercise(name, wrong) is False
    assert check_exercise(name, _stub) is False
    assert "not attempted" in capsys.readouterr().out


def _small_model(seed: int = 0) -> GPTModel:
    torch.manual_seed(seed)
    return GPTModel(GPTConfig(vocab_size=97, context_length=16, emb_dim=32, n_heads=4, n_layers=2, drop_rate=0.0))


def test_next_token_logits_are_the_last_positions_logits():
    model = _small_model().eval()
    idx = torch.randint(0, 97, (3, 9))
    last = model.next_token_logits(idx)
    assert last.shape == (3, 97) and torch.allclose(last, model(idx)[:, -1], atol=1e-6)


@pytest.mark.parametrize("with_grad", [True, False])
def test_loss_with_ignored_positions_equals_the_plain_loss(with_grad):
    model = _small_model()
    idx = torch.randint(0, 97, (2, 12))
    targets = torch.randint(0, 97, (2, 12))
    targets[0, :7] = -100  # a prompt
    targets[1, 10:] = -100  # padding
    want = torch.nn.functional.cross_entropy(model(idx).flatten(0, 1), targets.flatten(), ignore_index=-100)
    with torch.set_grad_enabled(with_grad):
        got = model(idx, targets=targets)
    assert torch.allclose(got, want, atol=1e-5)
    if with_grad:
        got.backward()
        fused_grad = model.tok_emb.weight.grad.clone()
        model.zero_grad()
        want.backward()
        assert torch.allclose(fused_grad, model.tok_emb.weight.grad, atol=1e-5)


def test_forward_with_targets_compiles_without_graph_breaks():
    model = _small_model().train()
    idx = torch.randint(0, 97, (2, 16))
    explanation = torch._dynamo.explain(model)(idx, targets=torch.roll(idx, -1, 1))
    assert explanation.graph_break_count == 0, explanation.break_reasons


def test_attention_maps_are_causal_distributions_that_reproduce_the_attention_output():
    model = _small_model().train()
    idx = torch.randint(0, 97, (1, 7))
    maps = model.attention_maps(idx)
    assert model.training and len(maps) == 2 and maps[0].shape == (4, 7, 7)
    for m in maps:
        assert torch.allclose(m.sum(-1), torch.ones(4, 7), atol=1e-6)
        assert torch.all(m.triu(diagonal=1) == 0)
    # layer 0: weights @ values, merged and projected, equals the module's own output
    model.eval()
    block = model.blocks[0]
    h = block.norm1(model.tok_emb(idx) + model.pos_emb(torch.arange(7)))
    v = block.att.qkv(h).view(1, 7, 3, 4, 8)[:, :, 2].transpose(1, 2)  # (1, heads, t, head_dim)
    mixed = (maps[0][None] @ v).transpose(1, 2).reshape(1, 7, 32)
    assert torch.allclose(block.att.out_proj(mixed), block.att(h), atol=1e-5)
    with pytest.raises(ValueError, match="one sequence"):
        model.attention_maps(torch.zeros(2, 3, dtype=torch.long))
