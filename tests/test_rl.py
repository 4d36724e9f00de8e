"""Chapter 8's rewards, pass@k, answer log-probabilities, best-of-k, DPO and GRPO, checked by hand or by limits."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import CharTokenizer, tiny_char_model

from gpt2_core.finetuning import grpo
from gpt2_core.finetuning.grpo import GRPOConfig, group_advantages, grpo_loss, kl_k3, train_grpo
from gpt2_core.finetuning.instruction_eval import Answer, generate_answers, sample_answers
from gpt2_core.finetuning.loop import FinetuneConfig, finetune
from gpt2_core.finetuning.lora import LoRALinear, inject_lora
from gpt2_core.finetuning.rewards import (
    adapters_off,
    answer_batch,
    answer_logprobs,
    contains_reward,
    is_right,
    pass_at_k,
    pass_at_k_by_family,
    reference_logprobs,
    reward,
    unordered_reward,
)
from gpt2_core.finetuning.rl import (
    Pair,
    best_of_k_items,
    dpo_loader,
    dpo_loss,
    dpo_loss_fn,
    dpo_pairs,
    frontier,
    items_loader,
    pair_statistics,
)

RECORDS = [{"instruction": "Repeat the word.", "input": w, "output": w, "family": "repeat"} for w in
           ("cat", "dog", "sun", "map")]


def _answer(text: str, stopped: bool = True, prompt=(1, 2), ids=None) -> Answer:
    return Answer(text, stopped, tuple(prompt), tuple(ids if ids is not None else [3, 4]))


# --------------------------------------------------------------------------- rewards and pass@k
def test_reward_pays_right_answers_then_well_formed_ones_then_nothing():
    assert reward(_answer("cat."), "cat") == 1.0
    assert reward(_answer("dog"), "cat") == 0.1
    assert reward(_answer("dog"), "cat", format_weight=0.0) == 0.0
    assert reward(_answer("cat", stopped=False), "cat") == 0.0  # never ended: not an answer yet
    assert reward(_answer(""), "cat") == 0.0
    assert is_right(_answer("cat"), "cat") and not is_right(_answer("cat", stopped=False), "cat")


def test_the_flawed_reward_pays_a_list_of_guesses_that_the_exact_reward_does_not():
    guesses = _answer("dog cat sun")
    assert contains_reward(guesses, "cat") == 1.0 and reward(guesses, "cat") == 0.1
    assert contains_reward(_answer("concatenate"), "cat") == 0.1  # whole words only


def test_the_order_blind_reward_pays_a_copy_of_the_input_that_exact_match_does_not():
    copy = _answer("one two three")
    assert unordered_reward(copy, "three two one") == 1.0 and reward(copy, "three two one") == 0.1
    assert unordered_reward(_answer("one two"), "three two one") == 0.1
    assert unordered_reward(_answer("three two one", stopped=False), "three two one") == 0.0


def test_pass_at_k_is_the_exact_combinatorial_chance():
    for n, c, k in [(8, 3, 1), (8, 3, 4), (10, 0, 5), (10, 10, 1), (20, 2, 19)]:
        exact = 1 - math.comb(n - c, k) / math.comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)
    assert pass_at_k(8, 3, 1) == pytest.approx(3 / 8)
    with pytest.raises(ValueError, match="k"):
        pass_at_k(8, 3, 9)
    with pytest.raises(ValueError, match="c"):
        pass_at_k(8, 9, 1)


def test_pass_at_k_by_family_averages_questions_of_a_family():
    records = [{"output": "a", "family": "f"}, {"output": "b", "family": "f"}, {"output": "c", "family": "g"}]
    answers = [[_answer("a"), _answer("x")], [_answer("x"), _answer("y", stopped=False)], [_answer("c")] * 2]
    table = pass_at_k_by_family(records, answers, ks=(1, 2))
    assert table["f"] == {"n": 2, "format": pytest.approx(0.75), "pass@1": pytest.approx(0.25),
                          "pass@2": pytest.approx(0.5)}
    assert table["g"]["pass@1"] == table["g"]["pass@2"] == 1.0


# --------------------------------------------------------------------------- answers and their log-probs
def test_answer_batch_marks_exactly_the_answer_tokens():
    a, b = _answer("", prompt=(5, 6, 7), ids=(8, 9)), _answer("", prompt=(5,), ids=(8,))
    x, y, m = answer_batch([a, b], pad_id=0)
    assert x.tolist() == [[5, 6, 7, 8], [5, 0, 0, 0]]
    assert y.tolist() == [[6, 7, 8, 9], [8, 0, 0, 0]]
    assert m.tolist() == [[False, False, True, True], [True, False, False, False]]
    with pytest.raises(ValueError, match="token ids"):
        answer_batch([Answer("x", True)], pad_id=0)


def test_answer_logprobs_are_the_log_softmax_of_the_models_own_forward():
    model, tok = tiny_char_model(), CharTokenizer()
    [[ans]] = sample_answers(model, tok, RECORDS[:1], k=1, temperature=0.0, max_new_tokens=3)
    x, y, m = answer_batch([ans], tok.eot_token)
    got = answer_logprobs(model, x, y, m)
    with torch.no_grad():
        full = F.log_softmax(model(x), dim=-1).gather(-1, y[..., None]).squeeze(-1)
    assert torch.allclose(got, torch.where(m, full, 0.0), atol=1e-5)
    assert got[~m].abs().sum() == 0


def test_sample_answers_gives_k_answers_with_their_ids_and_greedy_is_generate_answers():
    model, tok = tiny_char_model(), CharTokenizer()
    greedy = generate_answers(model, tok, RECORDS, max_new_tokens=4)
    groups = sample_answers(model, tok, RECORDS, k=3, temperature=1.0, max_new_tokens=4,
                            generator=torch.Generator().manual_seed(0), batch_size=5)
    assert [len(g) for g in groups] == [3] * 4
    for group, g in zip(groups, greedy, strict=True):
        assert all(a.prompt_ids == g.prompt_ids and len(a.answer_ids) <= 4 for a in group)
        assert g.text in tok.decode(list(g.answer_ids))
    again = sample_answers(model, tok, RECORDS, k=3, temperature=1.0, max_new_tokens=4,
                           generator=torch.Generator().manual_seed(0), batch_size=5)
    assert [[a.answer_ids for a in g] for g in again] == [[a.answer_ids for a in g] for g in groups]


def test_a_lora_policy_with_adapters_off_is_its_starting_model():
    tok = CharTokenizer()
    base = tiny_char_model()
    policy = tiny_char_model()
    inject_lora(policy, rank=2)
    for layer in policy.modules():
        if isinstance(layer, LoRALinear):
            torch.nn.init.normal_(layer.B)  # a trained adapter: the policy differs from the start
    [[ans]] = sample_answers(base, tok, RECORDS[:1], max_new_tokens=3)
    batch = answer_batch([ans], tok.eot_token)
    start = answer_logprobs(base, *batch)
    assert not torch.allclose(answer_logprobs(policy, *batch), start)
    assert torch.allclose(reference_logprobs(None, policy, *batch), start, atol=1e-5)
    assert torch.allclose(reference_logprobs(base, policy, *batch), start, atol=1e-5)
    assert not torch.allclose(answer_logprobs(policy, *batch), start)  # adapters back on afterwards
    with pytest.raises(ValueError, match="no LoRA"), adapters_off(base):
        pass


# --------------------------------------------------------------------------- best-of-k and DPO
def test_best_of_k_keeps_distinct_right_answers_without_their_end_of_text():
    right1, right2 = _answer("cat", ids=(7, 95)), _answer("cat", ids=(8, 95))
    items = best_of_k_items(RECORDS[:2], [[right1, right1, right2, _answer("x")], [_answer("x")]], per_question=2)
    assert items == [([1, 2, 7], 2), ([1, 2, 8], 2)]
    x, y = next(iter(items_loader(items, eot_id=95, batch_size=2)))
    assert x.shape == (2, 3) and (y == 95).sum() == 2  # the collate put the end-of-text back as a target


def test_dpo_pairs_take_a_right_and_a_wrong_answer_of_the_same_question():
    group = [_answer("cat", ids=(1, 95)), _answer("dog", ids=(2, 95)), _answer("sun", ids=(3, 95))]
    pairs = dpo_pairs(RECORDS[:2], [group, [_answer("x", ids=(4, 95))]], per_question=5)
    assert len(pairs) == 1 and pairs[0].chosen.text == "cat" and pairs[0].rejected.text in {"dog", "sun"}


def test_dpo_loss_matches_a_hand_computation_and_its_limits():
    pc, pr, rc, rr = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.0]), torch.tensor([-2.0, -2.0]), \
        torch.tensor([-2.0, -2.0])
    beta = 0.5
    by_hand = [-math.log(1 / (1 + math.exp(-beta * m))) for m in ((-1 + 2) - (-3 + 2), (-2 + 2) - (-1 + 2))]
    assert dpo_loss(pc, pr, rc, rr, beta).item() == pytest.approx(sum(by_hand) / 2, rel=1e-6)
    # policy = reference, or beta -> 0: every pair costs log 2
    assert dpo_loss(rc, rr, rc, rr, beta).item() == pytest.approx(math.log(2))
    assert dpo_loss(pc, pr, rc, rr, 1e-9).item() == pytest.approx(math.log(2))
    # identical chosen and rejected answers: the margin is 0 and so is the gradient
    p = torch.tensor([-1.5], requires_grad=True)
    loss = dpo_loss(p, p, torch.tensor([-2.0]), torch.tensor([-2.0]), beta)
    loss.backward()
    assert loss.item() == pytest.approx(math.log(2)) and p.grad.abs().item() < 1e-7
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(pc, pr, rc, rr, 0.0)


def test_dpo_training_raises_the_chosen_answers_margin():
    tok, model = CharTokenizer(), tiny_char_model()
    policy = tiny_char_model()
    inject_lora(policy, rank=4, alpha=8.0)
    groups = sample_answers(model, tok, RECORDS, k=4, temperature=1.0, max_new_tokens=3,
                            generator=torch.Generator().manual_seed(1))
    chosen = [g[0] for g in groups]
    pairs = [Pair(Answer(c.text, True, c.prompt_ids, tuple(tok.encode(" " + r["output"])) + (tok.eot_token,)),
                  c) for r, c in zip(RECORDS, chosen, strict=True)]
    loader = dpo_loader(pairs, tok.eot_token, batch_size=4)
    batch = next(iter(loader))
    loss_fn = dpo_loss_fn(None, beta=0.5)
    before = loss_fn(policy, batch).item()
    assert before == pytest.approx(math.log(2), abs=1e-5)  # adapters start at zero: policy = reference
    finetune(policy, loader, loss_fn, FinetuneConfig(steps=20, lr=1e-2, weight_decay=0.0, progress=False))
    assert loss_fn(policy, batch).item() < before - 0.1


def test_the_nll_term_adds_the_chosen_answers_mean_token_nll():
    tok, policy = CharTokenizer(), tiny_char_model()
    reference = tiny_char_model(seed=1)
    groups = sample_answers(policy, tok, RECORDS, k=2, temperature=1.0, max_new_tokens=3,
                            generator=torch.Generator().manual_seed(1))
    batch = next(iter(dpo_loader([Pair(g[0], g[1]) for g in groups], tok.eot_token, batch_size=4)))
    inputs, targets, mask = batch
    with torch.no_grad():
        token_logp = answer_logprobs(policy, inputs, targets, mask)
        seq, ref = token_logp.sum(-1), answer_logprobs(reference, inputs, targets, mask).sum(-1)
        n = inputs.shape[0] // 2
        plain = dpo_loss(seq[:n], seq[n:], ref[:n], ref[n:], 0.1)
        nll = -(seq[:n] / mask[:n].sum(-1)).mean()
        assert dpo_loss_fn(reference, 0.1)(policy, batch).item() == pytest.approx(plain.item(), rel=1e-5)
        assert dpo_loss_fn(reference, 0.1, nll_weight=0.5)(policy, batch).item() == pytest.approx(
            (plain + 0.5 * nll).item(), rel=1e-5)
    with pytest.raises(ValueError, match="nll_weight"):
        dpo_loss_fn(reference, 0.1, nll_weight=-1.0)


def test_pair_statistics_start_at_zero_margin_and_follow_the_policy():
    tok, policy = CharTokenizer(), tiny_char_model()
    groups = sample_answers(policy, tok, RECORDS, k=2, temperature=1.0, max_new_tokens=3,
                            generator=torch.Generator().manual_seed(2))
    pairs = [Pair(g[0], g[1]) for g in groups]
    at_start = pair_statistics(policy, tiny_char_model(), pairs, tok.eot_token, batch_size=3)
    assert at_start["margin"] == pytest.approx(0.0, abs=1e-5)
    assert at_start["ranked_right"] == 0.0 and at_start["chosen_down"] == 0.0
    inputs, targets, mask = answer_batch([p.chosen for p in pairs], tok.eot_token)
    with torch.no_grad():
        chosen = answer_logprobs(policy, inputs, targets, mask).sum(-1).mean().item()
    assert at_start["chosen"] == pytest.approx(chosen, rel=1e-5)
    moved = pair_statistics(tiny_char_model(seed=3), policy, pairs, tok.eot_token)
    assert moved["margin"] != pytest.approx(0.0, abs=1e-3)
    with pytest.raises(ValueError, match="no pairs"):
        pair_statistics(policy, None, [], tok.eot_token)


def test_frontier_keeps_the_questions_answered_partly_right():
    right, wrong = _answer("cat"), _answer("dog")
    records = RECORDS[:3]
    assert frontier(records, [[right, wrong], [right, right], [wrong, wrong]]) == [records[0]]


# --------------------------------------------------------------------------- GRPO
def test_group_advantages_are_normalised_within_each_group():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.1, 0.1, 0.1, 0.1], [1.0, 0.1, 0.1, 0.1]])
    adv = group_advantages(rewards)
    assert torch.allclose(adv.mean(dim=1), torch.zeros(3), atol=1e-6)
    assert torch.allclose(adv[0].std(), torch.tensor(1.0), atol=1e-3) and adv[0, 0] > 0 > adv[0, 1]
    assert adv[1].abs().sum() == 0  # equal rewards: no signal
    assert adv[2, 0] == adv[2].max() and torch.allclose(adv[2].std(), torch.tensor(1.0), atol=1e-3)
    assert torch.allclose(group_advantages(rewards, scale=False)[0], torch.tensor([0.5, -0.5, -0.5, 0.5]))
    with pytest.raises(ValueError, match="group size"):
        group_advantages(torch.ones(4))


def test_k3_estimates_the_exact_kl_on_small_distributions():
    torch.manual_seed(0)
    p = torch.softmax(torch.randn(5), 0)
    q = torch.softmax(torch.randn(5), 0)
    exact = (p * (p / q).log()).sum()
    samples = torch.multinomial(p, 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
    estimate = kl_k3(p.log()[samples], q.log()[samples]).mean()
    assert estimate.item() == pytest.approx(exact.item(), rel=0.03)
    assert (kl_k3(p.log(), q.log()) >= 0).all()
    assert kl_k3(p.log(), p.log()).abs().max() == 0


@pytest.mark.parametrize("advantage, ratio, moves", [
    (1.0, 1.1, True), (1.0, 1.3, False),     # a good answer: clipped once pushed up past 1 + eps
    (-1.0, 0.9, True), (-1.0, 0.7, False),   # a bad one: clipped once pushed down past 1 - eps
    (1.0, 0.7, True), (-1.0, 1.3, True),     # moved the wrong way: never clipped, always pulled back
])
def test_the_clipped_objective_has_no_gradient_outside_the_clip_range(advantage, ratio, moves):
    logp = torch.tensor([[math.log(ratio) - 1.0]], requires_grad=True)
    old = torch.tensor([[-1.0]])
    loss, stats = grpo_loss(logp, old, logp.detach(), torch.tensor([advantage]), torch.ones(1, 1, dtype=torch.bool),
                            clip_eps=0.2, kl_coef=0.0)
    loss.backward()
    assert (logp.grad.abs().item() > 0) == moves
    assert stats["clipped"] == (0.0 if abs(ratio - 1) <= 0.2 else 1.0)


def test_grpo_loss_on_policy_is_minus_the_advantage_weighted_log_prob_gradient():
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -3.0]], requires_grad=True)
    mask = torch.tensor([[True, True], [True, False]])
    adv = torch.tensor([2.0, -1.0])
    loss, stats = grpo_loss(logp, logp.detach(), logp.detach(), adv, mask, kl_coef=0.5)
    loss.backward()
    # ratio 1 and KL 0 at the sampling policy: d loss / d logp = -A / (answer tokens), masked
    assert torch.allclose(logp.grad, torch.tensor([[-2 / 3, -2 / 3], [1 / 3, 0.0]]))
    assert loss.item() == pytest.approx(-(2 + 2 - 1) / 3) and stats["kl"] == 0.0


def test_grpo_raises_the_reward_on_a_task_the_model_sometimes_solves():
    """A tiny model rewarded when its first answer token has an even id (about half its samples at the start):
    the mean reward goes up within a few steps."""
    tok = CharTokenizer()
    torch.manual_seed(0)
    policy = tiny_char_model()
    records = [{"instruction": "Say a.", "input": "", "output": "a", "family": "a"}] * 4
    config = GRPOConfig(steps=30, questions=4, group_size=8, lr=3e-2, max_new_tokens=2, kl_coef=0.01,
                        format_weight=0.0, progress=False,
                        reward_fn=lambda ans, out, w: float(ans.answer_ids[0] % 2 == 0))
    history = train_grpo(policy, tiny_char_model().requires_grad_(False), tok, records, config)
    assert len(history.reward) == 30 and history.seconds > 0
    assert sum(history.reward[-5:]) / 5 > sum(history.reward[:5]) / 5 + 0.2
    assert all(k >= 0 or math.isnan(k) for k in history.kl)


def test_grpo_draws_again_for_groups_with_a_signal_and_splits_them_into_minibatches(monkeypatch):
    """Half the records pay every answer the same (no signal): dynamic sampling draws again until it has
    ``questions`` groups with one; each sampling step takes ``minibatches`` optimizer steps."""
    tok = CharTokenizer()
    records = [{"instruction": "Say a.", "input": "", "output": "a", "family": "signal"},
               {"instruction": "Say b.", "input": "", "output": "b", "family": "flat"}] * 4
    calls = []
    monkeypatch.setattr(grpo, "train_step", lambda *a, **k: calls.append(len(a[2][0][0])) or 0.5)

    def pay(ans, out, w):
        return float(ans.answer_ids[0] % 2 == 0) if out == "a" else 1.0

    common = dict(steps=3, questions=4, group_size=4, lr=1e-3, max_new_tokens=2, progress=False, reward_fn=pay)
    one_draw = train_grpo(tiny_char_model(), tiny_char_model(), tok, records,
                          GRPOConfig(**common, max_draws=1))
    assert all(d == 1 for d in one_draw.draws) and max(one_draw.groups_used) <= 4
    calls.clear()
    evals = []
    dynamic = train_grpo(tiny_char_model(), tiny_char_model(), tok, records,
                         GRPOConfig(**common, max_draws=5, minibatches=2, eval_every=2),
                         metrics_fn=lambda m: evals.append(1) or {"validation": 0.5})
    assert sum(dynamic.groups_used) > sum(one_draw.groups_used) and max(dynamic.draws) > 1
    assert len(calls) == 2 * sum(1 for g in dynamic.groups_used if g)  # two optimizer steps per sampling step
    assert sum(calls) == 4 * sum(dynamic.groups_used)  # every answer of a kept group trained on once
    assert dynamic.eval_steps == [2, 3] and dynamic.evals == [{"validation": 0.5}] * 2
    assert GRPOConfig(**common, minibatches=2, updates=3).optimizer_steps == 18


def test_grpo_stops_at_the_first_non_finite_update_of_a_step(monkeypatch):
    """A NaN loss ends the run at once: the step's next minibatch would add to gradients left unapplied."""
    calls = []
    monkeypatch.setattr(grpo, "train_step", lambda *a, **k: calls.append(1) or math.nan)
    config = GRPOConfig(steps=3, questions=4, group_size=4, lr=1e-3, max_new_tokens=2, minibatches=2, progress=False,
                        reward_fn=lambda ans, out, w: float(ans.answer_ids[0] % 2 == 0))
    with pytest.raises(FloatingPointError, match=r"at step 1 is nan .*not applied\. Lower the learning rate"):
        train_grpo(tiny_char_model(), tiny_char_model(), CharTokenizer(), RECORDS, config)
    assert calls == [1]


def test_grpo_config_rejects_a_group_of_one():
    with pytest.raises(ValueError, match="group_size"):
        GRPOConfig(steps=1, lr=1e-3, group_size=1)
    with pytest.raises(TypeError, match="GRPOConfig"):
        train_grpo(tiny_char_model(), None, CharTokenizer(), RECORDS, FinetuneConfig(steps=1, lr=1e-3))
