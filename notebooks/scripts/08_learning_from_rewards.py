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
# 6. a **fair comparison**: every method gets the same optimizer steps over the same number of sequences,
#    beside the same budget spent on more supervised fine-tuning, over several seeds.
#
# Every recipe of this chapter (GRPO's, DPO's) was chosen on **validation** questions by a command that writes
# `results/ch08-recipe-search.json`; the test questions only score the finished runs.

# %%
import time

NOTEBOOK_START = time.perf_counter()  # the wall time written to results/ch08.json is measured from here

import math  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from IPython.display import Markdown, display  # noqa: E402

from gpt2_core.course import instruction_runs as ch7_runs  # noqa: E402
from gpt2_core.course import reward_runs as runs  # noqa: E402
from gpt2_core.finetuning.compare import compare  # noqa: E402
from gpt2_core.finetuning.grpo import group_advantages, grpo_loss, kl_k3  # noqa: E402
from gpt2_core.finetuning.instruction_data import KNOWLEDGE, SUPPORTED  # noqa: E402
from gpt2_core.finetuning.instruction_eval import (Answer, generate_answers, normalise_answer,  # noqa: E402
                                                   sample_answers, score_answers, summarise)
from gpt2_core.finetuning.instruction_prompts import format_prompt  # noqa: E402
from gpt2_core.finetuning.rewards import (answer_batch, answer_logprobs, is_right, pass_at_k_by_family,  # noqa: E402
                                          reward, unordered_reward)
from gpt2_core.finetuning.rl import best_of_k_items, dpo_loss, frontier  # noqa: E402
from gpt2_core.model.generation import generate  # noqa: E402
from gpt2_core.profile import describe, get_device, pick, profile_name, seed_everything  # noqa: E402
from gpt2_core.course.results import committed_results_dir, read_measurement, write_results  # noqa: E402

print(describe())
seed_everything(123)
device = get_device()
pd.set_option("display.precision", 3)

# Every size comes from the profile: seconds in CI (tiny), minutes on a laptop CPU (default).
RECIPE = runs.profile_recipe()  # one budget for every method (gpt2_core/course/reward_runs.py)
K, TEMPERATURE, MAX_NEW = RECIPE.k, RECIPE.temperature, RECIPE.max_new_tokens
PASS_QUESTIONS = pick(tiny=16, default=300)  # supported test questions scored by pass@k, before and after
SEARCH = read_measurement(committed_results_dir() / "ch08-recipe-search.json")  # recipes chosen on validation
SPREAD = read_measurement(committed_results_dir() / "ch08-seed-spread.json")  # every method over seeds
print(f"every method: {RECIPE.steps} AdamW steps of {RECIPE.batch} sequences ({RECIPE.steps * RECIPE.batch:,} "
      f"sequences), warmup {RECIPE.warmup:.0%} then cosine, no weight decay; lr={RECIPE.lr:g} for the offline "
      f"methods, {RECIPE.grpo_lr:g} for GRPO")
print(f"GRPO: {RECIPE.sampling_steps} sampling steps of {RECIPE.questions} groups x {K} answers at T={TEMPERATURE:g}, "
      f"each split into {RECIPE.minibatches} optimizer steps")

# %% [markdown]
# ## 1. The model we start from
#
# Chapter 7 saved its model under `data/outputs/`; `ch7_runs.chapter_model()` loads it, or, when it is missing
# (chapter 7 not run yet, or run at another profile), trains it again with the same function and recipe.
# It is the pretrained course model fine-tuned on the instruction set with its token embedding frozen.
# Every method below starts from a copy of it (`runs.policy_from`, which keeps that embedding frozen).

# %%
start_model, tokenizer, source = ch7_runs.chapter_model(device)
EOT = tokenizer.eot_token
sets = ch7_runs.instruction_sets(ch7_runs.profile_recipe())
print(f"chapter 7's model: {source}")
print({name: len(records) for name, records in sets.items()})
reference_model = runs.policy_from(start_model).requires_grad_(False)  # the frozen starting point
t0 = time.perf_counter()
scores = {"start": ch7_runs.score_sets(start_model, tokenizer, sets, max_new=MAX_NEW)}
print(f"greedy answers to {sum(len(sets[s]) for s in ch7_runs.SETS):,} questions in {time.perf_counter() - t0:.0f} s")
pd.DataFrame({s: {k: v for k, v in scores['start'][s].items() if k not in ('table', 'correct')}
              for s in ch7_runs.SETS}).T

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
# **pass@k**: the chance that at least one of $k$ sampled answers is right. Sampling exactly $k$ answers
# per question gives a noisy estimate; Chen et al. (2021) sample $n \ge k$, count the $c$ right ones and
# compute the chance that $k$ of them drawn *without replacement* include a right one (exercise 1 asks you to
# derive it; `pass_at_k_by_family` computes it). pass@1 is the chance that one sampled answer is right (exact match only: the reward's small
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
# The families that need knowledge (chapter 7) are not in that figure; section 8 measures pass@k on them.
#
# ## 3. The training questions, and where a reward can teach
#
# Every method of this chapter learns from the same **new training questions**: drawn from the training
# vocabulary like chapter 7's, but none of them asked before (not in training, not in any test or validation
# set). The families with few possible questions (years, sums) have none left, so the pool holds the five word
# and number families. The starting model answers each pool question $K$ times. A question whose $K$ answers
# are **all right** or **all wrong** cannot teach a reward method anything: no answer of the group scores above
# another (GRPO's advantages are all zero, DPO has no pair). The questions in between are the model's
# **frontier**.

# %%
pool = runs.training_pool(RECIPE)
t0 = time.perf_counter()
pool_answers = runs.sample_pool(start_model, tokenizer, pool, RECIPE, seed=123)
sampling_seconds = time.perf_counter() - t0
frontier_pool = frontier(pool, pool_answers)
right_counts = [sum(is_right(a, r["output"]) for a in g) for r, g in zip(pool, pool_answers, strict=True)]
where = pd.DataFrame({"family": [r["family"] for r in pool], "right": right_counts})
where["group"] = ["all wrong" if c == 0 else f"all {K} right" if c == K else "frontier" for c in right_counts]
print(f"{K} answers to each of {len(pool):,} training questions in {sampling_seconds:.0f} s; "
      f"{sum(right_counts) / (K * len(pool)):.1%} of them right; {len(frontier_pool):,} frontier questions")
where.groupby(["family", "group"]).size().unstack(fill_value=0)

# %% [markdown]
# ## 4. Best-of-k fine-tuning: keep what worked
#
# The simplest way to learn from a reward: keep the right samples and fine-tune on them with the ordinary
# instruction loss (rejection sampling, or *expert iteration*; STaR did it with reasoning chains). Here the
# reward is exact match, so every kept answer *is* the reference answer: best-of-k is supervised fine-tuning
# restricted to the questions the model already answers sometimes, in the model's own tokens. The next cell
# counts how often those tokens are the reference answer's own tokenization.

# %%
items = best_of_k_items(pool, pool_answers, per_question=1)
reference_tokens = {tuple(tokenizer.encode_ordinary(" " + r["output"])) for r in pool}
kept = [a for r, g in zip(pool, pool_answers, strict=True) for a in g if is_right(a, r["output"])]
same_tokens = sum(tuple(a.answer_ids[:-1]) in reference_tokens for a in kept) / max(len(kept), 1)
print(f"kept {len(items):,} questions' right answers (one per question); {same_tokens:.1%} of all right samples are "
      "token for token the reference answer")
bok_model, bok_history = runs.run_best_of_k(start_model, tokenizer, pool, pool_answers, RECIPE)
scores["best-of-k"] = ch7_runs.score_sets(bok_model, tokenizer, sets, max_new=MAX_NEW)

# %% [markdown]
# ## 5. DPO: prefer the right answer, relative to where you started
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
pairs, validation_pairs = runs.split_pairs(pool, pool_answers, RECIPE, seed=123)
print(f"{len(pairs):,} training pairs, {len(validation_pairs):,} validation pairs (from the last "
      f"{RECIPE.dpo_validation:.0%} of the questions); a question whose {K} answers are all right, or all wrong, "
      "gives none")
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
# ### Likelihood displacement
#
# DPO's loss asks only that the **margin** grow: the chosen answer's log-ratio to the reference minus the
# rejected one's. Nothing in it says the chosen answer must become *more* likely. Both can fall, as long as the
# rejected one falls by more, and the probability they lose goes to answers in neither pair. Razin et al. (2024)
# and Pal et al. (2024) call it **likelihood displacement**. `pair_statistics` measures it on a set of pairs:
# the mean log-probability of the chosen and the rejected answers, the mean margin, and the share of chosen
# answers that became less likely than under the reference. The search command (`results/ch08-recipe-search.json`)
# trained plain DPO at the chapter's budget and measured them every few steps, on training pairs and on
# validation pairs it never trained on:

# %%
dpo_variants = {name: row for name, row in SEARCH["runs"].items() if row.get("method") == "DPO"}
full_sets = ch7_runs.instruction_sets(ch7_runs.InstructionRecipe())  # what the search scored, at every profile
validation_sizes = [sum(r["family"] in SUPPORTED for r in full_sets[s]) for s in ch7_runs.VALIDATION_SETS]
validation_size = sum(validation_sizes)
plain = dpo_variants["DPO, plain"]["history"]
fig, (ax_lp, ax_down) = plt.subplots(1, 2, figsize=(11, 3.6))
for split, style in (("train", "-"), ("validation", "--")):
    for what in ("chosen", "rejected"):
        ax_lp.plot(plain["eval_steps"], [e.get(f"{split} {what}") for e in plain["evals"]], style,
                   label=f"{what}, {split} pairs")
    ax_down.plot(plain["eval_steps"], [e.get(f"{split} chosen_down") for e in plain["evals"]], style,
                 label=f"{split} pairs")
ax_lp.set(xlabel="DPO step", ylabel="mean log-probability of the answer", title="chosen and rejected answers")
ax_lp.legend(fontsize=8)
ax_down.set(xlabel="DPO step", ylabel="share of pairs", ylim=(0, 1),
            title="chosen answer less likely than at the start")
ax_down.legend(fontsize=8)
fig.suptitle("Figure 2: plain DPO, measured during training (the recipe search's run)", y=1.02)
plt.tight_layout()
plt.show()
first, last = plain["evals"][0], plain["evals"][-1]
display(Markdown(
    f"Between step {plain['eval_steps'][0]} and step {plain['eval_steps'][-1]}, the chosen answers' mean log-probability "
    f"on the training pairs went from {first['train chosen']:.2f} to {last['train chosen']:.2f} and the rejected "
    f"ones' from {first['train rejected']:.2f} to {last['train rejected']:.2f}; the margin grew to "
    f"{last['train margin']:.1f}, and {last['train chosen_down']:.0%} of the chosen training answers ended *less* "
    f"likely than at the start ({last.get('validation chosen_down', math.nan):.0%} on validation pairs)."))

# %% [markdown]
# The search tried, on the same pairs and budget, an **NLL term** that adds the chosen answer's own negative
# log-likelihood per token to the loss (Pang et al., 2024) and pulls the chosen answer up directly, alone and
# with a larger $\beta$, which stops a pair from pulling once its margin is a few units wide (exercise 2
# derives that pull). Each was judged on the validation questions (greedy exact match on the supported families;
# "both" pools the two sets):

# %%
start_validation = SEARCH["runs"]["start"]


def validation_row(row):
    """A run's greedy exact match on the supported families of the two validation sets, and on both together."""
    both = (row["validation"]["supported"], row["validation_new"]["supported"])
    pooled = sum(v * n for v, n in zip(both, validation_sizes, strict=True)) / sum(validation_sizes)
    return {"validation": both[0], "validation, made-up words": both[1], "both": pooled}


def mean_validation(row):
    return validation_row(row)["both"]


dpo_table = pd.DataFrame({"start": validation_row(start_validation),
                          **{name: {**validation_row(row),
                                    "chosen log-prob at the end": row["history"]["evals"][-1]["train chosen"],
                                    "chosen less likely": row["history"]["evals"][-1]["train chosen_down"]}
                             for name, row in dpo_variants.items()}}).T
best_dpo = max(dpo_variants, key=lambda n: mean_validation(dpo_variants[n]))
chosen_recipe = dpo_variants[best_dpo]["recipe"]
print(f"chosen on validation: {best_dpo} (nll weight {chosen_recipe['dpo_nll']:g}, beta {chosen_recipe['dpo_beta']:g}); "
      "the chapter's recipe (default profile) is the same: "
      f"{(runs.RewardRecipe().dpo_nll, runs.RewardRecipe().dpo_beta) == (chosen_recipe['dpo_nll'], chosen_recipe['dpo_beta'])}")
display(dpo_table)
dpo_vs_start = compare([mean_validation(dpo_variants[best_dpo])], [mean_validation(start_validation)],
                       name_a=best_dpo, name_b="the start", n_a=validation_size, n_b=validation_size,
                       what="validation questions")
display(Markdown(f"On both validation sets together, {dpo_vs_start.phrase}."))

# %% [markdown]
# The chapter's DPO run, with that recipe, through the same `finetune` loop as every chapter since 6, with
# `dpo_loss_fn(reference, beta, nll_weight)` as the loss (the reference's log-probabilities are computed
# without gradients), and the pairs measured as it trains:

# %%
dpo_model, dpo_history = runs.run_dpo(start_model, reference_model, tokenizer, pairs, validation_pairs, RECIPE)
scores["DPO"] = ch7_runs.score_sets(dpo_model, tokenizer, sets, max_new=MAX_NEW)
end = dpo_history.evals[-1]
print(f"DPO loss: {dpo_history.losses[0]:.3f} at the first step, "
      f"{sum(dpo_history.losses[-10:]) / len(dpo_history.losses[-10:]):.3f} over the last 10")
print(f"at the end: chosen log-prob {end['train chosen']:.2f} (training pairs), margin {end['train margin']:.1f}, "
      f"{end['train chosen_down']:.0%} of chosen answers less likely than at the start "
      f"({end.get('validation chosen_down', math.nan):.0%} of validation pairs)")

# %% [markdown]
# ## 6. GRPO: learn while you sample
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
def my_clipped(ratio, advantage, eps=RECIPE.clip_eps):
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
                    RECIPE.clip_eps, kl_coef=0.0)
print("grpo_loss equals my clipped objective:",
      torch.isclose(loss, my_clipped(logp.exp(), torch.tensor(1.0)).mean()).item())
print(f"k3 estimate of KL(p || q) within 2% of the exact value: {abs(k3_estimate / exact_kl - 1) < 0.02}")

# %% [markdown]
# `train_grpo` puts it together. A first version of this chapter drew each step's questions with one prompt
# length (one batched generate call) from the whole pool. With one length per step, count_words' answers were
# all alike within a step (the prompt's length fixes the number of words), and the policy learned that number.
# `train_grpo` now draws questions at random, so a step mixes prompt lengths (one generate call per length).
# The recipe search then tried, on the validation questions:
#
# - **questions at the frontier** only (section 3), against the whole pool;
# - **dynamic sampling** (DAPO; Yu et al., 2025): a group whose answers all score the same is dropped and more
#   questions are drawn (up to `max_draws` times per step) until the step has its groups with a signal;
# - a larger learning rate;
# - a pool in which most questions are about chapter 7's procedure words (made-up words, letter strings), the
#   records that taught chapter 7's model to handle words it never saw.
#
# In every variant the step's answers are split into **minibatches** of the offline methods' batch size, so
# GRPO takes the same optimizer steps over the same number of sequences; after the first minibatch the policy
# has moved, so its ratio to the sampling policy leaves 1 and the clip could bind (the table shows whether it
# did).

# %%
grpo_variants = {name: row for name, row in SEARCH["runs"].items()
                 if row.get("method") == "GRPO" and row["recipe"]["reward"] == "exact"}
def last_mean(values, k=10):
    values = [v for v in values if v is not None]
    return sum(values[-k:]) / len(values[-k:]) if values else float("nan")


grpo_table = pd.DataFrame({"start": validation_row(start_validation),
                           **{name: {**validation_row(row), "groups with a signal per step": sum(
                               row["history"]["groups_used"]) / len(row["history"]["groups_used"]),
                              "KL at the end": last_mean(row["history"]["kl"]),
                              "clipped share at the end": last_mean(row["history"]["clipped"]),
                              "seconds": row["seconds"]} for name, row in grpo_variants.items()}}).T
best_grpo = max(grpo_variants, key=lambda n: mean_validation(grpo_variants[n]))
chosen_recipe = grpo_variants[best_grpo]["recipe"]
same = all(getattr(runs.RewardRecipe(), k) == chosen_recipe[k]
           for k in ("grpo_lr", "max_draws", "frontier_only", "procedure_share", "kl_coef", "clip_eps"))
print(f"chosen on validation: {best_grpo}; the chapter's recipe (default profile) is the same: {same}")
display(grpo_table)
grpo_vs_start = compare([mean_validation(grpo_variants[best_grpo])], [mean_validation(start_validation)],
                        name_a=best_grpo, name_b="the start", n_a=validation_size, n_b=validation_size,
                        what="validation questions")
display(Markdown(f"On both validation sets together, {grpo_vs_start.phrase}."))

# %% [markdown]
# The chapter's run, with greedy exact match on half the validation questions measured as it trains (as
# nanochat's reinforcement learning does). The reference for the KL penalty is the frozen starting model.

# %%
grpo_records = frontier_pool if RECIPE.frontier_only else pool
track = runs.greedy_tracker(tokenizer, sets["validation"][::2], MAX_NEW)
validation_start = track(start_model)["validation"]
grpo_model, grpo_history = runs.run_grpo(start_model, reference_model, tokenizer, grpo_records, RECIPE, metrics_fn=track)
scores["GRPO"] = ch7_runs.score_sets(grpo_model, tokenizer, sets, max_new=MAX_NEW)
print(f"{len(grpo_history.steps)} GRPO sampling steps in {grpo_history.seconds:.0f} s; groups with a signal per step: "
      f"{sum(grpo_history.groups_used) / len(grpo_history.groups_used):.1f} of {RECIPE.questions}, "
      f"draws per step: {sum(grpo_history.draws) / len(grpo_history.draws):.2f}")


def smooth(values, k=10):
    values = [v for v in values if v is not None and v == v]  # steps without an update have no KL
    return [sum(values[max(0, i - k + 1):i + 1]) / len(values[max(0, i - k + 1):i + 1]) for i in range(len(values))]


fig, (ax_r, ax_v, ax_kl) = plt.subplots(1, 3, figsize=(13, 3.6))
ax_r.plot(smooth(grpo_history.reward), label="mean reward")
ax_r.plot(smooth(grpo_history.right), label="share of right samples")
ax_r.set(xlabel="GRPO sampling step", ylabel="mean of the last 10 steps", title="reward on the sampled answers")
ax_r.legend(fontsize=8)
ax_v.plot([0, *grpo_history.eval_steps], [validation_start, *(e["validation"] for e in grpo_history.evals)], marker="o")
ax_v.set(xlabel="GRPO sampling step", ylabel="greedy exact match", title="validation questions (supported)")
ax_kl.plot(smooth(grpo_history.kl), label="KL to the start (k3, per token)")
ax_kl.plot(smooth(grpo_history.clipped), label="share of clipped tokens")
ax_kl.set(xlabel="GRPO sampling step", title="how far the policy moved")
ax_kl.legend(fontsize=8)
fig.suptitle("Figure 3: GRPO, step by step", y=1.02)
plt.tight_layout()
plt.show()

# %%
per_family = pd.DataFrame({name: sc["test"]["table"]["exact_match"] for name, sc in scores.items()})
supported_families = [f for f in per_family.index if f in SUPPORTED]
family_change = pd.DataFrame({"start": per_family.loc[supported_families, "start"],
                              "GRPO": per_family.loc[supported_families, "GRPO"]})
family_change["change (points)"] = 100 * (family_change["GRPO"] - family_change["start"])
worst_family = family_change["change (points)"].idxmin()
family_change

# %% [markdown]
# ## 7. Reward hacking: optimise a flawed reward
#
# A reward is a specification, and a policy optimises what it says, not what was meant. `unordered_reward` is
# a grader with a plausible bug: it compares the answer's *words* with the expected ones but forgets their
# order. For reverse_words and sort_numbers, a copy of the input, or any shuffle of it, is then paid like the
# right answer. The recipe search ran GRPO with this reward, everything else the chapter's recipe, and judged
# the greedy answers to the supported validation questions both ways:

# %%
copied = Answer("apple river stone", True)  # asked to reverse "apple river stone", the model copies it
print(f"a copied input: order-blind reward {unordered_reward(copied, 'stone river apple')}, "
      f"exact reward {reward(copied, 'stone river apple')}")
hack = SEARCH["runs"]["GRPO, order-blind reward"]
hacking = pd.DataFrame({when: {k: v for k, v in hack["flawed"][when].items() if k not in ("examples", "n")}
                        for when in ("start", "after")}).T.rename(index={"after": "after GRPO on the flawed reward"})
display(hacking)
n_hack = hack["flawed"]["after"]["n"]
exploited = compare([hack["flawed"]["after"]["paid but wrong"]], [hack["flawed"]["start"]["paid but wrong"]],
                    name_a="paid-but-wrong answers after GRPO on the flawed reward", name_b="at the start",
                    n_a=n_hack, n_b=n_hack, what="validation questions")
for example in hack["flawed"]["after"]["examples"][:5]:
    print(f"  {example['family']}: {example['input']!r} -> {example['answer']!r} (expected {example['expected']!r})")
fig, ax = plt.subplots(figsize=(7, 3.4))
ax.plot(smooth(hack["history"]["reward"]), label="flawed reward (what it optimises)")
ax.plot(smooth(hack["history"]["right"]), label="exact match (what we wanted)")
ax.set(xlabel="GRPO sampling step", ylabel="mean of the last 10 steps", title="Figure 4: optimising a flawed reward")
ax.legend()
plt.show()
display(Markdown(
    f"On the {n_hack} validation questions, {exploited.phrase}. " + (
        "The policy found the gap in the grader: it is paid for answers that are wrong. Measured with the reward "
        "we meant (exact match), the gap shows at once." if exploited.verdict == "beats" else
        "In this run the flawed reward was **not** exploited beyond the noise: answers with the right words in a "
        "wrong order are paid, but after the same budget as every other method the greedy answers had not moved "
        "towards them by more than the sampling of the questions explains. So this chapter does not show reward "
        "hacking; it shows how to look for it: judge the policy with the reward you meant, and count the answers "
        "the flawed reward pays but exact match does not.")))

# %% [markdown]
# ## 8. A fair comparison, over seeds
#
# Every method above took the same optimizer steps over the same number of sequences, with the same optimizer
# and schedule (one learning rate for the offline methods; GRPO's was chosen on validation). Would that budget spent on chapter 7's supervised loss, with the reference answers of the
# same pool questions, do as well? That is the baseline a reward method has to beat.

# %%
sft_model, sft_history = runs.run_more_sft(start_model, tokenizer, pool, RECIPE)
scores["more SFT"] = ch7_runs.score_sets(sft_model, tokenizer, sets, max_new=MAX_NEW)
seconds = {"best-of-k": bok_history.seconds + sampling_seconds, "DPO": dpo_history.seconds + sampling_seconds,
           "GRPO": grpo_history.seconds + sampling_seconds, "more SFT": sft_history.seconds}
table = pd.DataFrame({name: {**{f"{s} (supported)": sc[s]["supported"] for s in ch7_runs.SETS},
                             "format compliance": sc["test"]["format_compliance"],
                             "training seconds": seconds.get(name, 0.0)}
                      for name, sc in scores.items()}).T
table

# %%
per_family = pd.DataFrame({name: sc["test"]["table"]["exact_match"] for name, sc in scores.items()})
fig, ax = plt.subplots(figsize=(11, 4))
per_family.loc[supported_families].plot.bar(ax=ax, width=0.8)
ax.set(ylabel="exact match, test questions", ylim=(0, 1.15),
       title="Figure 5: each method per supported family (greedy answers)")
ax.legend(ncols=len(scores), loc="upper center", fontsize=8, frameon=False)
plt.xticks(rotation=20, ha="right")
plt.tight_layout()
plt.show()

# %% [markdown]
# One run per method says little: a second seed moves every number. The seed-spread command ran each method
# with the chapter's recipe once per seed (its own pool sampling, its own order), from the same starting
# model, and scored the test questions. A lead counts only beyond twice the standard error of the
# difference, from the seeds and from the sampling of the test questions (`gpt2_core.finetuning.compare`).

# %%
n_test = SPREAD["n"]["test"]
spread_table = pd.DataFrame({m: {"mean": r["test"]["mean"], "std over seeds": r["test"]["std"],
                                 "seeds": len(r["test"]["values"]), "held-out words": r["heldout"]["mean"],
                                 "new words": r["new"]["mean"], "format compliance": r["format_compliance"]["mean"]}
                             for m, r in SPREAD["methods"].items()}).T
print(f"test questions (supported) behind each score: {n_test}; start: {SPREAD['start_exact_match_supported']:.1%}; "
      f"measured in {SPREAD['seconds'] / 60:.0f} min ({SPREAD['torch_threads']} torch threads per process)")
display(spread_table)
start_value = [SPREAD["start_exact_match_supported"]]
conclusions = [compare(SPREAD["methods"][m]["test"]["values"], start_value, name_a=m, name_b="the start",
                       n_a=n_test, n_b=n_test, what="test questions") for m in runs.SPREAD_METHODS]
conclusions.append(compare(SPREAD["methods"]["GRPO"]["test"]["values"], SPREAD["methods"]["more SFT"]["test"]["values"],
                           name_a="GRPO", name_b="more SFT", n_a=n_test, n_b=n_test, what="test questions"))
display(Markdown("Over the seeds: " + "; ".join(c.phrase for c in conclusions) + "."))

# %% [markdown]
# ## 9. pass@1 and pass@k after GRPO, and the families that need knowledge
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
knowledge_table = pd.DataFrame(pass_at_k_by_family(knowledge, knowledge_groups, ks=(1, K))).T
display(knowledge_table)
display(Markdown(
    f"The starting model's pass@{K} on the knowledge families ranges from {knowledge_table[f'pass@{K}'].min():.0%} to "
    f"{knowledge_table[f'pass@{K}'].max():.0%}: some of its samples do contain the fact, so a reward could in "
    "principle raise them. This chapter's pool holds no knowledge questions (none are left that were not asked "
    "before), so it does not test whether a reward teaches them; GRPO's exact match on the knowledge families moved "
    f"from {scores['start']['test'].get('knowledge', float('nan')):.1%} to "
    f"{scores['GRPO']['test'].get('knowledge', float('nan')):.1%} without training on any."))

# %% [markdown]
# ## 10. What this run shows
#
# The aims set for this chapter: GRPO at least 3 points above the start on the supported test questions,
# with the gain larger than twice its standard deviation over seeds, and above the same budget of supervised
# fine-tuning; DPO no more than 1 point below the start; no supported family more than 3 points below the start
# after GRPO; format compliance of 95% or more; and the notebook within 15 minutes. The next cell checks them
# against the seed spread and this run.

# %%
start_s, grpo_s, sft_s, dpo_s = (scores[n]["test"]["supported"] for n in ("start", "GRPO", "more SFT", "DPO"))
grpo_spread = SPREAD["methods"]["GRPO"]["test"]
gain = grpo_spread["mean"] - SPREAD["start_exact_match_supported"]
minutes = (time.perf_counter() - NOTEBOOK_START) / 60
results_kl = smooth(grpo_history.kl)[-1] if smooth(grpo_history.kl) else 0.0
aims = [(f"GRPO >= start + 3 points over seeds ({grpo_spread['mean']:.1%} vs {SPREAD['start_exact_match_supported']:.1%},"
         f" gain {100 * gain:+.1f} points, 2 std {200 * grpo_spread['std']:.1f})",
         gain >= 0.03 and gain > 2 * grpo_spread["std"]),
        (f"GRPO above more SFT at the same budget: {conclusions[-1].phrase}", conclusions[-1].verdict == "beats"),
        (f"DPO >= start - 1 point over seeds ({SPREAD['methods']['DPO']['test']['mean']:.1%})",
         SPREAD["methods"]["DPO"]["test"]["mean"] >= SPREAD["start_exact_match_supported"] - 0.01),
        (f"no supported family more than 3 points below the start after GRPO (worst: {worst_family}, "
         f"{family_change.loc[worst_family, 'change (points)']:+.1f})", family_change["change (points)"].min() >= -3),
        (f"GRPO format compliance >= 95% ({scores['GRPO']['test']['format_compliance']:.1%})",
         scores["GRPO"]["test"]["format_compliance"] >= 0.95),
        (f"notebook within 15 minutes (so far {minutes:.1f} min)", minutes <= 15)]
for aim, met in aims:
    print(f"{'met   ' if met else 'missed'}  {aim}")
validation_curve = [validation_start, *(e["validation"] for e in grpo_history.evals)]
display(Markdown(
    f"Over {len(grpo_spread['values'])} seeds GRPO moved the supported test score by {100 * gain:+.1f} points (standard "
    f"deviation {100 * grpo_spread['std']:.1f}). What bounds it, measured in this run: against the greedy answers "
    f"the headroom is {passk_before - greedy_before['supported']:.1%} (section 2): a policy whose greedy answer "
    f"were always the best of its {K} samples would gain that much; {len(frontier_pool) / len(pool):.0%} of the pool's "
    f"questions are at the frontier (section 3); on the validation questions the greedy exact match went from "
    f"{validation_curve[0]:.1%} to {validation_curve[-1]:.1%} (highest {max(validation_curve):.1%}) while the KL to the "
    f"start grew to {results_kl:.3f} per answer token."))

# %%
results = {
    "seconds": round(time.perf_counter() - NOTEBOOK_START, 1),
    "k": K,
    "start_exact_match_supported": start_s,
    "best_of_k_exact_match_supported": scores["best-of-k"]["test"]["supported"],
    "dpo_exact_match_supported": dpo_s,
    "grpo_exact_match_supported": grpo_s,
    "sft_more_exact_match_supported": sft_s,
    "grpo_heldout_words_exact_match_supported": scores["GRPO"]["heldout"]["supported"],
    "grpo_fresh_exact_match_supported": scores["GRPO"]["fresh"]["supported"],
    "grpo_format_compliance": scores["GRPO"]["test"]["format_compliance"],
    "grpo_kl_to_start": results_kl,
    "grpo_seed_mean_exact_match_supported": grpo_spread["mean"],
    "dpo_chosen_less_likely_share": end["train chosen_down"],
    "pass_at_1_before": pass1_before, "pass_at_k_before": passk_before,
    "pass_at_1_after": pass1_after, "pass_at_k_after": passk_after,
    "flawed_reward_paid_but_wrong": hack["flawed"]["after"]["paid but wrong"],
    "conclusions": [c.record() for c in [*conclusions, exploited]],
}
print(write_results(8, results))
print(f"profile {profile_name()}: notebook ran for {results['seconds'] / 60:.1f} min")

# %% [markdown]
# ## Summary: what you built
#
# - **Sampling** at a temperature turns one model into a distribution of answers; **pass@k** against the greedy
#   answer measures what it can do sometimes but not first: the headroom a reward can use.
# - A **verifiable reward** (exact match plus a small format term) needs no human and no reward model; only the
#   questions at the model's **frontier** (some answers right, some wrong) carry its signal.
# - **Best-of-k** keeps the right samples and imitates them; with an exact-match reward that is supervised
#   fine-tuning on the questions the model already answers sometimes.
# - **DPO** learns from pairs, relative to a frozen reference; its loss widens the margin, and the chosen answer
#   can still become less likely (likelihood displacement), which an NLL term on the chosen answer counters.
# - **GRPO** samples as it learns, scores each answer against its own group, with PPO's clip and a KL penalty to
#   the start; groups without a signal are dropped and drawn again.
# - A **flawed reward** pays for answers nobody meant: judge the policy with the reward you meant, and count the
#   answers only the flawed one pays.
# - Every method is compared at the **same budget** with more supervised fine-tuning, over seeds, and a lead
#   counts only when it exceeds twice the standard error of the difference.
#
# **What comes next.** This is where the course stops: a GPT built from its tokenizer up, pretrained,
# fine-tuned to classify and to follow instructions, and trained further from rewards. The references below are
# where to go next.
#
# ## Exercises
#
# Each checked exercise checks itself against the package; reference solutions are in
# `gpt2_core/exercises/solutions/ch08.py`, for after you have tried.
#
# **1. pass@k from n samples.** Derive the unbiased estimate of section 2 and write `my_pass_at_k(n, c, k)` for
# $1 \le k \le n$: from $n$ sampled answers of which $c$ are right, the chance that $k$ of them drawn
# *without replacement* include a right one.
#
# **Predict first:** with $n = 10$ answers of which $c = 3$ are correct, what are pass@1 and pass@5? Is
# $1 - (1 - c/n)^k$ the same thing?

# %%
from gpt2_core.exercises import check_exercise  # noqa: E402


def my_pass_at_k(n: int, c: int, k: int) -> float:
    raise NotImplementedError  # your code here


_ = check_exercise("ch08.pass_at_k", my_pass_at_k)

# %% [markdown]
# **2. How hard does a pair pull?** A pair's DPO loss is $-\log\sigma(\beta m)$, with $m$ its margin. Write
# `my_dpo_pull(margin, beta)`: for each pair, minus the derivative of its loss with respect to the chosen
# answer's log-probability (the margin grows one for one with it), that is, how hard gradient descent pulls the
# chosen answer up.
#
# **Predict first:** does a pair that is already ranked right by a wide margin still pull? Which pairs pull
# hardest? Then use your answer to explain Figure 2: once most training pairs are ranked right, what is left
# pulling, and why can the chosen answers still lose probability? Why does a larger $\beta$ stop the pull sooner?

# %%
def my_dpo_pull(margin: torch.Tensor, beta: float) -> torch.Tensor:
    raise NotImplementedError  # your code here


_ = check_exercise("ch08.dpo_pull", my_dpo_pull)

# %% [markdown]
# **3. (Open) Why did count_words fall?** Draw every GRPO step's questions with one prompt length, as the
# chapter's first version did: write a sampler that picks a length, then questions of that length, and look at
# count_words' expected answers within one step. What does a group's advantage reward there, and what does the
# policy learn across steps? Then run `runs.run_grpo` with `RECIPE` and your sampler's questions, and compare
# the count_words row of the per-family table.
#
# **4. (Open) A reward that cannot be hacked.** Section 7's grader forgot the order of the words. Write a
# reward that pays only what chapter 7's exact match pays, yet gives a partial credit that GRPO can climb (a
# copy of the input must not earn it). Test it on the examples section 7 printed, then ask what a policy
# could still exploit in it.
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
# - R. Y. Pang et al. (2024). *Iterative Reasoning Preference Optimization*: DPO plus an NLL term on the chosen
#   answer.
# - N. Razin et al. (2024). *Unintentional Unalignment: Likelihood Displacement in Direct Preference
#   Optimization*; A. Pal et al. (2024). *Smaug: Fixing Failure Modes of Preference Optimisation with
#   DPO-Positive*: why the chosen answer can become less likely.
# - Z. Shao et al. (2024). *DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language
#   Models*: GRPO.
# - Q. Yu et al. (2025). *DAPO: An Open-Source LLM Reinforcement Learning System at Scale*: dynamic sampling.
# - DeepSeek-AI (2025). *DeepSeek-R1: Incentivizing Reasoning Capability in LLMs via Reinforcement Learning*:
#   GRPO with rewards a program checks.
# - M. Chen et al. (2021). *Evaluating Large Language Models Trained on Code* (Codex): the unbiased pass@k.
