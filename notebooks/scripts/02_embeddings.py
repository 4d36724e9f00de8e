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
# # Chapter 2 — From text to tensors: training windows and embeddings
#
# Chapter 1 turned text into token ids. A GPT model cannot eat a list of integers of arbitrary
# length, though: it trains on **batches of fixed-length windows**, and the first thing it does
# with each id is look up a **vector** for it. This chapter builds both ends of that pipe:
#
# 1. **Sliding windows.** Cut one long run of token ids into (input, target) pairs where the
#    target is the input shifted by one token — the whole of next-token prediction in one line.
# 2. **Dataset and DataLoader.** Wrap the windows so PyTorch can shuffle them and stack them into
#    batches of shape `(batch, tokens)`.
# 3. **Token embeddings.** A learned table with one row per vocabulary entry; looking up a row is
#    the same as multiplying a one-hot vector by the table.
# 4. **Position embeddings.** A second table with one row per position, added to the token
#    vectors, because attention on its own cannot tell word order.
#
# The result is the tensor of shape `(batch, tokens, emb_dim)` that enters the first transformer
# block in chapter 4. Our text is the corpus the course pretrains on in chapter 5: the U.S.
# State of the Union addresses (public domain).

# %%
import time

notebook_start = time.perf_counter()  # the notebook's wall time goes into results/chNN.json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from gpt2_core.model.config import GPTConfig
from gpt2_core.text.corpus import sample_text, sotu_text
from gpt2_core.text.windows import GPTDataset, create_dataloader
from gpt2_core.exercises import check_exercise
from gpt2_core.figures import label_points
from gpt2_core.model.gpt import GPTModel
from gpt2_core.profile import describe, pick, profile_name, seed_everything
from gpt2_core.text.ranks import gpt2_encoding

print(describe())
seed_everything(123)
cfg = GPTConfig.preset(profile_name())  # the profile's model shape, with GPT-2's 50,257-token vocabulary
batch_size = pick(tiny=4, default=8, gpt2=8)
print(f"vocab_size={cfg.vocab_size:,}  context_length={cfg.context_length}  emb_dim={cfg.emb_dim}  "
      f"batch_size={batch_size}")

# %% [markdown]
# ## 1. Text to token ids
#
# We use GPT-2's tokenizer from chapter 1 (`gpt2_encoding()`, tiktoken's GPT-2 encoding built
# offline) on the opening of the training split. Chapters 2-4 work with GPT-2's tokenizer and its
# 50,257-token vocabulary; from chapter 5 on, the course trains with a smaller tokenizer of its own
# (8,192 tokens), made by chapter 1's trainer from these speeches (the end of chapter 4 says why).

# %%
enc = gpt2_encoding()
passage = sample_text(600)
print(passage[:300], "...")

# %%
# NBVAL_CHECK_OUTPUT
passage_ids = enc.encode(passage)
pd.DataFrame({"token id": passage_ids[:10], "text": [repr(enc.decode([i])) for i in passage_ids[:10]]})

# %% [markdown]
# ## 2. What the model learns: the next token
#
# A language model is trained to predict the next token from the ones before it. Every prefix of
# a text is a training example, and its label is simply the token that follows:

# %%
# NBVAL_CHECK_OUTPUT
for n in range(1, 7):
    context, nxt = passage_ids[:n], passage_ids[n]
    print(f"{enc.decode(context)!r:>45} --> {enc.decode([nxt])!r}")

# %% [markdown]
# A transformer makes all of these predictions **at once**: fed `context_length` tokens, it
# returns one prediction per position, position *t* seeing only tokens `0..t` (the causal mask
# of chapter 3). So one training example is a window of `context_length` ids, and its target is
# the same window **shifted one token to the right**: target *t* is the token after input *t*.
# Figure 1 draws one short window of our passage this way: each arrow is one of the predictions the
# model makes in a single forward pass.

# %%
from gpt2_core.figures import shift_diagram

fig = shift_diagram([enc.decode([i]) for i in passage_ids[:8]],
                    "Figure 1: one window of 7 inputs and its 7 targets (the inputs shifted by one)")
plt.show()

# %% [markdown]
# ## 3. Sliding windows, built by hand
#
# We slide a window of `context_length` tokens along the text, moving `stride` tokens each time.
# A window starting at `s` needs ids `s .. s + context_length` (one extra for the last target).

# %%
def sliding_windows(ids: list[int], context_length: int, stride: int) -> list[tuple[list[int], list[int]]]:
    """(input, target) pairs; the target is the input shifted by one token."""
    pairs = []
    for start in range(0, len(ids) - context_length, stride):
        inputs = ids[start : start + context_length]
        targets = ids[start + 1 : start + context_length + 1]
        pairs.append((inputs, targets))
    return pairs


toy = list(range(100, 114))  # 14 stand-in token ids, easy to follow by eye
for x, y in sliding_windows(toy, context_length=4, stride=4):
    print("input", x, " target", y)

# %% [markdown]
# The **stride** decides how windows relate:
#
# - `stride == context_length`: windows touch but do not overlap — each token is an input once
#   per epoch. This is what we pretrain with.
# - `stride < context_length`: windows overlap — more examples from the same text, but they
#   repeat, which makes overfitting easier on a small corpus.
# - `stride > context_length`: gaps — some tokens are never an input.

# %%
# NBVAL_CHECK_OUTPUT
for stride in (4, 2, 6):
    windows = sliding_windows(toy, context_length=4, stride=stride)
    print(f"stride={stride}: {len(windows)} windows, inputs {[x for x, _ in windows]}")

# %% [markdown]
# The picture shows the same thing on the real passage: one row per window, one column per
# token. Blue tokens are only ever inputs (the first of a window), orange only targets (the last),
# and purple ones are both — the input at one position is the target of the position before it.
# A window of 4 tokens therefore gives 4 predictions to learn from.

# %%
def window_grid(n_tokens: int, context_length: int, stride: int) -> np.ndarray:
    """One row per window: 0 = unused, 1 = input only, 2 = target only, 3 = input and target."""
    windows = sliding_windows(list(range(n_tokens)), context_length, stride)
    grid = np.zeros((len(windows), n_tokens), dtype=int)
    for row, (x, y) in enumerate(windows):
        grid[row, x] += 1
        grid[row, y] += 2
    return grid


n_show, c_show = 16, 4
labels = [enc.decode([i]) for i in passage_ids[:n_show]]
cmap = ListedColormap(["white", "tab:blue", "tab:orange", "tab:purple"])
fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=False)
for ax, stride in zip(axes, (4, 2, 6), strict=True):
    grid = window_grid(n_show, c_show, stride)
    ax.imshow(grid, cmap=cmap, vmin=0, vmax=3, aspect="auto")
    ax.set_xticks(range(n_show), labels, rotation=90, fontsize=8)
    ax.set_yticks(range(len(grid)), [f"window {i}" for i in range(len(grid))], fontsize=8)
    ax.set_xticks(np.arange(-0.5, n_show), minor=True)
    ax.set_yticks(np.arange(-0.5, len(grid)), minor=True)
    ax.grid(which="minor", color="lightgrey", linewidth=0.5)
    ax.tick_params(which="minor", length=0)
    ax.set_title(f"context_length={c_show}, stride={stride}")
fig.legend(handles=[Patch(color=cmap(k), label=t) for k, t in
                    [(1, "input only"), (3, "input and target"), (2, "target only")]],
           loc="lower center", ncol=3)
fig.suptitle("Figure 2: the windows a stride makes (rows: windows, columns: tokens of the passage)")
fig.tight_layout(rect=(0, 0.07, 1, 1))
plt.show()

# %% [markdown]
# How many windows does a text give? Starts run `0, stride, 2·stride, …` as long as
# `start + context_length + 1 <= n_tokens`, so there are `⌊(n − c − 1) / s⌋ + 1` of them when
# `n > c`, and none otherwise.

# %% [markdown]
# ## 4. A Dataset and a DataLoader
#
# PyTorch separates *what one example is* (`Dataset`: `__len__` and `__getitem__`) from *how
# examples are batched and shuffled* (`DataLoader`). Our dataset keeps the ids as **one** tensor
# and slices a window out on demand: a corpus costs one id per token, not a copy per window (with
# `stride=1` that would be `context_length` copies of the corpus).

# %%
class WindowDataset(Dataset):
    def __init__(self, ids: list[int], context_length: int, stride: int) -> None:
        self.ids = torch.tensor(ids)
        self.context_length, self.stride = context_length, stride
        self.n = (len(ids) - context_length - 1) // stride + 1

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = i * self.stride
        return self.ids[s : s + self.context_length], self.ids[s + 1 : s + self.context_length + 1]


ours = DataLoader(WindowDataset(passage_ids, 4, 4), batch_size=2, shuffle=False, drop_last=True)
inputs, targets = next(iter(ours))
print("inputs\n", inputs, "\ntargets\n", targets)

# %% [markdown]
# The `DataLoader` stacked two windows into a `(2, 4)` batch. The finished version lives in
# `gpt2_core.text.windows`: `GPTDataset` (the same windows, with input checks) and `create_dataloader`
# (which also tokenizes, shuffles with its own seeded generator and drops a ragged last batch).
# Unshuffled, it gives exactly our batches:

# %%
# NBVAL_CHECK_OUTPUT
package = create_dataloader(passage, enc, batch_size=2, context_length=4, stride=4, shuffle=False)
same = all(torch.equal(a, b) and torch.equal(c, d) for (a, c), (b, d) in zip(ours, package, strict=True))
print("same batches as gpt2_core.text.windows:", same, "| batches:", len(package))

# %% [markdown]
# From here on we use the package. Shuffling is reproducible when a seed is given, and a text
# too short for even one window is refused with a message that says what to change:

# %%
# NBVAL_CHECK_OUTPUT
first = lambda seed: next(iter(create_dataloader(passage, enc, batch_size=2, context_length=4, seed=seed)))[0]
print("same seed, same batch:", torch.equal(first(1), first(1)))
try:
    create_dataloader("Four score and seven years ago", enc, batch_size=2, context_length=32)
except ValueError as err:
    print("ValueError:", err)

# %% [markdown]
# Documents are joined with GPT-2's `<|endoftext|>` token, so a window that crosses from one
# address into the next shows the model where a document ends. Here is the whole training split,
# cut at the profile's context length:

# %%
start = time.perf_counter()
corpus = sotu_text("train")
train_set = GPTDataset(corpus, cfg.context_length, tokenizer=enc)
train_loader = create_dataloader(train_set.token_ids, batch_size=batch_size,
                                 context_length=cfg.context_length, seed=123)
x, y = next(iter(train_loader))
print(f"{len(corpus):,} characters -> {train_set.num_tokens:,} tokens "
      f"({len(corpus) / train_set.num_tokens:.2f} characters per token)")
print(f"{len(train_set):,} windows of {cfg.context_length} tokens -> {len(train_loader):,} batches of {batch_size}")
print("one batch:", tuple(x.shape), tuple(y.shape), f"| took {time.perf_counter() - start:.1f} s")

# %% [markdown]
# ## 5. Token embeddings: a lookup table
#
# Token ids are names, not quantities — id 318 is not "bigger" than id 11. The model gives every
# id its own learned vector of `emb_dim` numbers, stored as the rows of a `(vocab_size, emb_dim)`
# matrix. `nn.Embedding` is that matrix plus a row lookup. A toy one, 6 tokens by 3 dimensions:

# %%
torch.manual_seed(123)
toy_emb = nn.Embedding(num_embeddings=6, embedding_dim=3)
ids = torch.tensor([2, 3, 5, 1])
print(toy_emb.weight.data)
print(toy_emb(ids))  # rows 2, 3, 5 and 1 of the table

# %% [markdown]
# Looking up a row is the same as multiplying a **one-hot** vector (all zeros but a 1 at the id)
# by the matrix — i.e. a linear layer without bias whose input is one-hot. The lookup is just the
# cheap way to compute it (no multiplications by zero), and in training only the rows that were
# looked up receive gradient.

# %%
# NBVAL_CHECK_OUTPUT
one_hot = nn.functional.one_hot(ids, num_classes=6).float()  # (4, 6)
print("one-hot x weight == lookup:", torch.allclose(one_hot @ toy_emb.weight, toy_emb(ids)))

# %% [markdown]
# GPT-2 uses the same kind of table at real size. It is one of the biggest pieces of the model,
# and GPT-2 reuses it as the output layer that turns vectors back into scores over the
# vocabulary ("weight tying", Press & Wolf 2017, *Using the Output Embedding to Improve Language
# Models*).

# %%
# NBVAL_CHECK_OUTPUT
for name in ("gpt2", "default", "tiny"):
    c = GPTConfig.preset(name)
    print(f"{name:>8}: {c.vocab_size:,} x {c.emb_dim} = {c.vocab_size * c.emb_dim:,} token-embedding weights")

# %% [markdown]
# ## 6. Position embeddings
#
# Self-attention (chapter 3) mixes token vectors with weights that depend on their contents, not
# on where they sit. Without its causal mask it is blind to order: shuffle the input tokens and each
# output is shuffled the same way. GPT's causal mask breaks that symmetry only indirectly (each token
# sees a different set of earlier tokens, but not where each of them stands), so to let the model
# use word order, every position gets a vector too, added to the token vector.
# The original Transformer used fixed sinusoids of different frequencies (Vaswani et al. 2017,
# *Attention Is All You Need*, §3.5); GPT-2 instead **learns** an absolute position table of
# shape `(context_length, emb_dim)` (Radford et al. 2019, *Language Models are Unsupervised
# Multitask Learners*) — another `nn.Embedding`, indexed by `0, 1, …, T−1`. One way to compare
# the two: how similar is the vector of position *i* to that of position *j*?

# %%
def sinusoidal(n_positions: int, dim: int) -> torch.Tensor:
    """Vaswani et al.'s fixed encodings: sin on even dimensions, cos on odd, wavelengths growing."""
    pos = torch.arange(n_positions, dtype=torch.float32)[:, None]
    freq = 10_000 ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    table = torch.zeros(n_positions, dim)
    table[:, 0::2], table[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return table


def cosine_similarity_matrix(table: torch.Tensor) -> torch.Tensor:
    """Cosine similarity between every pair of rows (positions)."""
    unit = nn.functional.normalize(table, dim=1)
    return unit @ unit.T


learned = nn.Embedding(cfg.context_length, cfg.emb_dim)
fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
for ax, table, title in [(axes[0], sinusoidal(cfg.context_length, cfg.emb_dim), "fixed sinusoids (Vaswani et al.)"),
                         (axes[1], learned.weight.detach(), "learned table before training (GPT-2)")]:
    im = ax.imshow(cosine_similarity_matrix(table), cmap="viridis", vmin=-0.2, vmax=1)
    ax.set_xlabel("position")
    ax.set_ylabel("position")
    ax.set_title(title)
fig.colorbar(im, ax=axes, shrink=0.8, label="cosine similarity of the two position vectors")
fig.suptitle("Figure 3: how similar each position's vector is to every other's")
plt.show()

# %% [markdown]
# With sinusoids, nearby positions have similar vectors and the similarity fades with distance, so
# "how far apart" is visible from the start. A fresh learned table is just noise (each position is
# similar only to itself); pretraining has to discover the same kind of structure. The upside is
# flexibility; the price is that a learned table has no row for positions beyond
# `context_length`, which is why GPT-2 cannot read more than 1,024 tokens at once (its context is
# 1,024 tokens: Radford et al., 2019, §2.3).
#
# Does pretraining find that structure? The course ships a **reference model**, pretrained by the
# course's own code on about 20M tokens of the speeches (chapter 5 shows how; the cell below prints its
# size and exactly how much text it read). Here is its learned position table, compared the same way:

# %%
from IPython.display import Markdown, display

from gpt2_core.course.reference import load_reference, reference_info

ref_model, ref_tok = load_reference("cpu")
ref_cfg, ref_trained = ref_model.cfg, reference_info()["trained"]
display(Markdown(f"The reference model: {ref_cfg.n_layers} layers, {ref_cfg.emb_dim} dimensions, "
                 f"{ref_cfg.context_length} positions, {ref_model.num_parameters() / 1e6:.1f}M parameters, "
                 f"with its own {ref_tok.n_vocab:,}-token tokenizer; trained on "
                 f"{ref_trained['tokens'] / 1e6:.1f}M tokens of State of the Union addresses."))
fig, ax = plt.subplots(figsize=(5.6, 4.6))
im = ax.imshow(cosine_similarity_matrix(ref_model.pos_emb.weight.detach()), cmap="viridis", vmin=-0.2, vmax=1)
ax.set(xlabel="position", ylabel="position", title="Figure 4: learned position table after pretraining\n(reference model)")
fig.colorbar(im, ax=ax, shrink=0.8, label="cosine similarity")
plt.show()

# %% [markdown]
# Compared with the fresh table, structure has appeared: positions near each other now tend to have
# more similar vectors (the lighter band around the diagonal), learned from nothing but next-token
# prediction. It is far rougher than the sinusoids: the reference model's pretraining taught this
# small model only an approximate sense of distance.
#
# The **token** table learns too. Tokens used in similar contexts end up with similar vectors. For a
# few words, the tokens whose vectors are closest (cosine similarity) in the reference model. Look for
# synonyms, opposites used in the same places (*increase*, *reduction*), and words of the same kind
# (months, numbers, countries):

# %%
import pandas as pd

token_table = nn.functional.normalize(ref_model.tok_emb.weight.detach(), dim=1)
probe_words = [" war", " Congress", " January", " trade", " people", " France", " three", " increase"]
neighbours = {}
for word in probe_words:
    (tid,) = ref_tok.encode(word)  # each probe word is a single token of this tokenizer
    sims = token_table @ token_table[tid]
    sims[tid] = -1  # leave the word itself out
    neighbours[repr(word)] = [ref_tok.decode([i]) for i in sims.topk(5).indices.tolist()]
pd.DataFrame(neighbours).T.rename(columns=lambda c: f"nearest {c + 1}")

# %% [markdown]
# Projected onto the two directions along which these tokens vary most (a principal-component
# analysis), whole groups gather together: months with months, numbers with numbers, countries
# with countries. Nobody told the model these groups exist.

# %%
groups = {"months": [" January", " March", " May", " July", " October", " December"],
          "numbers": [" two", " three", " four", " five", " six", " ten"],
          "countries": [" France", " Spain", " Mexico", " Russia", " China", " Japan"],
          "government": [" Congress", " Senate", " President", " Government", " Constitution", " law"]}
ids_by_group = {g: [ref_tok.encode(w)[0] for w in words] for g, words in groups.items()}
vectors = torch.cat([ref_model.tok_emb.weight.detach()[ids] for ids in ids_by_group.values()])
centred = vectors - vectors.mean(0)
_, _, components = torch.linalg.svd(centred, full_matrices=False)
xy = centred @ components[:2].T
fig, ax = plt.subplots(figsize=(7.5, 5.5))
start = 0
for g, words in groups.items():
    part = xy[start:start + len(words)]
    ax.scatter(part[:, 0], part[:, 1], label=g)
    start += len(words)
ax.margins(0.15)  # room for the labels at the edges
ax.set(xlabel="principal component 1", ylabel="principal component 2",
       title="Figure 5: token embeddings of the reference model, projected to 2-D")
ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
fig.subplots_adjust(right=0.78)  # the legend sits right of the plot, away from the points
label_points(ax, xy.tolist(), [w.strip() for words in groups.values() for w in words])  # labels that do not collide
plt.show()

# %% [markdown]
# ## 7. The model's input: tokens plus positions
#
# For a batch of ids of shape `(batch, tokens)`, the token table gives `(batch, tokens, emb_dim)`
# and the position table gives `(tokens, emb_dim)`; broadcasting adds the same position vectors to
# every sequence in the batch. As a diagram, with the shape of the tensor on every arrow
# (B = batch, T = tokens, V = vocabulary size, d = `emb_dim`):

# %%
from gpt2_core.figures import flow_diagram

fig = flow_diagram(["token ids", "token embedding\nlookup: V × d table", "+ position embedding\n(rows 0 … T−1)",
                    "dropout", "into the first\ntransformer block"],
                   ["(B, T)", "(B, T, d)", "(B, T, d)", "(B, T, d)"],
                   "Figure 6: the model's input, token + position embeddings (each box shows its weights)")
plt.show()

# %% [markdown]
# The same with fixed small sizes:

# %%
# NBVAL_CHECK_OUTPUT
torch.manual_seed(123)
demo_loader = create_dataloader(passage, enc, batch_size=4, context_length=8, seed=0)
x, _ = next(iter(demo_loader))
tok_emb = nn.Embedding(enc.n_vocab, 32)
pos_emb = nn.Embedding(8, 32)
token_vectors = tok_emb(x)                                # (batch, tokens, emb_dim)
position_vectors = pos_emb(torch.arange(x.shape[1]))      # (tokens, emb_dim)
input_embeddings = token_vectors + position_vectors       # broadcast over the batch
print("ids:", tuple(x.shape), " tokens:", tuple(token_vectors.shape),
      " positions:", tuple(position_vectors.shape), " sum:", tuple(input_embeddings.shape))

# %% [markdown]
# This sum is exactly the first thing `GPTModel` (chapter 4) computes, before dropout and the
# transformer blocks. We check by catching the input of the model's embedding dropout layer:

# %%
# NBVAL_CHECK_OUTPUT
model = GPTModel(GPTConfig.preset("tiny")).eval()
seen = {}
hook = model.drop_emb.register_forward_hook(lambda module, inp, out: seen.update(x=inp[0]))
with torch.no_grad():
    ids = next(iter(create_dataloader(passage, enc, batch_size=2, context_length=16, seed=0)))[0]
    model(ids)
    by_hand = model.tok_emb(ids) + model.pos_emb(torch.arange(ids.shape[1]))
hook.remove()
print("GPTModel's input embeddings match tok_emb + pos_emb:", torch.equal(seen["x"], by_hand),
      "| shape", tuple(by_hand.shape))

# %% [markdown]
# And at this profile's size, for one real training batch:

# %%
x, y = next(iter(train_loader))
tok_emb = nn.Embedding(cfg.vocab_size, cfg.emb_dim)
pos_emb = nn.Embedding(cfg.context_length, cfg.emb_dim)
h = tok_emb(x) + pos_emb(torch.arange(x.shape[1]))
print(f"batch {tuple(x.shape)} -> input embeddings {tuple(h.shape)}  "
      f"({cfg.vocab_size * cfg.emb_dim + cfg.context_length * cfg.emb_dim:,} embedding weights with GPT-2's "
      f"{cfg.vocab_size:,}-token vocabulary)")

# %% [markdown]
# ## Results
#
# The chapter's headline numbers, computed above in this run, go to `results/ch02.json`:

# %%
from gpt2_core.course.results import write_results

ch02 = {"seconds": round(time.perf_counter() - notebook_start, 1), "train_tokens": train_set.num_tokens,
        "train_windows": len(train_set), "context_length": cfg.context_length,
        "reference_neighbours": {word.strip(): words[:3] for word, words in
                                 zip(probe_words, neighbours.values(), strict=True)}}
print(write_results(2, ch02).name, ch02)

# %% [markdown]
# ## Summary: what you built, and what comes next
#
# - Next-token prediction needs no labels: the target of a window is the window shifted by one.
#   One window of `c` tokens gives `c` predictions to learn from.
# - `stride` sets the overlap between windows; we pretrain with `stride = context_length`.
# - `gpt2_core.text.windows.GPTDataset` keeps the ids as one tensor and slices windows on demand, so it
#   scales to the whole corpus and serves windows in any order (chapter 5 picks each step's windows by
#   index, and shares them out between GPUs); `create_dataloader` adds tokenizing, seeded shuffling and
#   batching.
# - A token embedding is a learned lookup table, equal to one-hot × weight matrix.
# - GPT-2 adds a learned absolute position embedding (the original Transformer used fixed
#   sinusoids), giving the `(batch, tokens, emb_dim)` tensor that the transformer blocks consume.
#
# **Next:** so far every token's vector knows nothing about its neighbours. Chapter 3 builds
# attention, the operation that lets each position gather information from the positions before it.
#
# ## Exercises
#
# Each cell runs as is and says "not attempted" until you replace `raise NotImplementedError`.
# Exercises 1 and 2 ask what the windows leave out and how they can leak; 3 asks what the fixed
# sinusoids of section 6 make easy. Reference solutions are in `gpt2_core/exercises/solutions/ch02.py`,
# for after you have tried.
#
# **1. Tokens that are never predicted.** Write `never_targets(num_tokens, context_length, stride)`
# returning, in order, the positions `0 … num_tokens − 1` of the token sequence that are *not* the
# target of any window: the model is never trained to predict those tokens. Think of the very first
# token, of the gaps that `stride > context_length` leaves (the picture in section 3), and of the tail
# after the last window. Hint: first write down which positions the targets of window `k` cover.

# %%
def never_targets(num_tokens: int, context_length: int, stride: int) -> list[int]:
    raise NotImplementedError


_ = check_exercise("ch02.never_targets", never_targets)

# %% [markdown]
# **2. A validation split that does not leak.** With overlapping windows (`stride < context_length`),
# taking the first windows for training and the rest for validation leaks: the first validation
# windows ask the model to predict tokens that training windows already taught it. Write
# `first_val_window(num_train_windows, context_length, stride)`: training uses windows
# `0 … num_train_windows − 1` (at least one); return the index of the first later window whose targets
# share no position with the targets of any training window. Hint: compare the last target of the
# last training window with the first target of window `j`, then look for a formula; the checker
# compares yours with a brute-force search. (Chapter 5 sidesteps the problem: it splits the *text*, by
# address, before cutting either part into windows.)

# %%
def first_val_window(num_train_windows: int, context_length: int, stride: int) -> int:
    raise NotImplementedError


_ = check_exercise("ch02.first_val_window", first_val_window)

# %% [markdown]
# **3. Relative positions in the sinusoids.** Section 6 said that with fixed sinusoids "how far apart"
# is visible from the start. Vaswani et al. chose them for a stronger reason (*Attention Is All You
# Need*, §3.5): for any fixed offset `k`, the encoding of position `pos + k` is a *linear* function of
# the encoding of `pos`. So there is one matrix `M`, which depends on `k` but not on `pos`, with
# `sinusoidal(pos + k) = sinusoidal(pos) @ M` for every position, and a layer can learn "look `k`
# tokens back" once for all positions. Write `shift_matrix(k, dim)` returning that `(dim, dim)` tensor
# for this chapter's `sinusoidal` (sine in dimension `2i`, cosine in `2i + 1`, frequency
# `w_i = 10000 ** (-2i / dim)`); `k` may be negative. Hint: each pair of dimensions `(2i, 2i + 1)` is a
# point `(sin(pos·w_i), cos(pos·w_i))` on a circle; what do the angle-sum formulas of sine and cosine
# do to it? Try yours first: `sinusoidal(20, 8)[:15] @ shift_matrix(5, 8)` should equal
# `sinusoidal(20, 8)[5:]`.

# %%
def shift_matrix(k: int, dim: int) -> torch.Tensor:
    raise NotImplementedError


_ = check_exercise("ch02.shift_matrix", shift_matrix)
