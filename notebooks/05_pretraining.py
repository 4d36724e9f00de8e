# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
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
# 4. train the **course model** that chapters 6 and 7 start from, and plot its loss curves;
# 5. **sample** from it: greedy decoding, temperature, top-k, top-p, and the KV cache that makes it fast;
# 6. **save and resume** a run exactly, and (when the network allows) compare with OpenAI's GPT-2.
#
# Reading: Radford et al. (2019), *Language Models are Unsupervised Multitask Learners* (GPT-2);
# Kingma & Ba (2015), *Adam*; Loshchilov & Hutter (2019), *Decoupled Weight Decay Regularization*
# (AdamW); Holtzman et al. (2020), *The Curious Case of Neural Text Degeneration* (top-p sampling).

# %%
import math
import time

import matplotlib.pyplot as plt
import pandas as pd
import torch
import torch.nn.functional as F

from gpt2_core.profile import data_dir, describe, get_device, pick, seed_everything

print(describe())
seed_everything(123)
device = get_device()

# %% [markdown]
# ## The recipe
#
# Everything the course model is trained with lives in one place, `course_recipe()`, chosen by the
# profile. The notebook trains with exactly this recipe and saves the result where `course_model()`
# looks for it, so the model you train here is the one chapters 6 and 7 load.

# %%
from gpt2_core.pretrained import course_data, course_recipe

recipe = course_recipe()
pd.DataFrame([recipe.to_dict()]).T.rename(columns={0: "value"})

# %% [markdown]
# The data: every State of the Union address from 1790 on, encoded with GPT-2's tokenizer and cut
# into non-overlapping windows of `context_length` tokens (chapter 2). The validation split is held
# out **by address**: the most recent speeches, none of whose sentences the model sees in training.

# %%
from gpt2_core.corpus import VAL_FROM_YEAR

train_loader, val_loader = course_data(recipe)
for name, loader in (("train", train_loader), ("val", val_loader)):
    ds = loader.dataset
    print(f"{name:>5}: {ds.num_tokens:>9,} tokens -> {len(ds):>6,} windows of {ds.context_length} tokens")
print(f"validation = addresses from {VAL_FROM_YEAR} on")

# %% [markdown]
# ## 1. The loss: cross-entropy over next tokens
#
# For every position $t$ the model outputs logits over the 50,257 tokens; softmax turns them into
# probabilities $p(\cdot \mid x_{\le t})$. The target is the token that actually came next,
# $x_{t+1}$. The loss is the average negative log-probability the model gave the right answer:
#
# $$\mathcal{L} = -\frac{1}{BT}\sum_{b,t} \log p(x_{b,t+1} \mid x_{b,\le t}).$$
#
# Let us compute it by hand for one batch of an untrained model and check it against
# `F.cross_entropy` and the package's `calc_loss_batch`.

# %%
from gpt2_core.model import GPTModel
from gpt2_core.training import calc_loss_batch, perplexity

torch.manual_seed(recipe.seed)
model = GPTModel(recipe.model_config()).to(device)
inputs, targets = next(iter(train_loader))
inputs, targets = inputs.to(device), targets.to(device)

with torch.no_grad():
    logits = model(inputs)                                   # (batch, tokens, vocab)
    log_probs = torch.log_softmax(logits, dim=-1)
    picked = log_probs.gather(-1, targets.unsqueeze(-1))     # log p(right token) at every position
    by_hand = -picked.mean()
    by_torch = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    by_package = calc_loss_batch(model, inputs, targets)
print(f"logits {tuple(logits.shape)}; loss by hand {by_hand:.4f}, F.cross_entropy {by_torch:.4f}, "
      f"calc_loss_batch {by_package:.4f}")

# %% [markdown]
# **Why is the first loss close to ln(vocabulary size)?** A freshly initialised GPT-2 has small
# weights (standard deviation 0.02), so its logits are all near zero and softmax spreads the
# probability almost evenly: about $1/50257$ per token. The loss of a uniform guess is
# $-\log(1/50257) = \ln 50257$.

# %%
# NBVAL_CHECK_OUTPUT
print(f"ln(50257) = {math.log(50257):.4f}")

# %%
print(f"initial loss {by_package:.4f} vs ln(vocab) {math.log(recipe.model_config().vocab_size):.4f}")

# %% [markdown]
# **Perplexity** is $e^{\mathcal{L}}$: the model is "as unsure as if it picked uniformly among
# that many tokens". An untrained model has perplexity ≈ 50,257; a perfect one, 1.

# %%
print(f"initial perplexity {perplexity(by_package.item()):,.0f}  (vocabulary: 50,257)")

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
from gpt2_core.training import lr_schedule, make_optimizer

lrs = [lr_schedule(s, recipe.max_steps, recipe.warmup_steps, recipe.lr, recipe.min_lr)
       for s in range(recipe.max_steps)]
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(range(recipe.max_steps), lrs)
ax.axvline(recipe.warmup_steps, color="gray", ls=":", label="end of warmup")
ax.set(xlabel="step", ylabel="learning rate", title="linear warmup + cosine decay")
ax.legend()
plt.show()
groups = make_optimizer(model, recipe.lr, recipe.weight_decay).param_groups
print({("decay" if g["weight_decay"] else "no decay"): sum(p.numel() for p in g["params"]) for g in groups})

# %% [markdown]
# ## 3. A training loop by hand
#
# One step of training is four lines: compute the loss, backpropagate, update, clear the gradients.
# Here are a few steps on our untrained model, with gradient clipping (if one batch produces a huge
# gradient, we shrink it to norm 1 instead of taking a wild step).

# %%
optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
model.train()
batches = iter(train_loader)
for step in range(pick(tiny=3, default=8)):
    x, y = next(batches)
    loss = calc_loss_batch(model, x, y)          # forward: how wrong are we?
    loss.backward()                              # backward: which way is less wrong?
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
    optimizer.step()                             # take a step that way
    optimizer.zero_grad()
    print(f"step {step + 1}: loss {loss.item():.3f}")

# %% [markdown]
# That is the whole idea. A real run needs more around it, and `gpt2_core.training.train` adds it:
#
# - the **LR schedule** above and AdamW with decay groups;
# - **evaluation** every `eval_every` steps on fixed batches of both splits, with dropout off;
# - **tokens seen**, a progress bar, and gradient accumulation (several micro-batches per step);
# - **bf16 autocast** and **`torch.compile`** on a GPU (off on CPU, where they do not pay);
# - **checkpoints** and exact **resume**: the data order is a function of `(seed, step)`, so a resumed
#   run continues with the very batch it would have seen;
# - **DDP**: the same function runs under `torchrun`, one process per GPU (section 8).
#
# ## 4. Training the course model
#
# Now the real run, with the recipe. On the `default` profile this takes a few minutes on a laptop
# CPU; the bar shows progress, and a line is printed at every evaluation.

# %%
from gpt2_core.pretrained import course_checkpoint_dir, save_course_model
from gpt2_core.training import train

torch.manual_seed(recipe.seed)
model = GPTModel(recipe.model_config()).to(device)
print(f"{model.num_parameters():,} parameters")
start = time.perf_counter()
history = train(model, train_loader, val_loader, recipe.train_config())
print(f"trained {len(history.steps)} steps, {history.tokens_seen:,} tokens in {time.perf_counter() - start:.1f} s "
      f"({history.tokens_per_second:,.0f} tokens/s)")
save_course_model(model, history, recipe)
print(f"saved as the course model: {course_checkpoint_dir(recipe.profile).relative_to(data_dir().parent)}")

# %% [markdown]
# ### Loss curves
#
# The loss against optimizer steps shows the optimisation; against **tokens seen** it shows how much
# text it took (the x-axis that lets runs with different batch sizes be compared).

# %%
out_dir = data_dir() / "outputs"
out_dir.mkdir(parents=True, exist_ok=True)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
ax1.plot(history.steps, history.losses, alpha=0.35, label="training batch")
ax1.plot(history.eval_steps, history.train_losses, "o-", label="train (eval)")
ax1.plot(history.eval_steps, history.val_losses, "s-", label="validation")
ax1.set(xlabel="optimizer step", ylabel="cross-entropy loss", title="loss vs steps")
ax2.plot(history.eval_tokens, history.train_losses, "o-", label="train (eval)")
ax2.plot(history.eval_tokens, history.val_losses, "s-", label="validation")
ax2.set(xlabel="tokens seen", ylabel="cross-entropy loss", title="loss vs tokens seen")
for ax in (ax1, ax2):
    ax.axhline(math.log(50257), color="gray", ls=":", label="ln(50257): uniform guess")
    ax.legend()
fig.tight_layout()
fig.savefig(out_dir / "ch05_loss.png", dpi=120)
plt.show()
pd.DataFrame({"step": history.eval_steps, "tokens seen": history.eval_tokens,
              "train loss": history.train_losses, "val loss": history.val_losses}).round(3)

# %% [markdown]
# The final numbers (the README's results table quotes the `default` profile's):

# %%
val_loss = history.val_losses[-1]
print(f"final validation loss {val_loss:.3f}  ->  perplexity {perplexity(val_loss):.1f}")
print(f"final train loss      {history.train_losses[-1]:.3f}  ->  perplexity {perplexity(history.train_losses[-1]):.1f}")

# %% [markdown]
# ## 5. Sampling text
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
# First, what temperature does to one next-token distribution:

# %%
from gpt2_core.generate import generate, generate_text, text_to_ids
from gpt2_core.tokenizer import gpt2_encoding

enc = gpt2_encoding()
prompt = "The state of the Union is"
with torch.no_grad():
    next_logits = model(text_to_ids(prompt, enc).to(device))[0, -1]
top = torch.topk(next_logits, 6).indices
table = {f"T={t}": torch.softmax(next_logits / t, -1)[top].tolist() for t in (0.5, 1.0, 2.0)}
pd.DataFrame(table, index=[repr(enc.decode([i])) for i in top.tolist()]).round(3)

# %% [markdown]
# And text from each strategy (a seeded generator makes the samples repeatable):

# %%
n_new = pick(tiny=10, default=40)
strategies = {"greedy": dict(temperature=0.0),
              "temperature 0.8": dict(temperature=0.8),
              "top-k 40, T=1": dict(temperature=1.0, top_k=40),
              "top-p 0.9, T=1": dict(temperature=1.0, top_p=0.9)}
for name, sampling in strategies.items():
    g = torch.Generator(device=device).manual_seed(123)
    text = generate_text(model, enc, prompt, n_new, generator=g, **sampling)
    print(f"--- {name}\n{text!r}\n")

# %% [markdown]
# ### The KV cache
#
# Without a cache, every new token re-runs the model over the whole sequence. With one, each
# attention layer keeps the keys and values it already computed, and a step only processes the newest
# token (chapter 3). Same tokens, less work:

# %%
ids = text_to_ids(prompt, enc).to(device)
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
# ## 6. Checkpoints and exact resume
#
# Long runs get interrupted. A checkpoint (`gpt2_core.checkpoint`) stores the weights, the optimizer's
# moments, the schedule's position and the random-number states, as safetensors + JSON (no pickle).
# Because `train` derives the data order from `(seed, step)`, a resumed run sees the same batches and
# makes the same updates. We check it on a short run: 6 steps straight, versus 3 steps, save, then a
# *fresh* model resumed to 6.

# %%
import tempfile

short = dict(max_steps=6, warmup_steps=1, eval_every=0, eval_batches=1, progress=False)
torch.manual_seed(0)
straight = train(GPTModel(recipe.model_config()).to(device), train_loader, val_loader, recipe.train_config(**short))
with tempfile.TemporaryDirectory() as tmp:
    torch.manual_seed(0)
    train(GPTModel(recipe.model_config()).to(device), train_loader, val_loader,
          recipe.train_config(**short, out_dir=f"{tmp}/run", stop_at_step=3))
    torch.manual_seed(999)  # a different random init: the checkpoint must overwrite all of it
    resumed = train(GPTModel(recipe.model_config()).to(device), train_loader, val_loader,
                    recipe.train_config(**short, resume_from=f"{tmp}/run"))
print("straight run, steps 4-6:", [round(v, 5) for v in straight.losses[3:]])
print("resumed run,  steps 4-6:", [round(v, 5) for v in resumed.losses[3:]])
resume_exact = straight.losses == resumed.losses

# %%
print("resumed losses identical to the uninterrupted run:", resume_exact)

# %% [markdown]
# (On CPU they are bitwise identical; on a GPU some kernels are not deterministic, so expect agreement
# to a few decimals.) The course model was saved the same way; `course_model()` loads it back:

# %%
from gpt2_core.pretrained import course_val_loss, load_course_model

reloaded, _ = load_course_model(recipe.profile)  # what course_model() returns from now on
print(f"reloaded course model: val loss {course_val_loss(reloaded, recipe, val_loader):.3f} "
      f"(training reported {val_loss:.3f})")


# %% [markdown]
# ## 7. OpenAI's GPT-2
#
# OpenAI trained the 124M-parameter GPT-2 on 40 GB of web text (Radford et al. 2019). When its
# weights can be downloaded (chapter 4's `GPTModel.from_pretrained`), we can put it on our validation
# split and let it write. Offline, we note it and move on.

# %%
from gpt2_core.hf_weights import WeightsDownloadError

try:
    gpt2 = GPTModel.from_pretrained("gpt2").to(device).eval()
except (WeightsDownloadError, OSError) as err:
    gpt2 = None
    print(f"OpenAI's GPT-2 is not available here, skipping this comparison.\n({str(err)[:200]})")
if gpt2 is not None:
    print(f"GPT-2 124M on our validation windows: loss {course_val_loss(gpt2, recipe, val_loader):.3f} "
          f"vs our course model {val_loss:.3f}")
    print(generate_text(gpt2, enc, prompt, 30, generator=torch.Generator(device=device).manual_seed(1),
                        temperature=0.8, top_k=40))

# %% [markdown]
# ## 8. More than one GPU: DDP
#
# `train` also runs under PyTorch's launcher with **DistributedDataParallel**: each process holds a
# copy of the model and trains on its own slice of every global batch, gradients are averaged across
# processes after `backward`, and only rank 0 prints and writes checkpoints. On a machine with two GPUs:
#
# ```bash
# torchrun --nproc_per_node=2 -m gpt2_core.train --preset default --max-steps 900 --out runs/sotu
# ```
#
# (`--batch-size` is per process; on CPU the same command uses the gloo backend.) The package's tests
# check that two processes with batch *B* give the same losses as one process with batch *2B*.
# `python -m gpt2_core.train --help` lists every option, including `--resume`, `--grad-accum`,
# `--bf16` and `--compile`.
#
# ## Summary
#
# - Pretraining minimises the cross-entropy of the next token; an untrained model starts near
#   $\ln 50257 \approx 10.8$, and perplexity $e^{\mathcal{L}}$ reads the loss as "choices per token".
# - AdamW with decay on matrices, linear warmup and cosine decay, and gradient clipping make the
#   optimisation stable; `train` adds evaluation, checkpoints with exact resume, bf16, compile and DDP.
# - How we sample matters: greedy repeats itself, temperature trades safety for variety, top-k and
#   top-p cut off the unreliable tail; a KV cache gives the same tokens faster.
# - The model trained here is cached as the course model; chapters 6 and 7 fine-tune it.
#
# ## Exercises
#
# **1. Perplexity.** Write `my_perplexity(loss)` that turns a mean cross-entropy loss into a perplexity.

# %%
from gpt2_core.exercises import check_exercise


def my_perplexity(loss: float) -> float:
    raise NotImplementedError  # your code here


_ = check_exercise("ch05.perplexity", my_perplexity)

# %% [markdown]
# **2. Top-k filter.** Write `my_top_k(logits, k)` that keeps the `k` largest logits of each row (the
# last dimension) and sets every smaller one to `-inf`. Hint: `torch.topk(...).values[..., -1:]` is
# the k-th largest.

# %%
def my_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    raise NotImplementedError  # your code here


_ = check_exercise("ch05.top_k_filter", my_top_k)

# %% [markdown]
# **3. The learning rate at a step.** Write `my_lr(step, max_steps, warmup_steps, max_lr, min_lr)`:
# `max_lr * (step + 1) / warmup_steps` during warmup, then half a cosine from `max_lr` down to
# `min_lr` at `max_steps`, and `min_lr` after that.

# %%
def my_lr(step: int, max_steps: int, warmup_steps: int, max_lr: float, min_lr: float) -> float:
    raise NotImplementedError  # your code here


_ = check_exercise("ch05.lr_at_step", my_lr)
