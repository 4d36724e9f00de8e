# ---
# jupyter:
#   jupytext:
#     formats: ipynb,scripts//py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 8 — Learning from rewards: best-of-k, DPO and GRPO
#
# Chapter 7 taught the course model to follow instructions by **imitation**: here is a question, here is
# the right answer, make it more likely. Every post-training recipe since 2024 adds a second stage that
# learns from a **reward** instead: the model answers, something scores the answer, and the model moves
# towards what scored well. InstructGPT (Ouyang et al., 2022) did it with a learned reward model and PPO
# (Schulman et al., 2017); **DPO** (Rafailov et al., 2023) learns from pairs of a preferred and a rejected
# answer with no reward model and no sampling during training; **GRPO** (Shao et al., 2024, DeepSeekMath)
# samples a group of answers per question and compares each with its group, and DeepSeek-R1 (2025) used it
# with rewards that a *program* checks.
#
# Chapter 7's tasks have answers a program checks exactly, so our reward is free: no human, no reward model.
# In this chapter, starting from chapter 7's model, we
#
# 1. **sample** several answers per question at a temperature, score them with a **verifiable reward**, and
#    compare pass@1 with pass@k: what the model can already do *sometimes* is what a reward can sharpen;
# 2. **best-of-k fine-tuning** (rejection sampling; Zelikman et al., 2022, STaR): keep the right samples,
#    fine-tune on them;
# 3. **DPO** from scratch: pairs of the model's own right and wrong answers, a frozen reference model, the
#    loss written out;
# 4. **GRPO** from scratch: group-normalised advantages, the clipped policy ratio, a KL penalty to the
#    starting model;
# 5. **reward hacking**: a deliberately flawed reward, what the policy does with it, and how the exact
#    reward catches it;
# 6. a **fair comparison**: the same training budget spent on more supervised fine-tuning, beside each
#    method, per family, on the test, on held-out words and on fresh records.

# %%
import time

NOTEBOOK_START = time.perf_counter()  # the wall time written to results/ch08.json is measured from here

import copy  # noqa: E402
import math  # noqa: E402
from collections import Counter  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from IPython.display import Markdown, display  # noqa: E402

from gpt2_core.finetuning import instruction_runs as runs  # noqa: E402
from gpt2_core.finetuning.instruction_data import KNOWLEDGE, SUPPORTED, extra_training_records  # noqa: E402
from gpt2_core.finetuning.instruction_eval import (Answer, generate_answers, normalise_answer,  # noqa: E402
                                                   sample_answers, score_answers, summarise)
from gpt2_core.finetuning.instruction_prompts import format_prompt  # noqa: E402
from gpt2_core.finetuning.loop import FinetuneConfig, finetune  # noqa: E402
from gpt2_core.finetuning.rewards import (answer_batch, answer_logprobs, contains_reward, is_right,  # noqa: E402
                                          pass_at_k_by_family, reward)
from gpt2_core.finetuning.rl import (GRPOConfig, best_of_k_items, dpo_loader, dpo_loss, dpo_loss_fn,  # noqa: E402
                                     dpo_pairs, group_advantages, grpo_loss, items_loader, kl_k3, train_grpo)
from gpt2_core.model.generation import generate  # noqa: E402
from gpt2_core.pretraining.step import lm_loss  # noqa: E402
from gpt2_core.profile import describe, get_device, pick, profile_name, seed_everything  # noqa: E402
from gpt2_core.results import committed_results_dir, read_measurement, write_results  # noqa: E402

print(describe())
seed_everything(123)
device = get_device()
pd.set_option("display.precision", 3)

# Every size comes from the profile: seconds in CI (tiny), minutes on a laptop CPU (default).
K = 8  # samples per question for pass@k, best-of-k, DPO pairs and GRPO groups
TEMPERATURE = 1.0  # sampling temperature: the distribution the model itself defines
PASS_QUESTIONS = pick(tiny=16, default=300)  # supported test questions scored by pass@k, before and after
POOL = pick(tiny=32, default=1500)  # training questions the offline methods sample answers for
GRPO_STEPS = pick(tiny=3, default=100)
GRPO_QUESTIONS = pick(tiny=4, default=16)  # questions per GRPO step, K answers each
GRPO_LR = pick(tiny=1e-4, default=2e-5)
KL_COEF, CLIP_EPS = 0.02, 0.2
DPO_BETA = 0.1
BATCH = 32  # sequences per optimizer step, for every method
# The budget every method gets: as many trained sequences as GRPO's steps x questions x K answers.
BUDGET_STEPS = GRPO_STEPS * GRPO_QUESTIONS * K // BATCH
OFFLINE_LR = pick(tiny=1e-4, default=2e-5)  # best-of-k, DPO and more SFT start from a tuned model: small steps
print(f"K={K} samples at T={TEMPERATURE}; budget: {GRPO_STEPS * GRPO_QUESTIONS * K:,} trained sequences "
      f"= {BUDGET_STEPS} steps of {BATCH} for the offline methods")

# %% [markdown]
# ## 1. The model we start from
#
# Chapter 7 saved its model under `data/outputs/`; `runs.chapter_model()` loads it, or, when it is missing
# (chapter 7 not run yet, or run at another profile), trains it again with the same function and recipe.
# It is the pretrained course model fine-tuned on the instruction set with its token embedding frozen.
# Every method below starts from a copy of it.

# %%
start_model, tokenizer, source = runs.chapter_model(device)
EOT = tokenizer.eot_token
RECIPE = runs.profile_recipe()
sets = runs.instruction_sets(RECIPE)
MAX_NEW = runs.max_new_tokens(tokenizer, [r for records in sets.values() for r in records])
print(f"chapter 7's model: {source}")
print({name: len(records) for name, records in sets.items()})


def fresh_policy():
    """A trainable copy of the start, with the (tied) token embedding frozen as in chapter 7."""
    policy = copy.deepcopy(start_model)
    runs.freeze_token_embedding(policy)
    return policy


reference_model = copy.deepcopy(start_model).requires_grad_(False)  # the frozen starting point
t0 = time.perf_counter()
scores = {"start": runs.score_sets(start_model, tokenizer, sets, max_new=MAX_NEW)}
print(f"greedy answers to {sum(len(sets[s]) for s in runs.SETS):,} questions in {time.perf_counter() - t0:.0f} s")
pd.DataFrame({s: {k: v for k, v in scores['start'][s].items() if k != 'table'} for s in runs.SETS}).T

# %% [markdown]
# ## 2. Sampling, and a reward a program checks
#
# Chapter 7 answered greedily: always the most likely next token. To learn from rewards the model must
# **explore**, so we sample instead, at temperature 1: the next token is drawn from the model's own
# distribution, and eight answers to one question can differ. Here are eight, drawn with the KV cache in
# one batch (the prompt repeated eight times):

# %%
question = next(r for r in sets["test"] if r["family"] == "count_words")
prompt = torch.tensor([tokenizer.encode_ordinary(format_prompt(question))] * K, device=device)
g = torch.Generator(device=device).manual_seed(1)
sampled = generate(start_model, prompt, MAX_NEW, temperature=TEMPERATURE, eos_id=EOT, generator=g)[:, prompt.shape[1]:]
print(format_prompt(question), "| expected:", question["output"])
samples = []
for row in sampled.tolist():
    stopped = EOT in row
    text = tokenizer.decode(row[:row.index(EOT)] if stopped else row).strip()
    samples.append((text, stopped))
    print(f"  {text!r:>12}  ended: {stopped}")

# %% [markdown]
# The **reward** is exact match, with a small **format term**: 1 for the right answer (ended by the model's
# own end-of-text), `0.1` for a well-formed wrong one (non-empty, ended), 0 for anything else. The format
# term keeps a little signal when every sample is wrong but some are at least answers. Written out, and
# checked against the package's `reward`:

# %%
def my_reward(text, stopped, expected, format_weight=0.1):
    if stopped and normalise_answer(text) == normalise_answer(expected):
        return 1.0
    return format_weight if stopped and text else 0.0


mine = [my_reward(t, s, question["output"]) for t, s in samples]
theirs = [reward(Answer(t, s), question["output"]) for t, s in samples]
print("rewards:", mine)

# %%
# NBVAL_CHECK_OUTPUT
print("my_reward equals gpt2_core's reward:", mine == theirs)

# %% [markdown]
# **pass@k**: the chance that at least one of $k$ sampled answers is right. From $n \ge k$ samples of
# which $c$ are right, the unbiased estimate (Chen et al., 2021) is the chance that $k$ of them drawn
# without replacement include a right one, $1 - \binom{n-c}{k} / \binom{n}{k}$ (exercise 1 asks you to
# write it). pass@1 is the chance that one sampled answer is right (exact match only: the reward's small
# format term does not count here); **pass@k well above pass@1 is headroom**: the model can answer, it just
# does not answer that way first. Every score of the chapter is the *greedy* answer, though, so the cell after
# the figure also sets pass@k beside greedy exact match on the same questions. Before any training, on a fixed
# slice of the supported test questions:

# %%
pass_records = [r for r in sets["test"] if r["family"] in SUPPORTED][:: max(1, sum(
    r["family"] in SUPPORTED for r in sets["test"]) // PASS_QUESTIONS)][:PASS_QUESTIONS]


def pass_table(model, seed=0):
    gen = torch.Generator(device=device).manual_seed(seed)
    groups = sample_answers(model, tokenizer, pass_records, K, TEMPERATURE, MAX_NEW, generator=gen)
    return pd.DataFrame(pass_at_k_by_family(pass_records, groups, ks=range(1, K + 1))).T


t0 = time.perf_counter()
before = pass_table(start_model)
print(f"{K} samples for each of {len(pass_records)} questions in {time.perf_counter() - t0:.0f} s")
before[["n", "format", "pass@1", f"pass@{K}"]]

# %%
fig, ax = plt.subplots(figsize=(8, 4))
for family, row in before.iterrows():
    ax.plot(range(1, K + 1), [row[f"pass@{k}"] for k in range(1, K + 1)], marker="o", label=family)
ax.set(xlabel="k (answers sampled per question)", ylabel="pass@k", ylim=(0, 1.02),
       title=f"Figure 1: pass@k before any reward training ({len(pass_records)} supported test questions)")
ax.legend(fontsize=8, loc="lower right", ncols=2)
ax.grid(alpha=0.3)
plt.show()
pass1_before = float(before["pass@1"].mean())
passk_before = float(before[f"pass@{K}"].mean())
greedy_before = summarise(score_answers(pass_records, generate_answers(start_model, tokenizer, pass_records, MAX_NEW)))
display(Markdown(f"Mean over the supported families: pass@1 at temperature {TEMPERATURE:g} {pass1_before:.1%}, "
                 f"pass@{K} {passk_before:.1%}. The greedy answer, which every score of this chapter uses, is right "
                 f"on {greedy_before['supported']:.1%} of the same questions: against greedy, the headroom is "
                 f"{passk_before - greedy_before['supported']:.1%}, not the {passk_before - pass1_before:.1%} between "
                 "sampled pass@1 and pass@k."))

# %% [markdown]
# The families that need knowledge (chapter 7) are not in that figure; section 8 measures pass@k on them
# too, and how many of their groups of samples carry a signal at all.
#
# ## 3. Best-of-k fine-tuning: keep what worked
#
# Every method of this chapter trains on the same **new training questions**: drawn from the training
# vocabulary like chapter 7's, but none of them asked before (not in training, not in any test). The
# families with few possible questions (years, sums) have none left, so the pool is mostly words and
# numbers, where the headroom is. The simplest way to learn from a reward: sample $k$ answers to each
# question, **keep the right ones**, and fine-tune on them with the ordinary instruction loss. (Rejection sampling, or *expert
# iteration*; STaR did it with reasoning chains.) Unlike chapter 7's data, the kept answers are the
# model's *own* tokens, and only questions the model can already answer sometimes contribute.

# %%
everything_asked = [r for records in runs.instruction_sets(runs.InstructionRecipe()).values() for r in records]
pool = [r for r in extra_training_records(everything_asked, n=2 * POOL, seed=31) if r["family"] in SUPPORTED][:POOL]
print(f"{len(pool):,} new training questions:", dict(Counter(r["family"] for r in pool)))
t0 = time.perf_counter()
pool_answers = sample_answers(start_model, tokenizer, pool, K, TEMPERATURE, MAX_NEW,
                              generator=torch.Generator(device=device).manual_seed(2))
sampling_seconds = time.perf_counter() - t0
items = best_of_k_items(pool, pool_answers, per_question=2)
right_share = sum(is_right(a, r["output"]) for r, g in zip(pool, pool_answers, strict=True) for a in g) / (K * len(pool))
print(f"{K} answers to each of {len(pool):,} training questions in {sampling_seconds:.0f} s; "
      f"{right_share:.1%} of them right; kept {len(items):,} distinct right answers (at most 2 per question)")

bok_model = fresh_policy()
bok_history = finetune(bok_model, items_loader(items, EOT, BATCH, device=device), lm_loss,
                       FinetuneConfig(steps=BUDGET_STEPS, lr=OFFLINE_LR, warmup_steps=max(1, BUDGET_STEPS // 10),
                                      weight_decay=0.0, desc="best-of-k"))
scores["best-of-k"] = runs.score_sets(bok_model, tokenizer, sets, max_new=MAX_NEW)

# %% [markdown]
# ## 4. DPO: prefer the right answer, relative to where you started
#
# Best-of-k only ever *raises* right answers. A wrong answer the model likes stays as likely as it was.
# DPO (Rafailov et al., 2023) trains on **pairs**: a right answer $y_w$ and a wrong one $y_l$ to the same
# question $x$, here both the model's own samples. With $\pi$ the model being trained and $\pi_{\text{ref}}$
# the frozen starting model, the loss of a pair is
#
# $$ -\log \sigma\Big(\beta\big[(\log \pi(y_w|x) - \log \pi_{\text{ref}}(y_w|x)) - (\log \pi(y_l|x) - \log
#    \pi_{\text{ref}}(y_l|x))\big]\Big), $$
#
# where $\log \pi(y|x)$ sums the log-probabilities of the answer's tokens. It rises the right answer's
# probability *relative to the reference* above the wrong one's; $\beta$ sets how far from the reference
# the model may go before a pair stops pulling. DPO derives it from RLHF's objective (maximise reward minus
# $\beta$ times the KL to the reference) without ever fitting a reward model or sampling during training.
#
# The sequence log-probabilities, by hand for one pair, then DPO's loss written out and checked:

# %%
pairs = dpo_pairs(pool, pool_answers, per_question=2)
print(f"{len(pairs):,} pairs from {len(pool):,} questions (a question whose {K} answers are all right, or all "
      "wrong, gives none)")
pair = pairs[0]
inputs, targets, mask = answer_batch([pair.chosen, pair.rejected], EOT, device)
with torch.no_grad():
    logits = start_model(inputs)
    token_logp = F.log_softmax(logits, -1).gather(-1, targets[..., None]).squeeze(-1)
    by_hand = (token_logp * mask).sum(-1)
    package = answer_logprobs(start_model, inputs, targets, mask).sum(-1)
print(f"chosen {pair.chosen.text!r}: log p = {by_hand[0]:.3f}; rejected {pair.rejected.text!r}: log p = {by_hand[1]:.3f}")


def my_dpo_loss(pi_w, pi_l, ref_w, ref_l, beta):
    return -F.logsigmoid(beta * ((pi_w - ref_w) - (pi_l - ref_l))).mean()


fake = torch.tensor([-2.0, -1.0]), torch.tensor([-3.0, -1.5]), torch.tensor([-2.5, -1.2]), torch.tensor([-2.5, -1.1])

# %%
# NBVAL_CHECK_OUTPUT
print("sequence log-probs by hand equal answer_logprobs:", torch.allclose(by_hand, package, atol=1e-4))
print("my_dpo_loss equals gpt2_core's dpo_loss:", torch.isclose(my_dpo_loss(*fake, 0.1), dpo_loss(*fake, 0.1)).item())
print("at the start (policy = reference) every pair costs log 2:",
      math.isclose(dpo_loss(*fake[2:], *fake[2:], 0.1).item(), math.log(2), rel_tol=1e-6))

# %% [markdown]
# Training: batches of pairs through the same `finetune` loop as every chapter since 6, with
# `dpo_loss_fn(reference)` as the loss (the reference's log-probabilities are computed without gradients).

# %%
dpo_model = fresh_policy()
dpo_history = finetune(dpo_model, dpo_loader(pairs, EOT, BATCH // 2, device=device),
                       dpo_loss_fn(reference_model, DPO_BETA),
                       FinetuneConfig(steps=BUDGET_STEPS, lr=OFFLINE_LR, warmup_steps=max(1, BUDGET_STEPS // 10),
                                      weight_decay=0.0, desc="DPO"))
scores["DPO"] = runs.score_sets(dpo_model, tokenizer, sets, max_new=MAX_NEW)
print(f"DPO loss: {dpo_history.losses[0]:.3f} at the first step (log 2 = {math.log(2):.3f}), "
      f"{sum(dpo_history.losses[-10:]) / len(dpo_history.losses[-10:]):.3f} over the last 10")

# %% [markdown]
# ## 5. GRPO: learn while you sample
#
# Best-of-k and DPO learn from answers sampled once, by the starting model. **Online** methods sample
# again from the model *as it learns*, so they keep finding out what it gets wrong now. GRPO (Shao et al.,
# 2024) does it without PPO's learned value function: each step it samples a **group** of $G$ answers to
# each of a few questions, scores them, and gives each answer an **advantage**: its reward minus its
# group's mean, divided by the group's standard deviation. An answer scored above its group's mean is
# pushed up, one scored below it down; a group whose answers all score the same teaches nothing (its advantages are 0).
# One group by hand:

# %%
group_rewards = torch.tensor([[1.0, 0.1, 0.1, 1.0, 0.0, 0.1, 0.1, 0.1]])
centred = group_rewards - group_rewards.mean()
by_hand = centred / (group_rewards.std() + 1e-4)
print("rewards   :", [round(r, 2) for r in group_rewards[0].tolist()])
print("advantages:", [round(a, 2) for a in by_hand[0].tolist()])

# %%
# NBVAL_CHECK_OUTPUT
print("by hand equals group_advantages:", torch.allclose(by_hand, group_advantages(group_rewards)))
print("a group whose rewards are all equal teaches nothing:", group_advantages(torch.ones(1, 4)).abs().sum().item() == 0)

# %% [markdown]
# Each answer token $t$ then contributes $-\min\big(r_t A,\ \mathrm{clip}(r_t, 1-\epsilon, 1+\epsilon) A\big)$
# to the loss, with $r_t = \pi(y_t|\ldots) / \pi_{\text{old}}(y_t|\ldots)$ the ratio between the model
# being trained and the one that sampled. The **clip** (from PPO) stops one batch of samples from pushing
# the policy far: once a token's ratio has moved $\epsilon$ in the direction its advantage wants, its
# gradient is zero. A **KL penalty** keeps the policy near the starting model. The KL divergence
# $\mathrm{KL}(\pi\,\|\,\pi_{\text{ref}}) = \sum_y \pi(y) \log \frac{\pi(y)}{\pi_{\text{ref}}(y)}$ measures how far one
# distribution of next tokens has moved from another: zero when they are equal, larger as they part. It is
# estimated per sampled token
# with Schulman's (2020) $k_3 = \frac{\pi_{\text{ref}}}{\pi} - \log\frac{\pi_{\text{ref}}}{\pi} - 1$: never
# negative, and unbiased on the policy's own samples. Both checked, on small distributions:

# %%
def my_clipped(ratio, advantage, eps=CLIP_EPS):
    return -torch.minimum(ratio * advantage, ratio.clamp(1 - eps, 1 + eps) * advantage)


for r, a in [(1.1, 1.0), (1.3, 1.0), (0.7, -1.0), (0.7, 1.0)]:
    ratio = torch.tensor(r, requires_grad=True)
    my_clipped(ratio, torch.tensor(a)).backward()
    print(f"ratio {r}, advantage {a:+}: gradient {ratio.grad.item():+.1f}")
torch.manual_seed(0)
p, q = torch.softmax(torch.randn(6), 0), torch.softmax(torch.randn(6), 0)
draws = torch.multinomial(p, 100_000, replacement=True, generator=torch.Generator().manual_seed(0))
k3_estimate = kl_k3(p.log()[draws], q.log()[draws]).mean()
exact_kl = (p * (p / q).log()).sum()

# %%
# NBVAL_CHECK_OUTPUT
logp = torch.log(torch.tensor([[1.3, 1.1, 0.7]]))
loss, _ = grpo_loss(logp, torch.zeros(1, 3), torch.zeros(1, 3), torch.tensor([1.0]), torch.ones(1, 3, dtype=torch.bool),
                    CLIP_EPS, kl_coef=0.0)
print("grpo_loss equals my clipped objective:",
      torch.isclose(loss, my_clipped(logp.exp(), torch.tensor(1.0)).mean()).item())
print(f"k3 estimate of KL(p || q) within 2% of the exact value: {abs(k3_estimate / exact_kl - 1) < 0.02}")

# %% [markdown]
# `train_grpo` puts it together. Each step draws `GRPO_QUESTIONS` training questions with prompts of one
# token length (so that their $K$ answers each are sampled in one batch, without padding), samples, scores,
# drops the groups without signal, and takes one optimizer step on the rest (with one update per batch
# the ratio is exactly 1 and the clip never binds; `GRPOConfig(updates=...)` takes more). The reference
# for the KL penalty is the frozen starting model.

# %%
grpo_model = fresh_policy()
grpo_config = GRPOConfig(steps=GRPO_STEPS, questions=GRPO_QUESTIONS, group_size=K, temperature=TEMPERATURE,
                         lr=GRPO_LR, warmup_steps=max(1, GRPO_STEPS // 10), kl_coef=KL_COEF, clip_eps=CLIP_EPS,
                         max_new_tokens=MAX_NEW)
grpo_history = train_grpo(grpo_model, reference_model, tokenizer, pool, grpo_config)
scores["GRPO"] = runs.score_sets(grpo_model, tokenizer, sets, max_new=MAX_NEW)
print(f"{GRPO_STEPS} GRPO steps in {grpo_history.seconds:.0f} s; groups with a signal per step: "
      f"{sum(grpo_history.groups_used) / len(grpo_history.groups_used):.1f} of {GRPO_QUESTIONS}")


def smooth(values, k=10):
    values = [v for v in values if v == v]
    return [sum(values[max(0, i - k + 1):i + 1]) / len(values[max(0, i - k + 1):i + 1]) for i in range(len(values))]


fig, (ax_r, ax_kl) = plt.subplots(1, 2, figsize=(11, 3.6))
ax_r.plot(smooth(grpo_history.reward), label="mean reward")
ax_r.plot(smooth(grpo_history.right), label="share of right samples")
ax_r.set(xlabel="GRPO step", ylabel="mean of the last 10 steps", title="reward on the sampled answers")
ax_r.legend()
ax_kl.plot(smooth(grpo_history.kl))
ax_kl.set(xlabel="GRPO step", ylabel="KL to the start, per answer token (k3)", title="how far the policy moved")
fig.suptitle("Figure 2: GRPO, step by step", y=1.02)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 6. Reward hacking: optimise a flawed reward
#
# A reward is a specification, and a policy optimises what it says, not what was meant. `contains_reward`
# pays 1 whenever the expected answer appears *anywhere* in the output as whole words. That sounds
# harmless; but an answer that lists several candidates is paid as if it were right. GRPO with this reward,
# everything else the same, and both rewards measured on what it samples:

# %%
hack_model = fresh_policy()
hack_history = train_grpo(hack_model, reference_model, tokenizer, pool,
                          GRPOConfig(**{**vars(grpo_config), "reward_fn": contains_reward, "desc": "GRPO, flawed reward"}))
hack_answers = sample_answers(hack_model, tokenizer, pass_records, 1, 0.0, MAX_NEW)
start_answers = sample_answers(start_model, tokenizer, pass_records, 1, 0.0, MAX_NEW)


def judged(groups):
    """Greedy answers scored both ways, and how long they are."""
    pairs_ = list(zip(pass_records, (g[0] for g in groups), strict=True))
    return {"flawed reward": sum(contains_reward(a, r["output"]) for r, a in pairs_) / len(pairs_),
            "exact match": sum(is_right(a, r["output"]) for r, a in pairs_) / len(pairs_),
            "words per answer": sum(len(a.text.split()) for _, a in pairs_) / len(pairs_)}


hacking = pd.DataFrame({"start": judged(start_answers), "after GRPO on the flawed reward": judged(hack_answers)}).T
hacking

# %%
gamed = [(r, g[0].text) for r, g in zip(pass_records, hack_answers, strict=True)
         if contains_reward(g[0], r["output"]) == 1.0 and not is_right(g[0], r["output"])]
print(f"{len(gamed)} of {len(pass_records)} greedy answers are paid by the flawed reward but wrong; a few:")
for r, text in gamed[:5]:
    print(f"  {format_prompt(r)!r} -> {text!r} (expected {r['output']!r})")
fig, ax = plt.subplots(figsize=(7, 3.4))
ax.plot(smooth(hack_history.reward), label="flawed reward (what it optimises)")
ax.plot(smooth(hack_history.right), label="exact match (what we wanted)")
ax.set(xlabel="GRPO step", ylabel="mean of the last 10 steps", title="Figure 3: optimising a flawed reward")
ax.legend()
plt.show()

# %% [markdown]
# ## 7. A fair comparison: the same budget spent on more supervised fine-tuning
#
# Every method above trained on the same number of sequences (the budget printed at the top). Would the
# same budget spent on chapter 7's supervised loss, with the ground-truth answers of the same new
# questions, do as well? That is the baseline a reward method has to beat.

# %%
sft_model = fresh_policy()
sft_history = runs.fine_tune(sft_model, tokenizer, pool, runs.InstructionRecipe(
    steps=BUDGET_STEPS, batch_size=BATCH, lr=OFFLINE_LR, weight_decay=0.0, warmup=0.1), seed=123, desc="more SFT")
scores["more SFT"] = runs.score_sets(sft_model, tokenizer, sets, max_new=MAX_NEW)
seconds = {"best-of-k": bok_history.seconds + sampling_seconds, "DPO": dpo_history.seconds + sampling_seconds,
           "GRPO": grpo_history.seconds, "more SFT": sft_history.seconds}
table = pd.DataFrame({name: {**{f"{s} (supported)": sc[s]["supported"] for s in runs.SETS},
                             "format compliance": sc["test"]["format_compliance"],
                             "training seconds": seconds.get(name, 0.0)}
                      for name, sc in scores.items()}).T
table

# %%
per_family = pd.DataFrame({name: sc["test"]["table"]["exact_match"] for name, sc in scores.items()})
supported_families = [f for f in per_family.index if f in SUPPORTED]
fig, ax = plt.subplots(figsize=(11, 4))
per_family.loc[supported_families].plot.bar(ax=ax, width=0.8)
ax.set(ylabel="exact match, test questions", ylim=(0, 1.15),
       title="Figure 4: each method per supported family (greedy answers)")
ax.legend(ncols=len(scores), loc="upper center", fontsize=8, frameon=False)
plt.xticks(rotation=20, ha="right")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 8. pass@1 and pass@k after GRPO, and the families that need knowledge
#
# GRPO sharpens the sampling distribution: answers the model gave sometimes should now come first.

# %%
after = pass_table(grpo_model)
pass1_after, passk_after = float(after["pass@1"].mean()), float(after[f"pass@{K}"].mean())
pd.DataFrame({"pass@1 before": before["pass@1"], "pass@1 after": after["pass@1"],
              f"pass@{K} before": before[f"pass@{K}"], f"pass@{K} after": after[f"pass@{K}"]})

# %%
knowledge = [r for r in sets["test"] if r["family"] in KNOWLEDGE][:PASS_QUESTIONS]
knowledge_groups = sample_answers(start_model, tokenizer, knowledge, K, TEMPERATURE, MAX_NEW,
                                  generator=torch.Generator(device=device).manual_seed(3))
no_signal = sum(len({reward(a, r["output"]) for a in g}) == 1 for r, g in zip(knowledge, knowledge_groups, strict=True))
pd.DataFrame(pass_at_k_by_family(knowledge, knowledge_groups, ks=(1, K))).T

# %%
display(Markdown(
    f"On the {len(knowledge)} knowledge questions, {no_signal} groups of {K} samples have all-equal rewards "
    f"({no_signal / max(len(knowledge), 1):.0%}): GRPO gets no signal from them. A reward can only sharpen what "
    f"the model already does sometimes; it cannot teach a fact no sample contains. "
    f"GRPO's exact match on the knowledge families: {scores['start']['test'].get('knowledge', float('nan')):.1%} "
    f"before, {scores['GRPO']['test'].get('knowledge', float('nan')):.1%} after."))

# %% [markdown]
# ## 9. What this run shows
#
# The aims set for this chapter were: GRPO at least 5 points above the starting model on the supported
# families of the test, and above the same budget of supervised fine-tuning; format compliance of 95% or
# more. The next cell checks them against this run's numbers.

# %%
start_s, grpo_s, sft_s = (scores[n]["test"]["supported"] for n in ("start", "GRPO", "more SFT"))
aims = [(f"GRPO >= start + 5 points ({grpo_s:.1%} vs {start_s:.1%})", grpo_s >= start_s + 0.05),
        (f"GRPO above more SFT at the same budget ({grpo_s:.1%} vs {sft_s:.1%})", grpo_s > sft_s),
        (f"GRPO format compliance >= 95% ({scores['GRPO']['test']['format_compliance']:.1%})",
         scores["GRPO"]["test"]["format_compliance"] >= 0.95)]
for aim, met in aims:
    print(f"{'met   ' if met else 'missed'}  {aim}")
best = max(scores, key=lambda n: scores[n]["test"]["supported"])
seed_spread = read_measurement(committed_results_dir() / "ch07-seed-spread.json")
seed_std = seed_spread["methods"]["full fine-tuning"]["test"]["std"]
display(Markdown(
    f"The best method on the supported test questions in this run is **{best}** "
    f"({scores[best]['test']['supported']:.1%}, start {start_s:.1%}). pass@1 moved from {pass1_before:.1%} to "
    f"{pass1_after:.1%} under GRPO, pass@{K} from {passk_before:.1%} to {passk_after:.1%}. These are one seed "
    f"each. Chapter 7's recipe moved by {seed_std:.1%} (standard deviation of the test score over "
    f"{len(seed_spread['seeds'])} seeds, `results/ch07-seed-spread.json`), so the best method's lead over the "
    f"start, {scores[best]['test']['supported'] - start_s:+.1%}, is "
    f"{'larger' if scores[best]['test']['supported'] - start_s > seed_std else 'no larger'} than the seed "
    f"spread, and GRPO's change, {grpo_s - start_s:+.1%}, "
    f"{'larger' if abs(grpo_s - start_s) > seed_std else 'no larger'} (one seed of each method: a second "
    "seed would tell more)."))

# %%
results = {
    "seconds": round(time.perf_counter() - NOTEBOOK_START, 1),
    "k": K,
    "start_exact_match_supported": start_s,
    "best_of_k_exact_match_supported": scores["best-of-k"]["test"]["supported"],
    "dpo_exact_match_supported": scores["DPO"]["test"]["supported"],
    "grpo_exact_match_supported": grpo_s,
    "sft_more_exact_match_supported": sft_s,
    "grpo_heldout_words_exact_match_supported": scores["GRPO"]["heldout"]["supported"],
    "grpo_fresh_exact_match_supported": scores["GRPO"]["fresh"]["supported"],
    "grpo_format_compliance": scores["GRPO"]["test"]["format_compliance"],
    "grpo_kl_to_start": smooth(grpo_history.kl)[-1] if smooth(grpo_history.kl) else 0.0,
    "pass_at_1_before": pass1_before, "pass_at_k_before": passk_before,
    "pass_at_1_after": pass1_after, "pass_at_k_after": passk_after,
    "flawed_reward_exact_match": hacking.loc["after GRPO on the flawed reward", "exact match"],
}
print(write_results(8, results))
print(f"profile {profile_name()}: notebook ran for {results['seconds'] / 60:.1f} min")

# %% [markdown]
# ## Summary: what you built
#
# - **Sampling** at a temperature turns one model into a distribution of answers; **pass@k** against
#   pass@1 measures what it can do sometimes but not first: the headroom a reward can use.
# - A **verifiable reward** (exact match plus a small format term) needs no human and no reward model.
# - **Best-of-k** keeps the right samples and imitates them; **DPO** learns from pairs, relative to a frozen
#   reference, without sampling while it trains; **GRPO** samples as it learns and scores each answer against
#   its own group,
#   with PPO's clip and a KL penalty to the start.
# - A **flawed reward** is optimised as written: measure the policy with the reward you meant.
# - Every method is compared at the **same budget** with more supervised fine-tuning, per family, on held-out
#   words and fresh records; a reward cannot teach a fact no sample contains.
#
# **What comes next.** This is where the course stops: a GPT built from its tokenizer up, pretrained,
# fine-tuned to classify and to follow instructions, and trained further from rewards. The references below are
# where to go next.
#
# ## Exercises
#
# Each exercise checks itself against the package; reference solutions are in
# `gpt2_core/exercises/solutions/ch08.py`, for after you have tried.
#
# **1. pass@k from n samples.** pass@k is the chance that at least one of k sampled answers to a question is
# correct. Sampling exactly k answers per question and checking them gives a noisy estimate; Chen et al.
# (2021) sample $n \ge k$ answers, count the $c$ correct ones, and compute the chance that $k$ answers drawn
# from those $n$ *without replacement* include a correct one. Write `my_pass_at_k(n, c, k)` for
# $1 \le k \le n$.
#
# **Predict first:** with $n = 10$ answers of which $c = 3$ are correct, what are pass@1 and pass@5? Is
# $1 - (1 - c/n)^k$ the same thing? Once it passes, compute pass@1, pass@4 and pass@8 of this chapter's
# samples for the supported families from `before`: how much headroom is there between what the model answers
# first and what it can answer at all?

# %%
from gpt2_core.exercises import check_exercise  # noqa: E402


def my_pass_at_k(n: int, c: int, k: int) -> float:
    raise NotImplementedError  # your code here


_ = check_exercise("ch08.pass_at_k", my_pass_at_k)

# %% [markdown]
# **2. Group-normalised advantages.** Section 5 computed the advantages of one group by hand. Write
# `my_group_advantages(rewards, eps)` for rewards of shape (questions, G), one row per question: each reward
# minus its group's mean, divided by the group's standard deviation (`torch.std`'s default, which divides by
# $G - 1$) plus `eps`.
#
# **Predict first:** in a group with rewards [1, 0, 0, 0] and one with [1, 1, 1, 0], which answer gets the
# largest advantage, and which the most negative one? What happens to a group whose rewards are all equal,
# all right or all wrong, and what does that mean for what GRPO can learn from a question the model always
# (or never) answers correctly?

# %%
def my_group_advantages(rewards: torch.Tensor, eps: float) -> torch.Tensor:
    raise NotImplementedError  # your code here


_ = check_exercise("ch08.group_advantages", my_group_advantages)

# %% [markdown]
# **3. (Open) More than one update per batch.** `GRPOConfig(updates=4)` takes four optimizer steps on each
# batch of samples, so the policy ratio moves away from 1 and the clip starts to bind
# (`grpo_history.clipped` records the share of clipped tokens). Does it learn faster per sampled answer? Does
# the KL grow faster? Try `CLIP_EPS` of `0.1` and `0.4` too.
#
# ## References
#
# - L. Ouyang et al. (2022). *Training language models to follow instructions with human feedback*
#   (InstructGPT): supervised fine-tuning, a reward model, then PPO.
# - J. Schulman, F. Wolski, P. Dhariwal, A. Radford, O. Klimov (2017). *Proximal Policy Optimization
#   Algorithms*: the clipped ratio objective.
# - J. Schulman (2020). *Approximating KL Divergence* (blog post): the k1, k2, k3 estimators.
# - E. Zelikman, Y. Wu, J. Mu, N. Goodman (2022). *STaR: Bootstrapping Reasoning With Reasoning*: keep the
#   samples that reach the right answer, fine-tune on them, repeat.
# - R. Rafailov, A. Sharma, E. Mitchell, S. Ermon, C. Manning, C. Finn (2023). *Direct Preference
#   Optimization: Your Language Model is Secretly a Reward Model* (DPO).
# - Z. Shao et al. (2024). *DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language
#   Models*: GRPO.
# - DeepSeek-AI (2025). *DeepSeek-R1: Incentivizing Reasoning Capability in LLMs via Reinforcement Learning*:
#   GRPO with rewards a program checks.
# - M. Chen et al. (2021). *Evaluating Large Language Models Trained on Code* (Codex): the unbiased pass@k.
