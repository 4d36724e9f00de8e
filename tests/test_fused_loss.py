"""fused_linear_cross_entropy: same loss and gradients as F.cross_entropy(h @ W.T, t), fallbacks, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2_core.model.fused_loss import IGNORE_INDEX, fused_linear_cross_entropy


def make(n: int, d: int, vocab: int, ignored: float = 0.0, seed: int = 0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=gen, dtype=dtype).requires_grad_()
    weight = (torch.randn(vocab, d, generator=gen, dtype=dtype) * 0.5).requires_grad_()
    targets = torch.randint(0, vocab, (n,), generator=gen)
    targets[torch.rand(n, generator=gen) < ignored] = IGNORE_INDEX
    return hidden, weight, targets


def plain_and_fused(hidden, weight, targets, **kw):
    """(loss, grad hidden, grad weight) of the plain path and of the fused one."""
    ignore = kw.get("ignore_index", IGNORE_INDEX)
    results = []
    for fn in (lambda: F.cross_entropy(hidden @ weight.t(), targets, ignore_index=ignore),
               lambda: fused_linear_cross_entropy(hidden, weight, targets, **kw)):
        hidden.grad = weight.grad = None
        loss = fn()
        loss.backward()
        results.append((loss.detach(), hidden.grad.clone(), weight.grad.clone()))
    return results


def assert_same(plain, fused, tol=1e-10):
    for a, b in zip(plain, fused, strict=True):
        torch.testing.assert_close(b, a, rtol=tol, atol=tol, equal_nan=True)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), d=st.integers(1, 9), vocab=st.integers(2, 30), chunk=st.integers(1, 50),
       ignored=st.sampled_from([0.0, 0.3, 0.9]), seed=st.integers(0, 1000))
def test_matches_plain_cross_entropy(n, d, vocab, chunk, ignored, seed):
    hidden, weight, targets = make(n, d, vocab, ignored, seed)
    if bool((targets == IGNORE_INDEX).all()):
        targets[0] = 0  # the all-ignored case has its own test
    plain, fused = plain_and_fused(hidden, weight, targets, chunk_size=chunk)
    assert_same(plain, fused)


@pytest.mark.parametrize("n", [1, 15, 16, 17, 33, 48])
def test_chunk_boundaries(n):
    hidden, weight, targets = make(n, 5, 11, ignored=0.25, seed=n)
    targets[-1] = 3  # the last row of the last (possibly partial) block counts
    for chunk in (1, 16, 64):
        plain, fused = plain_and_fused(hidden, weight, targets, chunk_size=chunk)
        assert_same(plain, fused)


def test_float32_gpt2_sized_vocab():
    hidden, weight, targets = make(70, 32, 50257, ignored=0.1, dtype=torch.float32)
    plain, fused = plain_and_fused(hidden, weight, targets, chunk_size=32)
    assert_same(plain, fused, tol=1e-5)


def test_ignored_rows_get_zero_gradient_and_do_not_count():
    hidden, weight, targets = make(10, 4, 7)
    targets[[2, 5]] = IGNORE_INDEX
    loss = fused_linear_cross_entropy(hidden, weight, targets, chunk_size=3)
    loss.backward()
    assert torch.all(hidden.grad[[2, 5]] == 0)
    assert hidden.grad[0].abs().sum() > 0
    keep = targets != IGNORE_INDEX
    torch.testing.assert_close(loss, F.cross_entropy(hidden[keep] @ weight.t(), targets[keep]))


def test_all_ignored_gives_nan_loss_and_zero_gradients_like_plain():
    hidden, weight, targets = make(6, 4, 7)
    targets[:] = IGNORE_INDEX
    plain, fused = plain_and_fused(hidden, weight, targets, chunk_size=4)
    assert torch.isnan(fused[0]) and torch.isnan(plain[0])
    assert torch.all(fused[1] == 0) and torch.all(fused[2] == 0)
    assert_same(plain, fused)


def test_custom_ignore_index():
    hidden, weight, targets = make(9, 4, 7)
    targets[[1, 4]] = 6  # a real class id used as the marker
    plain, fused = plain_and_fused(hidden, weight, targets, ignore_index=6, chunk_size=2)
    assert_same(plain, fused)


def test_batched_hidden_keeps_its_shape_and_scaled_upstream_gradient():
    gen = torch.Generator().manual_seed(1)
    hidden = torch.randn(3, 5, 4, generator=gen, dtype=torch.float64).requires_grad_()
    weight = torch.randn(9, 4, generator=gen, dtype=torch.float64).requires_grad_()
    targets = torch.randint(0, 9, (3, 5), generator=gen)
    (2.5 * F.cross_entropy((hidden @ weight.t()).flatten(0, 1), targets.flatten())).backward()
    ref_h, ref_w = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    (2.5 * fused_linear_cross_entropy(hidden, weight, targets, chunk_size=4)).backward()
    assert hidden.grad.shape == (3, 5, 4)
    torch.testing.assert_close(hidden.grad, ref_h)
    torch.testing.assert_close(weight.grad, ref_w)


def test_only_the_gradients_asked_for():
    hidden, weight, targets = make(8, 4, 7)
    weight.requires_grad_(False)  # a frozen head, as when fine-tuning with LoRA
    fused_linear_cross_entropy(hidden, weight, targets, chunk_size=3).backward()
    assert weight.grad is None and hidden.grad is not None
    hidden2 = hidden.detach()
    weight.requires_grad_(True)
    fused_linear_cross_entropy(hidden2, weight, targets, chunk_size=3).backward()
    assert weight.grad is not None and hidden2.grad is None


def test_tied_weight_gradients_add_up():
    """An embedding and the head share one matrix (GPT-2's tying): both gradients accumulate."""
    hidden, weight, targets = make(12, 4, 7)
    ids = torch.randint(0, 7, (12,))
    grads = []
    for fused in (False, True):
        weight.grad = hidden.grad = None
        h = hidden + F.embedding(ids, weight)
        loss = (fused_linear_cross_entropy(h, weight, targets, chunk_size=5) if fused
                else F.cross_entropy(h @ weight.t(), targets))
        loss.backward()
        grads.append(weight.grad.clone())
    torch.testing.assert_close(grads[1], grads[0])


def test_backward_twice_is_a_clear_error():
    hidden, weight, targets = make(5, 4, 7)
    loss = fused_linear_cross_entropy(hidden, weight, targets)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="only once"):
        loss.backward()


def test_no_grad_falls_back_to_the_plain_path():
    hidden, weight, targets = make(8, 4, 7)
    with torch.no_grad():
        loss = fused_linear_cross_entropy(hidden, weight, targets)
        ref = F.cross_entropy(hidden @ weight.t(), targets)
    assert loss.grad_fn is None
    torch.testing.assert_close(loss, ref)
    plain = fused_linear_cross_entropy(hidden.detach(), weight.detach(), targets)
    assert plain.grad_fn is None


def _loss_and_grads(fn, hidden, weight):
    hidden.grad = weight.grad = None
    loss = fn()
    loss.backward()
    return loss.detach().double(), hidden.grad.double(), weight.grad.double(), type(loss.grad_fn).__name__


@pytest.mark.parametrize("ignored", [0.0, 0.4])
@pytest.mark.parametrize("chunk", [5, 64])
def test_bf16_autocast_uses_the_fused_path_and_matches_the_plain_one(ignored, chunk):
    """Under bf16 autocast: as close to the plain autocast path as bf16 rounding allows, and no farther
    from the float64 truth than it."""
    hidden, weight, targets = make(48, 16, 300, ignored=ignored, seed=3, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = _loss_and_grads(lambda: F.cross_entropy(hidden @ weight.t(), targets), hidden, weight)
        fused = _loss_and_grads(lambda: fused_linear_cross_entropy(hidden, weight, targets, chunk_size=chunk),
                                hidden, weight)
    assert "Fused" in fused[3] and "Fused" not in plain[3]
    h64, w64 = hidden.detach().double().requires_grad_(), weight.detach().double().requires_grad_()
    exact = _loss_and_grads(lambda: F.cross_entropy(h64 @ w64.t(), targets), h64, w64)
    assert hidden.grad.dtype == weight.grad.dtype == torch.float32
    for got, want, truth in zip(fused[:3], plain[:3], exact[:3], strict=True):
        scale = truth.abs().max().item()
        torch.testing.assert_close(got, want, rtol=0, atol=2e-2 * scale)  # bf16: about 3 significant digits
        assert (got - truth).abs().max() <= 1.5 * (want - truth).abs().max() + 1e-3 * scale


def test_autocast_with_a_low_precision_hidden_state_and_no_grad():
    hidden, weight, targets = make(10, 8, 40, seed=1, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = fused_linear_cross_entropy(hidden.detach().bfloat16().requires_grad_(), weight, targets)
        with torch.no_grad():
            ref = fused_linear_cross_entropy(hidden, weight, targets)
    assert "Fused" in type(mixed.grad_fn).__name__ and ref.grad_fn is None
    torch.testing.assert_close(mixed.float(), ref.float(), rtol=2e-2, atol=2e-2)
    mixed.backward()
    assert weight.grad.dtype == torch.float32 and torch.isfinite(weight.grad).all()


def test_gpt_model_trains_under_bf16_autocast_with_the_fused_loss():
    from gpt2_core.model.config import GPTConfig
    from gpt2_core.model.gpt import GPTModel

    torch.manual_seed(0)
    model = GPTModel(GPTConfig(vocab_size=61, context_length=16, emb_dim=24, n_heads=3, n_layers=2, drop_rate=0.0))
    idx = torch.randint(0, 61, (4, 12))
    targets = torch.roll(idx, -1, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(idx, targets=targets)
        assert "Fused" in type(loss.grad_fn).__name__
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_fused_path_is_used_when_training():
    hidden, weight, targets = make(8, 4, 7)
    assert "Fused" in type(fused_linear_cross_entropy(hidden, weight, targets).grad_fn).__name__


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((["x"], "w", "t"), TypeError, "hidden must be a torch.Tensor"),
        ((torch.zeros(2, 3), torch.zeros(5, 3), torch.zeros(2)), TypeError, "integer class ids"),
        ((torch.zeros(2, 3), torch.zeros(5, 3, dtype=torch.float64), torch.zeros(2, dtype=torch.long)),
         TypeError, "same dtype"),
        ((torch.zeros(2, 3, dtype=torch.long), torch.zeros(5, 3, dtype=torch.long),
          torch.zeros(2, dtype=torch.long)), TypeError, "floating point"),
        ((torch.zeros(2, 3), torch.zeros(5, 3, 1), torch.zeros(2, dtype=torch.long)), ValueError, "weight must"),
        ((torch.zeros(2, 4), torch.zeros(5, 3), torch.zeros(2, dtype=torch.long)), ValueError, "hidden must"),
        ((torch.zeros(2, 3), torch.zeros(5, 3), torch.zeros(3, dtype=torch.long)), ValueError, "targets must"),
        ((torch.zeros(2, 3), torch.zeros(5, 3), torch.tensor([0, 5])), ValueError, "outside the vocabulary"),
        ((torch.zeros(2, 3), torch.zeros(5, 3), torch.tensor([-1, 0])), ValueError, "outside the vocabulary"),
    ],
)
def test_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        fused_linear_cross_entropy(*args)


@pytest.mark.parametrize(("kw", "error"), [({"chunk_size": 0}, ValueError), ({"chunk_size": True}, TypeError),
                                           ({"chunk_size": 2.0}, TypeError), ({"ignore_index": 1.5}, TypeError)])
def test_bad_options(kw, error):
    hidden, weight, targets = make(4, 3, 5)
    with pytest.raises(error):
        fused_linear_cross_entropy(hidden, weight, targets, **kw)


@pytest.mark.parametrize("biased_head", [False, True])
def test_gpt_model_targets_match_logits_loss(biased_head):
    """GPTModel(idx, targets=...) gives the plain loss and gradients, also with a biased (classification) head."""
    from gpt2_core.model.config import GPTConfig
    from gpt2_core.model.gpt import GPTModel

    torch.manual_seed(0)
    model = GPTModel(GPTConfig(vocab_size=61, context_length=16, emb_dim=24, n_heads=3, n_layers=2,
                               drop_rate=0.0)).double()
    n_out = 61
    if biased_head:  # another head: the model refuses the next-token loss rather than compute a wrong one
        model.out_head = torch.nn.Linear(24, 3).double()
        with pytest.raises(ValueError, match="needs the model's next-token head"):
            model(torch.randint(0, 61, (2, 9)), targets=torch.randint(0, 3, (2, 9)))
        return
    idx = torch.randint(0, 61, (2, 9))
    targets = torch.randint(0, n_out, (2, 9))
    targets[0, :3] = IGNORE_INDEX
    F.cross_entropy(model(idx).flatten(0, 1), targets.flatten()).backward()
    ref = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    model(idx, targets=targets).backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref[name], msg=name)


def test_gpt_model_loss_under_bf16_autocast_has_no_graph_breaks():
    from gpt2_core.model.config import GPTConfig
    from gpt2_core.model.gpt import GPTModel

    torch.manual_seed(0)
    model = GPTModel(GPTConfig(vocab_size=61, context_length=16, emb_dim=24, n_heads=3, n_layers=2, drop_rate=0.0))
    idx = torch.randint(0, 61, (2, 16))

    def loss(idx, targets):  # noqa: ANN001, ANN202
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model(idx, targets=targets)

    explanation = torch._dynamo.explain(loss)(idx, torch.roll(idx, -1, 1))
    assert explanation.graph_break_count == 0, explanation.break_reasons
