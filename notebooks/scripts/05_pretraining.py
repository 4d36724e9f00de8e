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
# # Chapter 5 — Pretraining
#
# Chapter 4 ended with a GPT that has the right shape and no knowledge: its weights are random, so
# it babbles. In this chapter we **teach it English** (the English of two centuries of State of the
# Union addresses) by the one task GPT-2 was trained on: *predict the next token*.
#
# We will
#
# 1. turn "predict the next token" into a number to minimise, the **cross-entropy loss**, and read it
#    as a **perplexity**;
# 2. choose an optimizer (**AdamW**) and a **learning-rate schedule** (warmup, then cosine decay);
# 3. write a **training loop** by hand, then use the package's `train`, which adds gradient
#    clipping, evaluation, checkpoints, mixed precision, `torch.compile` and multi-GPU (DDP);
# 4. train **your own model** for a few minutes, and plot its loss curves;
# 5. set it beside the course's **reference model**, trained by the same code on the same text for seven
#    times as many steps (it read the training split about ten times), and beside a baseline that knows
#    only how common each token is;
# 6. **sample** from both: greedy decoding, temperature, top-k, top-p, and the KV cache that makes it fast;
# 7. **save and resume** a run exactly, and (when the network allows) compare with OpenAI's GPT-2.
#
# Reading: Radford et al. (2019), *Language Models are Unsupervised Multitask Learners* (GPT-2);
# Kingma & Ba (2015), *Adam*; Loshchilov & Hutter (2019), *Decoupled Weight Decay Regularization*
# (AdamW); Holtzman et al. (2020), *The Curious Case of Neural Text Degeneration* (top-p sampling).

# %%
import math
import time

notebook_start = time.perf_counter()  # the whole notebook's wall time goes into results/ch05.json

import matplotlib.pyplot as plt
import pandas as pd
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display

from gpt2_core.profile import data_dir, describe, get_device, pick, seed_everything

print(describe())
seed_everything(123)
device = get_device()

# %% [markdown]
# ## The recipe
#
# Everything your run is trained with lives in one place, `course_recipe()`, chosen by the profile.
#
# The tokenizer is **not** GPT-2's. The course's reference model (section 5) comes with its own
# 8,192-token byte-level BPE, trained with chapter 1's `BPETokenizer.train` on the training split of
# the corpus below. A small vocabulary suits a small model: the output layer has one row of weights per
# token, and at this width GPT-2's 50,257 rows would outweigh the rest of the model several times over
# (the cell below counts them), while most of its tokens never occur in this corpus. Measured at an
# equal CPU budget, a model with the small vocabulary also ends at a lower loss per byte (see
# `gpt2_core/course/reference.py` for the numbers). We use the same tokenizer here, so your model and the
# reference can be compared token for token. (Under the `gpt2` profile it is GPT-2's tokenizer and
# GPT-2's shape instead.)

# %%
from gpt2_core.pretraining.recipes import course_data, course_recipe, course_tokenizer

recipe = course_recipe()
tok = course_tokenizer()
print(f"tokenizer: {tok.n_vocab:,} tokens; <|endoftext|> = {tok.eot_token}")
shape = recipe.model_config(tok.n_vocab)
blocks = 12 * shape.emb_dim**2 * shape.n_layers  # the matrices of the blocks (chapter 4): 12 d^2 per block
for name, vocab in (("GPT-2's", 50257), ("the course's", tok.n_vocab)):
    head = vocab * shape.emb_dim
    print(f"with {name} {vocab:,} tokens: output layer {head:,} weights, {head / (head + blocks):.0%} of the "
          f"multiply-adds per token (the blocks' matrices: {blocks:,})")
print("'The Congress shall assemble' ->", [tok.decode([i]) for i in tok.encode("The Congress shall assemble")])
pd.DataFrame([recipe.to_dict()]).T.rename(columns={0: "value"})

# %% [markdown]
# The data: every State of the Union address from 1790 on, encoded with that tokenizer and cut
# into non-overlapping windows of `context_length` tokens (chapter 2). The validation split is held
# out **by address**: the most recent speeches, none of whose sentences the model sees in training.

# %%
from gpt2_core.text.corpus import VAL_FROM_YEAR

train_loader, val_loader = course_data(recipe, tok)
for name, loader in (("train", train_loader), ("val", val_loader)):
    ds = loader.dataset
    print(f"{name:>5}: {ds.num_tokens:>9,} tokens -> {len(ds):>6,} windows of {ds.context_length} tokens")
print(f"validation = addresses from {VAL_FROM_YEAR} on")

# %% [markdown]
# ## 1. The loss: cross-entropy over next tokens
#
# For every position $t$ the model outputs logits over the whole vocabulary; softmax turns them into
# probabilities $p(\cdot \mid x_{\le t})$. The target is the token that actually came next,
# $x_{t+1}$. The loss is the average negative log-probability the model gave the right answer:
#
# $$\mathcal{L} = -\frac{1}{BT}\sum_{b,t} \log p(x_{b,t+1} \mid x_{b,\le t}).$$
#
# Let us compute it by hand for one batch of an untrained model and check it against
# `F.cross_entropy` and the package's `lm_loss`, the one language-model loss every training run of the
# course uses (pretraining here, fine-tuning in chapters 6-8).

# %%
from gpt2_core.model.gpt import GPTModel
from gpt2_core.pretraining.step import lm_loss, perplexity

torch.manual_seed(recipe.seed)
model = GPTModel(recipe.model_config(tok.n_vocab)).to(device)
inputs, targets = next(iter(train_loader))
inputs, targets = inputs.to(device), targets.to(device)

with torch.no_grad():
    logits = model(inputs)                                   # (batch, tokens, vocab)
    log_probs = torch.log_softmax(logits, dim=-1)
    picked = log_probs.gather(-1, targets.unsqueeze(-1))     # log p(right token) at every position
    by_hand = -picked.mean()
    by_torch = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    by_package = lm_loss(model, (inputs, targets))
print(f"logits {tuple(logits.shape)}; loss by hand {by_hand:.4f}, F.cross_entropy {by_torch:.4f}, "
      f"lm_loss {by_package:.4f}")

# %% [markdown]
# **Why is the first loss close to ln(vocabulary size)?** A freshly initialised GPT-2 has small
# weights (standard deviation 0.02), so its logits are all near zero and softmax spreads the
# probability almost evenly: about $1/V$ per token for a vocabulary of $V$ tokens. The loss of a
# uniform guess is $-\log(1/V) = \ln V$.

# %%
# NBVAL_CHECK_OUTPUT
print(f"ln({tok.n_vocab}) = {math.log(tok.n_vocab):.4f}")

# %%
print(f"initial loss {by_package:.4f} vs ln(vocab) {math.log(tok.n_vocab):.4f}")

# %% [markdown]
# **Perplexity** is $e^{\mathcal{L}}$: the model is "as unsure as if it picked uniformly among
# that many tokens". An untrained model has a perplexity close to the vocabulary size; a perfect one, 1.

# %%
print(f"initial perplexity {perplexity(by_package.item()):,.0f}  (vocabulary: {tok.n_vocab:,})")

# %% [markdown]
# ## 2. Optimizer and learning-rate schedule
#
# We use **AdamW** (Kingma & Ba 2015; Loshchilov & Hutter 2019): Adam's per-parameter step sizes,
# with weight decay applied directly to the weights instead of through the gradient. Weight decay
# goes only on matrices (linear layers and the embeddings, which GPT-2 ties to the output layer);
# biases and LayerNorm parameters are left alone, since shrinking a LayerNorm gain towards zero would
# fight the normalisation. `make_optimizer` builds the two groups.
#
# The **learning rate** rises linearly for a few warmup steps (Adam's moment estimates are noisy at
# first, and big early steps can wreck a random network), then follows half a cosine down to a tenth
# of its peak, so training ends with small, careful steps.

# %%
from gpt2_core.pretraining.optim import lr_schedule, make_optimizer

lrs = [lr_schedule(s, recipe.max_steps, recipe.warmup_steps, recipe.lr, recipe.min_lr)
       for s in range(recipe.max_steps)]
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(range(recipe.max_steps), lrs)
ax.axvline(recipe.warmup_steps, color="gray", ls=":", label="end of warmup")
ax.set(xlabel="step", ylabel="learning rate", title="Figure 1: linear warmup + cosine decay")
ax.legend()
plt.show()
groups = make_optimizer(model, recipe.lr, recipe.weight_decay).param_groups
print({("decay" if g["weight_decay"] else "no decay"): sum(p.numel() for p in g["params"]) for g in groups})

# %% [markdown]
# ## 3. A training loop by hand
#
# One step of training is four lines: compute the loss, backpropagate, update, clear the gradients.
# Here are a few steps on our untrained model, with gradient clipping (if one batch produces a huge
# gradient, we shrink it to norm 1 instead of taking a wild step). Figure 2 draws the loop that
# `train` runs around these lines.

# %%
from gpt2_core.figures import cycle_diagram, save_figure

fig = cycle_diagram(["next batch\n(B, T) ids and targets", "forward:\nlogits (B, T, V) → loss",
                     "backward:\na gradient for\nevery parameter", "clip the gradient norm,\nAdamW step with\nthe lr of Figure 1",
                     "every eval_every steps:\nevaluate both splits;\nevery checkpoint_every:\nsave a checkpoint"],
                    "Figure 2: the training loop", centre="repeat\nmax_steps times")
plt.show()

# %%
optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
model.train()
batches = iter(train_loader)
hand_steps, hand_start = pick(tiny=3, default=8), time.perf_counter()
for step in range(hand_steps):
    x, y = next(batches)
    loss = lm_loss(model, (x, y))                # forward: how wrong are we?
    loss.backward()                              # backward: which way is less wrong?
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
    optimizer.step()                             # take a step that way
    optimizer.zero_grad()
    print(f"step {step + 1}: loss {loss.item():.3f}")
seconds_per_step = (time.perf_counter() - hand_start) / hand_steps  # section 4 predicts its run's time from it

# %% [markdown]
# That is the whole idea. A real run needs more around it, and `gpt2_core.pretraining.loop.train` adds it:
#
# - the **LR schedule** above and AdamW with decay groups;
# - **evaluation** every `eval_every` steps on fixed batches of both splits, with dropout off;
# - **tokens seen**, a progress bar, and gradient accumulation (several micro-batches per step);
# - **bf16 autocast** and **`torch.compile`** on a GPU (off on CPU, where they do not pay);
# - **checkpoints** and exact **resume**: the data order is a function of `(seed, step)`, so a resumed
#   run continues with the very batch it would have seen;
# - **DDP**: the same function runs under `torchrun`, one process per GPU (section 9).
#
# ## 4. Training your model
#
# Now the real run, with the recipe. The bar shows progress, and a line is printed at every
# evaluation. **This cell takes many minutes at the default profile on 2 CPU cores**, the longest wait of
# the chapter: it starts by predicting its time from the pace of section 3's hand-written steps, and ends
# by printing the time it took.

# %%
from gpt2_core.pretraining.loop import train

torch.manual_seed(recipe.seed)
model = GPTModel(recipe.model_config(tok.n_vocab)).to(device)
print(f"{model.num_parameters():,} parameters")
expected = recipe.max_steps * seconds_per_step
print(f"expected: about {f'{expected / 60:.0f} min' if expected >= 90 else f'{expected:.0f} s'} for {recipe.max_steps} "
      f"steps at section 3's {seconds_per_step:.2f} s per step, plus the evaluations")
start = time.perf_counter()
history = train(model, train_loader, val_loader, recipe.train_config())
train_seconds = time.perf_counter() - start
print(f"trained {len(history.steps)} steps, {history.tokens_seen:,} tokens in {train_seconds:.1f} s "
      f"({history.tokens_per_second:,.0f} tokens/s)")

# %% [markdown]
# ### Loss curves
#
# Figure 3 shows the run step by step: the loss of each training batch (noisy: every batch is different
# text), the loss on fixed samples of both splits at each evaluation, and beside it the learning rate
# the schedule of section 2 gave each step. The top axis reads the steps as **tokens seen**, the measure
# that lets runs with different batch sizes be compared (Figure 4 uses it).

# %%
out_dir = data_dir() / "outputs"
out_dir.mkdir(parents=True, exist_ok=True)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.1))
fig.suptitle("Figure 3: your run, step by step")
colour = {"batch": "0.6", "train": "C0", "validation": "C1"}  # the same colour for a split in both panels
ax1.plot(history.steps, history.losses, color=colour["batch"], alpha=0.5, label="training batch")
ax1.plot(history.eval_steps, history.train_losses, "o-", color=colour["train"], label="train split (eval)")
ax1.plot(history.eval_steps, history.val_losses, "s-", color=colour["validation"], label="validation split")
ax1.axhline(math.log(tok.n_vocab), color="gray", ls=":", label=f"ln({tok.n_vocab}): uniform guess")
ax1.set(xlabel="optimizer step", ylabel="cross-entropy loss (nats/token)", title="the loss falls")
ax1.legend()
ax2.plot(history.steps, history.lrs, color="C2")
ax2.set(xlabel="optimizer step", ylabel="learning rate", title="the learning rate: warmup, then decay")
ax2b = ax2.secondary_xaxis("top", functions=(lambda s: s * history.tokens[0] / 1e6,  # the steps as tokens seen
                                             lambda t: t * 1e6 / history.tokens[0]))
ax2b.set_xlabel("tokens seen (millions)", fontsize=9)
fig.tight_layout()
save_figure(fig, out_dir / "ch05_loss.png")  # atomic: an interrupted run leaves no half image
plt.show()
pd.DataFrame({"step": history.eval_steps, "tokens seen": history.eval_tokens,
              "train loss": history.train_losses, "val loss": history.val_losses}).round(3)

# %% [markdown]
# The numbers above come from a fixed sample of evaluation batches (cheap enough to repeat during
# training). For the final figures we score the **whole** validation split.
#
# ## 5. Your model beside the reference model
#
# A loss means little on its own. Two things to hold it against:
#
# - a **unigram baseline**: a "model" that ignores the context and always predicts each token with
#   its frequency in the training split. Anything that uses context must beat it;
# - the course's **reference model**, shipped in `data/course-model/`. It has exactly your model's
#   shape and tokenizer and was trained by the same `train` function, but on 20M tokens (about ten
#   passes over the training split; `python -m gpt2_core.course.reference --out DIR` re-makes it). Chapters
#   6 and 7 start from it.
#
# Losses in nats per token compare models that share a tokenizer. To compare across tokenizers (say,
# with GPT-2 below) we also report **bits per byte**: the total surprise in bits divided by the
# bytes of text the predicted tokens stand for. A tokenizer with longer tokens has a higher loss per
# token but needs fewer tokens, and bits per byte cancels that out.

# %%

from gpt2_core.text.corpus import sotu_text
from gpt2_core.text.windows import encode_text
from gpt2_core.pretraining.step import bits_per_byte, token_byte_lengths
from gpt2_core.course.reference import load_reference, reference_history, reference_info

val_ids = torch.tensor(encode_text(sotu_text("val"), tok))
score_windows = pick(tiny=40, default=None)  # the tiny profile scores a slice to stay fast
mine = bits_per_byte(model, val_ids, tok, recipe.context_length, max_windows=score_windows)

ref_model, ref_tok = load_reference(device)
ref_meta = reference_info()
ref_val_ids = torch.tensor(encode_text(sotu_text("val"), ref_tok))
ref = bits_per_byte(ref_model, ref_val_ids, ref_tok, max_windows=score_windows)

# unigram: p(token) = (count in the training split + 1) / (total + vocabulary), whatever came before
train_ids = torch.tensor(encode_text(sotu_text("train"), tok))
counts = torch.bincount(train_ids, minlength=tok.n_vocab).double() + 1
log_p = (counts / counts.sum()).log()
targets_scored = val_ids[1: mine["tokens"] + 1]
unigram_nats = -log_p[targets_scored].mean().item()
unigram_bpb = unigram_nats * len(targets_scored) / math.log(2) / int(token_byte_lengths(tok)[targets_scored].sum())

comparison = pd.DataFrame(
    {"tokens trained on": [0, history.tokens_seen, ref_meta["trained"]["tokens"]],
     "val loss (nats/token)": [unigram_nats, mine["loss"], ref["loss"]],
     "val perplexity": [math.exp(unigram_nats), math.exp(mine["loss"]), math.exp(ref["loss"])],
     "val bits/byte": [unigram_bpb, mine["bits_per_byte"], ref["bits_per_byte"]]},
    index=["unigram baseline", "your model", "reference model"])
comparison.round(3)

# %% [markdown]
# Figure 4 puts both runs on one axis, loss against tokens seen, in bits per byte so that the curves
# stay comparable under any profile's tokenizer. Each evaluation scored a fixed sample of windows of
# one split, so its loss per token is converted with the bytes per token of *those* windows: the
# training split's older speeches have longer tokens than the validation split's, and one factor for
# both would misplace the training curve. Your run follows the start of the reference's curve: the same
# code and recipe family, stopped earlier.

# %%
from gpt2_core.pretraining.batches import eval_batches
from gpt2_core.pretraining.recipes import REFERENCE_RECIPE

token_bytes = token_byte_lengths(tok)  # the reference model has the same tokenizer as yours (tiny, default)


def bits_per_byte_factor(dataset, batch_size, n_batches):
    """nats/token -> bits/byte for the evaluation windows of `dataset` that a run's history scored."""
    targets = torch.cat([y.flatten() for _, y in eval_batches(dataset, batch_size, n_batches)])
    return targets.numel() / int(token_bytes[targets].sum()) / math.log(2)


ref_train, ref_val = course_data(REFERENCE_RECIPE, tok)  # the reference's own windows of each split
factor = {"ref train": bits_per_byte_factor(ref_train.dataset, REFERENCE_RECIPE.batch_size, REFERENCE_RECIPE.eval_batches),
          "ref val": bits_per_byte_factor(ref_val.dataset, REFERENCE_RECIPE.batch_size, REFERENCE_RECIPE.eval_batches),
          "your val": bits_per_byte_factor(val_loader.dataset, recipe.batch_size, recipe.eval_batches)}
print("bytes per token of the scored windows: " + ", ".join(f"{k} {1 / (v * math.log(2)):.2f}" for k, v in factor.items()))
ref_history = reference_history()
fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(ref_history["eval_tokens"], [v * factor["ref val"] for v in ref_history["val_losses"]], "s-",
        color="C0", label="reference model: validation")
ax.plot(ref_history["eval_tokens"], [v * factor["ref train"] for v in ref_history["train_losses"]], ":",
        color="C0", label="reference model: train")
ax.plot(history.eval_tokens, [v * factor["your val"] for v in history.val_losses], "o-", color="C1",
        label="your model: validation")
ax.axhline(unigram_bpb, color="gray", ls="--", label="unigram baseline")
ax.set(xscale="log", xlabel="tokens seen (log scale)", ylabel="bits per byte",
       title="Figure 4: both runs' losses against tokens seen")
ax.legend()
fig.tight_layout()
save_figure(fig, out_dir / "ch05_reference.png")
plt.show()

# %%
last = len(ref_history["eval_steps"]) - 1
gap_ref = ref_history["val_losses"][last] - ref_history["train_losses"][last]
gap_mine = history.val_losses[-1] - history.train_losses[-1]
print(f"train/validation gap at the end (nats/token): reference {gap_ref:.3f}, your model {gap_mine:.3f}")
print(f"validation addresses: {VAL_FROM_YEAR} on; training addresses: before {VAL_FROM_YEAR}")
print(f"passes over the training split: reference {ref_meta['trained']['tokens'] / train_loader.dataset.num_tokens:.1f}, "
      f"your model {history.tokens_seen / train_loader.dataset.num_tokens:.1f}; parameters {model.num_parameters():,}, "
      f"training tokens {train_loader.dataset.num_tokens:,}")

# %% [markdown]
# **The gap between training and validation loss.** Part of it is not overfitting at all: the
# validation addresses are the most recent ones, and their topics and words (the economy of the
# 2000s, terrorism, the internet, health care) are rarer in two centuries of older speeches, so even
# a model that never saw a training sentence twice would find them harder. The rest is memorising:
# the reference model read its training text many times over (printed above), and a model with
# millions of parameters can start to remember phrases of a corpus of a few million tokens. What the
# reference's own history shows of it (Figure 4, on the same evaluation windows at every point):

# %%
ref_val, ref_train_loss = ref_history["val_losses"], ref_history["train_losses"]
best = min(range(len(ref_val)), key=ref_val.__getitem__)
stopped_early = best < len(ref_val) - 1 and ref_val[best] < ref_val[-1]
display(Markdown(
    f"The reference's training loss went from {ref_train_loss[0]:.3f} to {ref_train_loss[-1]:.3f} nats per token "
    f"between its first and last evaluations; its validation loss reached its lowest, {ref_val[best]:.3f}, after "
    f"{ref_history['eval_tokens'][best] / 1e6:.1f}M tokens (evaluation {best + 1} of {len(ref_val)}) and ended at "
    f"{ref_val[-1]:.3f}. "
    + ("So this run, stopped there, would have ended at a lower validation loss on these windows: from there on the "
       "extra passes mostly memorised. " if stopped_early else "It was still falling at the end, so stopping earlier "
       "would not have lowered it. ")
    + "Dropout, the other usual remedy, is off in this recipe and was not measured here. The recipe was kept "
    "because what chapters 6 and 7 need from the model is features that transfer to new tasks, and those are "
    "measured there, not here."))

# %% [markdown]
# Your model, after fewer passes, has had less chance to memorise; compare the two gaps printed above.

# %% [markdown]
# ## 6. Sampling text
#
# The model gives a probability for every possible next token. How we *choose* one matters as much
# as the model:
#
# - **greedy** (`temperature=0`): always the most likely token. Deterministic, and it soon loops.
# - **temperature** $T$: sample from $\mathrm{softmax}(\text{logits}/T)$; $T<1$ sharpens, $T>1$ flattens.
# - **top-k**: sample only among the $k$ most likely tokens.
# - **top-p** (nucleus; Holtzman et al. 2020): sample among the smallest set of top tokens whose
#   probabilities add up to $p$, so the candidate set shrinks when the model is sure and grows when
#   it is not.
#
# First, what the three rules do to one next-token distribution of the reference model (Figure 5):
# temperature on the most likely tokens, what top-k and top-p keep of them at $T = 1$, and how much
# probability the most likely tokens hold over the whole vocabulary.

# %%
from gpt2_core.figures import plot_sampling
from gpt2_core.model.generation import generate, generate_text, text_to_ids

prompt = "The state of the Union is"
with torch.no_grad():
    next_logits = ref_model(text_to_ids(prompt, ref_tok).to(device))[0, -1]
fig = plot_sampling(next_logits, lambda i: repr(ref_tok.decode([i])), temperatures=(0.5, 1.0, 2.0), top_k=5, top_p=0.9,
                    title=f"Figure 5: temperature, top-k and top-p on the next token after {prompt!r}")
plt.show()

# %% [markdown]
# And text from each strategy, from your model and from the reference (a seeded generator makes the
# samples repeatable):

# %%
n_new = pick(tiny=10, default=40)
strategies = {"greedy": dict(temperature=0.0),
              "temperature 0.8": dict(temperature=0.8),
              "top-k 40, T=1": dict(temperature=1.0, top_k=40),
              "top-p 0.9, T=1": dict(temperature=1.0, top_p=0.9)}
for name, sampling in strategies.items():
    for who, (m, t) in {"your model": (model, tok), "reference": (ref_model, ref_tok)}.items():
        g = torch.Generator(device=device).manual_seed(123)
        text = generate_text(m, t, prompt, n_new, generator=g, **sampling)
        print(f"--- {name}, {who}\n{text!r}\n")

# %% [markdown]
# ### The KV cache
#
# Without a cache, every new token re-runs the model over the whole sequence. With one, each
# attention layer keeps the keys and values it already computed, and a step only processes the newest
# token (chapter 3). Same tokens, less work:

# %%
ids = text_to_ids(prompt, tok).to(device)
n_gen = min(pick(tiny=20, default=100), model.cfg.context_length - ids.shape[1])
timings, outputs = {}, {}
for use_cache in (False, True):
    start = time.perf_counter()
    outputs[use_cache] = generate(model, ids, n_gen, use_cache=use_cache)
    timings[use_cache] = time.perf_counter() - start
same = torch.equal(outputs[False], outputs[True])

# %%
# NBVAL_CHECK_OUTPUT
print("same tokens with and without the KV cache:", same)

# %%
print(f"{n_gen} tokens: recompute {timings[False]:.3f} s, KV cache {timings[True]:.3f} s "
      f"-> {timings[False] / timings[True]:.1f}x faster")

# %% [markdown]
# ## 7. Checkpoints and exact resume
#
# Long runs get interrupted. A checkpoint (`gpt2_core.pretraining.checkpoint`) stores the weights, the optimizer's
# moments, the schedule's position and the random-number states, as safetensors + JSON (no pickle).
# Because `train` derives the data order from `(seed, step)`, a resumed run sees the same batches and
# makes the same updates. We check it on a short run: 6 steps straight, versus 3 steps, save, then a
# *fresh* model resumed to 6.
#
# On a CPU the two runs are **bitwise identical**: every operation is deterministic and the random
# states are restored. On a GPU with bf16 autocast and `torch.compile` they agree only to a
# tolerance: some CUDA kernels add numbers in a different order from run to run (floating-point
# addition is not associative), and a compiled graph may fuse operations differently from the eager
# one that ran before the checkpoint. So the check below asks for equality on CPU and a small
# tolerance elsewhere.

# %%
import tempfile

short = dict(max_steps=6, warmup_steps=1, eval_every=0, eval_batches=1, progress=False)
cfg = recipe.model_config(tok.n_vocab)
torch.manual_seed(0)
straight = train(GPTModel(cfg).to(device), train_loader, val_loader, recipe.train_config(**short))
with tempfile.TemporaryDirectory() as tmp:
    torch.manual_seed(0)
    train(GPTModel(cfg).to(device), train_loader, val_loader,
          recipe.train_config(**short, out_dir=f"{tmp}/run", stop_at_step=3), tokenizer=tok)
    torch.manual_seed(999)  # a different random init: the checkpoint must overwrite all of it
    resumed = train(GPTModel(cfg).to(device), train_loader, val_loader,
                    recipe.train_config(**short, resume_from=f"{tmp}/run"), tokenizer=tok)
print("straight run, steps 4-6:", [round(v, 5) for v in straight.losses[3:]])
print("resumed run,  steps 4-6:", [round(v, 5) for v in resumed.losses[3:]])
largest_diff = max(abs(a - b) for a, b in zip(straight.losses, resumed.losses, strict=True))
tolerance = 0.0 if device.type == "cpu" else 2e-2

# %%
print(f"resumed run equals the uninterrupted one on {device.type} "
      f"(largest loss difference {largest_diff:.1e}, allowed {tolerance:g}):", largest_diff <= tolerance)

# %% [markdown]
# Your model can be saved the same way and loaded back, here into `data/checkpoints/`:

# %%
from gpt2_core.pretraining.checkpoint import load_checkpoint, save_checkpoint
from gpt2_core.pretraining.recipes import learner_checkpoint_dir

my_dir = learner_checkpoint_dir()  # where GPT2_COURSE_BASE_MODEL=chapter5 finds it (section 10)
save_checkpoint(my_dir, model, step=len(history.steps), extra={"history": history.to_dict()}, tokenizer=tok)
reloaded = load_checkpoint(my_dir, map_location=device, restore_rng=False)["model"]
again = bits_per_byte(reloaded, val_ids, tok, recipe.context_length, max_windows=score_windows)
print(f"reloaded from {my_dir.relative_to(data_dir().parent)}: val loss {again['loss']:.4f} "
      f"(before saving {mine['loss']:.4f})")

# %% [markdown]
# ## 8. OpenAI's GPT-2
#
# OpenAI trained the 124M-parameter GPT-2 on 40 GB of web text (Radford et al. 2019). When its
# weights can be downloaded (chapter 4's `from_pretrained`), we can score it on our validation
# split, in bits per byte since its tokenizer differs, and let it write. Offline, we note it and move on.

# %%
from gpt2_core.model.hf_weights import WeightsDownloadError, from_pretrained
from gpt2_core.text.ranks import gpt2_encoding

try:
    gpt2 = from_pretrained("gpt2").to(device).eval()
except (WeightsDownloadError, OSError) as err:
    gpt2 = None
    print(f"OpenAI's GPT-2 is not available here, skipping this comparison.\n({str(err)[:200]})")
if gpt2 is not None:
    enc = gpt2_encoding()
    theirs = bits_per_byte(gpt2, torch.tensor(encode_text(sotu_text("val"), enc)), enc, 1024, batch_size=4)
    print(f"GPT-2 124M on our validation split: {theirs['bits_per_byte']:.3f} bits/byte "
          f"(reference model {ref['bits_per_byte']:.3f}, your model {mine['bits_per_byte']:.3f})")
    print(generate_text(gpt2, enc, prompt, 30, generator=torch.Generator(device=device).manual_seed(1),
                        temperature=0.8, top_k=40))

# %% [markdown]
# ## 9. More than one GPU: DDP
#
# `train` also runs under PyTorch's launcher with **DistributedDataParallel**: each process holds a
# copy of the model and trains on its own slice of every global batch, gradients are averaged across
# processes after `backward`, and only rank 0 prints and writes checkpoints. On a machine with two GPUs:
#
# ```bash
# torchrun --nproc_per_node=2 -m gpt2_core.course.train --preset default --max-steps 700 --out runs/sotu
# ```
#
# (`--batch-size` is per process; on CPU the same command uses the gloo backend.) The package's tests
# check that two processes with batch *B* give the same losses as one process with batch *2B*.
# `python -m gpt2_core.course.train --help` lists every option, including `--resume`, `--grad-accum`,
# `--bf16` and `--compile`.
#
# ## 10. Try it: ask the models
#
# `ask(prompt)` continues any text with both models, your few-minute one and the reference, sampling
# with a temperature and top-k (section 6). Change the prompt and the settings and run the cell again:
# a speech opening, a sentence about railways or the telegraph, a question. Without `seed` every run
# draws new text. (Both models only ever read State of the Union addresses: they continue in that voice,
# whatever you ask.)

# %%
def ask(prompt: str, temperature: float = 0.8, top_k: int | None = 40, max_new_tokens: int = pick(tiny=10, default=40),
        seed: int | None = None) -> None:
    """Continue `prompt` with your model and with the reference model, and print both."""
    for who, (m, t) in {"your model": (model, tok), "reference model": (ref_model, ref_tok)}.items():
        g = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
        text = generate_text(m, t, prompt, max_new_tokens, temperature=temperature, top_k=top_k, generator=g)
        print(f"--- {who}\n{text}\n")


ask("The railroads of the country", seed=123)

# %% [markdown]
# Chapters 6 and 7 fine-tune the reference model. To fine-tune *your* model from this chapter instead,
# start Jupyter with `GPT2_COURSE_BASE_MODEL=chapter5` (this notebook saved it, with its tokenizer, in
# section 7). Expect it to do worse than the reference there, and perhaps worse than random weights:
# that is what a model trained for minutes measured in earlier rounds, and the reason the course ships
# a reference model.
#
# ## Results
#
# The chapter's headline numbers, computed above in this run, go to `results/ch05.json` (the README's
# results table is generated from it):

# %%
from gpt2_core.course.results import write_results

ch05 = {"seconds": round(time.perf_counter() - notebook_start, 1), "train_seconds": round(train_seconds, 1),
        "tokens_seen": history.tokens_seen, "val_loss": mine["loss"], "val_bits_per_byte": mine["bits_per_byte"],
        "reference_val_loss": ref["loss"], "reference_val_bits_per_byte": ref["bits_per_byte"],
        "unigram_bits_per_byte": unigram_bpb}  # unrounded: the README rounds them as this chapter prints them
print(write_results(5, ch05).relative_to(data_dir().parent))
# which model is ahead, read from this run's numbers (the whole validation split: its sampling error is far smaller
# than these gaps)
display(Markdown(
    f"In this run your model ended at {mine['bits_per_byte']:.3f} validation bits per byte, "
    f"{'below' if mine['bits_per_byte'] < unigram_bpb else 'not below'} the unigram baseline's {unigram_bpb:.3f}; "
    f"the reference model, trained on {ref_meta['trained']['tokens'] / history.tokens_seen:.1f} times as many tokens, "
    f"ended at {ref['bits_per_byte']:.3f}, {'lower' if ref['bits_per_byte'] < mine['bits_per_byte'] else 'no lower'} "
    "than yours."))
pd.Series(ch05)

# %% [markdown]
# ## Summary: what you built, and what comes next
#
# - Pretraining minimises the cross-entropy of the next token; an untrained model starts near
#   $\ln V$ for a vocabulary of $V$ tokens, and perplexity $e^{\mathcal{L}}$ reads the loss as
#   "choices per token". Bits per byte compares models across tokenizers.
# - AdamW with decay on matrices, linear warmup and cosine decay, and gradient clipping make the
#   optimisation stable; `train` adds evaluation, checkpoints with exact resume, bf16, compile and DDP.
# - A loss needs something to hold it against: the unigram baseline, which ignores the context, and the
#   reference model, the same shape trained by the same code on the same text for seven times as many
#   steps (the results cell above says where each ended in this run). Compute, not code or data, is what
#   differs between your model and the reference.
# - How we sample matters: greedy repeats itself, temperature trades safety for variety, top-k and
#   top-p cut off the unreliable tail; a KV cache gives the same tokens faster.
#
# **Next:** chapter 6 takes the reference model and teaches it a new task, telling spam from real
# e-mail, and measures what its pretraining is worth against a randomly initialised model.
#
# ## Exercises
#
# Each exercise checks itself against the package. Exercises 1 and 2 ask you to predict something this
# chapter did not work out, then to compute it; 3 and 4 ask for a new baseline and a training trick.
# Reference solutions are in `gpt2_core/exercises/solutions/ch05.py`, for after you have tried.
#
# **1. AdamW's first step.** Section 2 says warmup is there because Adam's moment estimates are noisy at
# first. Here is what that means. For every weight Adam keeps two running averages, both starting at
# zero: $m$ of the gradient $g$ and $v$ of its square, updated each step as
# $m \leftarrow \beta_1 m + (1-\beta_1) g$ and $v \leftarrow \beta_2 v + (1-\beta_2) g^2$. Because they start
# at zero, at step $t$ Adam divides them by $1-\beta_1^t$ and $1-\beta_2^t$ (the *bias correction*), giving
# $\hat m$ and $\hat v$, and moves the weight by $-\mathrm{lr}\cdot \hat m / (\sqrt{\hat v} + \epsilon)$
# (AdamW also shrinks it by its weight decay; leave that out here).
#
# **Predict first:** in the very first step, which weight moves further, one whose gradient is 10 or one
# whose gradient is `0.001`? Then write `my_adamw_first_step(grad, lr, betas, eps)`: how much every weight
# changes (new minus old) in AdamW's first step, worked out by hand, with no optimizer. The checker runs
# `torch.optim.AdamW` on the same gradients and compares.
#
# Once it passes, try `my_adamw_first_step(torch.tensor([10.0, 0.1, 1e-6, 1e-10]), recipe.lr, (0.9, 0.95), 1e-8)`
# (this run's peak rate, and the betas `make_optimizer` uses). What does the first step do to a weight whose
# gradient is pure noise? What would a first step at the full rate do to every weight of a freshly
# initialised network at once, and how does a linear warmup (Figure 1) change that?

# %%
from gpt2_core.exercises import check_exercise


def my_adamw_first_step(grad: torch.Tensor, lr: float, betas: tuple[float, float], eps: float) -> torch.Tensor:
    raise NotImplementedError  # your code here


_ = check_exercise("ch05.adamw_first_step", my_adamw_first_step)

# %% [markdown]
# **2. What does top-p keep?** Section 6 samples with `top_p=0.9`. `sample_next_token` first divides the
# logits by the temperature, then sorts the probabilities and keeps the most likely tokens, each one as
# long as the tokens ranked above it hold less than `top_p` of the probability, and samples among those.
# Write `my_nucleus(logits, temperature, top_p)`: the set of token ids (positions in the 1-D `logits`) that
# can still be drawn.
#
# **Predict first:** for the probabilities `[0.5, 0.3, 0.1, 0.06, 0.04]` and `top_p=0.85`, how many tokens
# are kept at `temperature=1`? At `temperature=0.5`?
#
# Once it passes, measure on a real distribution: `len(my_nucleus(next_logits.cpu(), t, 0.9))` for `t` in
# `(0.5, 1, 2)`, where `next_logits` are the reference model's logits after "The state of the Union is"
# (Figure 5). Does `top_p=0.9` keep nine in ten of the choices? What does the temperature do to the size of
# the nucleus, and what does that predict about text sampled at `temperature=2, top_p=0.9`?

# %%
def my_nucleus(logits: torch.Tensor, temperature: float, top_p: float) -> set[int]:
    raise NotImplementedError  # your code here


_ = check_exercise("ch05.nucleus", my_nucleus)

# %% [markdown]
# **3. A bigram baseline.** Section 5's unigram baseline ignores the context. One step up, a **bigram**
# model predicts the next token from the previous token alone. Write
# `my_bigram_loss(train_ids, val_ids, vocab_size, alpha)`: count on `train_ids` how often each token
# `b` follows each token `a`, and return the mean cross-entropy, in nats, of the `len(val_ids) - 1`
# next-token predictions of `val_ids`, with add-`alpha` smoothing:
# $p(b \mid a) = \dfrac{\mathrm{count}(a, b) + \alpha}{\mathrm{count}(a, \cdot) + \alpha V}$, where
# $\mathrm{count}(a, \cdot)$ is how many times `a` is *followed* by a token in `train_ids` (careful with
# the last one) and $V$ is `vocab_size`. Hint: a `(V, V)` table of counts, or a `Counter` of pairs;
# and what would a pair of `val_ids` never seen in training cost without smoothing? Once it passes,
# score section 5's split with it (`train_ids.tolist()`, `val_ids.tolist()`, `tok.n_vocab`) for `alpha`
# = `1`, `0.1` and `0.01`: where does it land between the unigram baseline and your model, and why does the
# smoothing matter so much when there are `tok.n_vocab` squared possible pairs?

# %%
def my_bigram_loss(train_ids: list[int], val_ids: list[int], vocab_size: int, alpha: float) -> float:
    raise NotImplementedError  # your code here


_ = check_exercise("ch05.bigram_loss", my_bigram_loss)

# %% [markdown]
# **4. Gradient accumulation.** When a batch does not fit in memory, split it into micro-batches, run
# forward and backward on each, and take one optimizer step: `backward()` *adds* to `.grad`. Write
# `my_accumulate(model, inputs, targets, micro_batches)`: split both tensors with
# `.tensor_split(micro_batches)` (the pieces may differ in size: 5 rows give 3 + 2), run the model once
# per piece (`model(x, targets=y)` returns that piece's mean loss), and leave in every parameter's
# `.grad` exactly the gradient of the *whole* batch's mean loss. Do not step or clear the gradients;
# the checker starts from empty ones and compares with one full-batch backward. Hint: the whole batch's
# loss is the mean over all its tokens; what share of it does one piece contribute? Section 3 lists
# gradient accumulation among `train`'s features: `train_step` in `gpt2_core/pretraining/step.py` divides
# each micro-batch's loss by their number, which is right there because its micro-batches are all the
# same size.

# %%
def my_accumulate(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor, micro_batches: int) -> None:
    raise NotImplementedError  # your code here


_ = check_exercise("ch05.accumulate_gradients", my_accumulate)
