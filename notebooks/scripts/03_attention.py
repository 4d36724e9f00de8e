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
# # Chapter 3 — Attention
#
# Chapter 2 turned text into vectors: one embedding per token, plus one per position. But each
# vector still knows only about *its own* token. To predict the next word in
# "The cat sat on the ___", the model must mix in information from the other tokens: which noun
# came before, what the verb was. **Self-attention** is that mixing step: every token builds a new
# vector (its *context vector*) as a weighted average of all the tokens it may look at, with weights
# it computes itself.
#
# In this chapter we build attention in small steps, each one runnable (the numbers are the
# sections below):
#
# 1. a sentence of embedded tokens to work on;
# 2. attention with no trainable weights at all: dot products → softmax → weighted sums;
# 3. trainable query/key/value projections, and why scores are divided by $\sqrt{d}$;
# 4. the **causal mask**, so a token cannot peek at the future (GPT predicts the next token!);
# 5. dropout on attention weights;
# 6. **multi-head** attention, first as a stack of single heads, then as one batched module;
# 7. PyTorch's fused `scaled_dot_product_attention`, proven equal to ours and timed;
# 8. the package version: our batched module proven equal to `gpt2_core.model.attention.MultiHeadAttention`,
#    the version the rest of the course uses;
# 9. the **KV cache**, which makes generation fast.
#
# Attention was introduced for translation by Bahdanau, Cho & Bengio (2015), *Neural Machine
# Translation by Jointly Learning to Align and Translate*; the Transformer (Vaswani et al., 2017,
# *Attention Is All You Need*) made it the whole model.

# %%
import math
import time

notebook_start = time.perf_counter()  # the notebook's wall time goes into results/chNN.json

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display
from torch import nn

from gpt2_core.profile import describe, get_device, pick, seed_everything
from gpt2_core.text.ranks import gpt2_encoding

print(describe())
seed_everything(123)
torch.set_printoptions(precision=3, sci_mode=False)

# %% [markdown]
# ## 1. A sentence of embedded tokens
#
# We take a short sentence, encode it with GPT-2's tokenizer (chapter 1) and give every token a
# small random embedding (chapter 2). Eight dimensions are plenty to see what happens; GPT-2 small
# uses 768. The embeddings are untrained, so the numbers mean nothing yet: what matters here is the
# *mechanics*.

# %%
# NBVAL_CHECK_OUTPUT
enc = gpt2_encoding()
sentence = "Your journey starts with one step"
ids = enc.encode(sentence)
tokens = [enc.decode([i]) for i in ids]
print(ids)
print(tokens)

# %%
emb_dim = 8
embedding = nn.Embedding(enc.n_vocab, emb_dim)
with torch.no_grad():
    inputs = embedding(torch.tensor(ids))  # (tokens, emb_dim)
print(inputs.shape)
inputs

# %% [markdown]
# ## 2. Attention without trainable weights
#
# Pick one token as the **query**, say "journey" (index 1). How relevant is every token to it? The
# simplest measure of similarity between two vectors is their **dot product**: large when they
# point the same way, near zero when they are unrelated, negative when they point apart.

# %%
query = inputs[1]
scores_1 = torch.stack([torch.dot(x, query) for x in inputs])  # one score per token
print(scores_1)
print(torch.allclose(scores_1, inputs @ query))  # the loop is just a matrix-vector product

# %% [markdown]
# Scores can be any real numbers. We want **weights**: non-negative and summing to one, so that the
# context vector is a weighted *average*. The softmax does exactly that,
# $\mathrm{softmax}(s)_i = e^{s_i} / \sum_j e^{s_j}$, and it keeps the order of the scores.

# %%
weights_1 = torch.softmax(scores_1, dim=0)
print(weights_1, "sum =", weights_1.sum().item())
context_1 = weights_1 @ inputs  # sum_i weights_1[i] * inputs[i]
print(context_1)

# %% [markdown]
# Now every token at once: all dot products form one matrix `inputs @ inputs.T` (row *i* holds the
# scores of query *i*), the softmax runs along each row, and one more matrix product gives every
# context vector.

# %%
scores = inputs @ inputs.T  # (tokens, tokens)
weights = torch.softmax(scores, dim=-1)  # each row sums to 1
contexts = weights @ inputs  # (tokens, emb_dim)
print(weights.sum(dim=-1))
print(torch.allclose(contexts[1], context_1))


# %% [markdown]
# A heatmap shows who attends to whom: row = the query token, column = the token it looks at.

# %%
def show_weights(w: torch.Tensor, labels: list[str], title: str, ax=None) -> None:
    """Heatmap of an attention-weight matrix with token labels on both axes."""
    ax = ax or plt.subplots(figsize=(4.5, 4))[1]
    im = ax.imshow(w.detach().cpu(), cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=60)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("attends to (key)")
    ax.set_ylabel("query")
    ax.set_title(title)
    plt.colorbar(im, ax=ax, fraction=0.046)


show_weights(weights, tokens, "Figure 1: no trainable weights")
plt.tight_layout()
plt.show()

# %% [markdown]
# The diagonal is large: a vector's dot product with itself is its squared length, which is usually,
# but not always, its largest score (a longer vector pointing a similar way can score higher). That
# is the weakness of this version: the only notion of relevance is raw similarity of embeddings, and
# nothing can be learned.

# %% [markdown]
# ## 3. Trainable queries, keys and values
#
# The Transformer gives each token three *roles*, each a learned linear map of its embedding:
#
# - the **query** $q = x W_q$: "what am I looking for?"
# - the **key** $k = x W_k$: "what do I offer?"; scores are $q \cdot k$,
# - the **value** $v = x W_v$: "what do I hand over if chosen?"; contexts average the values.
#
# Queries and keys can now learn what "relevant" means for the task, independent of raw similarity.

# %%
d_in, d_out = emb_dim, 4
torch.manual_seed(123)
W_query = nn.Linear(d_in, d_out, bias=False)
W_key = nn.Linear(d_in, d_out, bias=False)
W_value = nn.Linear(d_in, d_out, bias=False)
with torch.no_grad():
    q, k, v = W_query(inputs), W_key(inputs), W_value(inputs)
print(q.shape, k.shape, v.shape)

# %% [markdown]
# ### Why divide by $\sqrt{d}$?
#
# If the entries of $q$ and $k$ are independent with mean 0 and variance 1, their dot product is a
# sum of $d$ such products, so its **variance is $d$**. With $d = 64$ (GPT-2's head size) typical
# scores are around ±8; the softmax of such scores is nearly one-hot, and its gradient almost
# vanishes. Dividing by $\sqrt{d}$ brings the variance back to 1 whatever $d$ is. Let us measure it:

# %%
rows = []
for d in (4, 64, 512):
    qs, ks = torch.randn(10_000, d), torch.randn(10_000, d)
    dots = (qs * ks).sum(-1)
    # the largest softmax weight over 8 random keys: near 1 means "one-hot", no gradient to others
    s8 = (torch.randn(2000, 1, d) * torch.randn(2000, 8, d)).sum(-1)
    rows.append((d, dots.var().item(), (dots / math.sqrt(d)).var().item(),
                 torch.softmax(s8, -1).max(-1).values.mean().item(),
                 torch.softmax(s8 / math.sqrt(d), -1).max(-1).values.mean().item()))
print(f"{'d':>4} {'var(q.k)':>9} {'var(q.k/sqrt d)':>16} {'max weight':>11} {'scaled':>7}")
for d, raw, scaled, peak, peak_scaled in rows:
    print(f"{d:>4} {raw:>9.1f} {scaled:>16.2f} {peak:>11.2f} {peak_scaled:>7.2f}")
peak_64, scaled_64 = rows[1][3], rows[1][4]
display(Markdown(f"Without scaling, the softmax over 8 keys puts on average {peak_64:.0%} of its mass on one "
                 f"key at $d=64$ (a uniform softmax would put {1 / 8:.1%}); with scaling, {scaled_64:.0%}, "
                 f"and its peakiness no longer depends on $d$ ({rows[0][4]:.0%} at $d=4$, {rows[2][4]:.0%} at "
                 f"$d=512$). This is the \"scaled\" in *scaled dot-product attention*."))

# %% [markdown]
# As a module:

# %%
class SelfAttention(nn.Module):
    """Single-head self-attention: softmax(Q K^T / sqrt(d_out)) V, no mask."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.W_query = nn.Linear(d_in, d_out, bias=False)
        self.W_key = nn.Linear(d_in, d_out, bias=False)
        self.W_value = nn.Linear(d_in, d_out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.W_query(x), self.W_key(x), self.W_value(x)
        scores = q @ k.transpose(-2, -1) / math.sqrt(k.shape[-1])
        return torch.softmax(scores, dim=-1) @ v


torch.manual_seed(123)
sa = SelfAttention(d_in, d_out)
with torch.no_grad():
    print(sa(inputs).shape)

# %% [markdown]
# ## 4. The causal mask
#
# GPT is trained to predict token $t+1$ from tokens $1..t$. If position $t$ could attend to
# position $t+1$, it would simply copy the answer. So every query may only look at keys at or
# before its own position: the allowed pairs form a **lower-triangular** matrix.
#
# The right way to remove the future is *before* the softmax: set future scores to $-\infty$, so
# $e^{-\infty} = 0$ and the remaining weights still sum to one. Figure 2 (left) shows the scores
# that survive on our sentence. Some models use a **local** mask on top (right): a query also
# ignores keys more than `window − 1` positions back, which bounds the cost per token (Beltagy et
# al., 2020, *Longformer*; Mistral's sliding-window attention). GPT-2 uses the plain causal mask.

# %%
from gpt2_core.figures import mask_diagram

fig = mask_diagram(tokens, windows=(None, 3), title="Figure 2: the scores kept (q·k) and masked (−∞)")
plt.show()

# %%
t = len(tokens)
with torch.no_grad():
    scores = sa.W_query(inputs) @ sa.W_key(inputs).T / math.sqrt(d_out)
future = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)  # True above the diagonal
print(future.int())
causal_weights = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
print(causal_weights)
print(causal_weights.sum(-1))

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 4))
show_weights(torch.softmax(scores, -1), tokens, "trainable, no mask", axes[0])
show_weights(causal_weights, tokens, "causal", axes[1])
fig.suptitle("Figure 3: attention weights before and after the causal mask")
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Where the mask lives: `register_buffer`
#
# The mask is a tensor the module needs, but it is not something to train. Storing it with
# `self.register_buffer("mask", ...)` instead of a plain attribute makes it part of the module's
# state: it moves with `module.to(device)` (a plain attribute would stay on the CPU and crash on a
# GPU), it is saved in `state_dict()` (or not, with `persistent=False`, which suits a mask that is
# cheap to rebuild), and it is *not* returned by `parameters()`, so the optimizer never touches it.

# %%
class CausalAttention(nn.Module):
    """Single-head causal self-attention for batches (batch, tokens, d_in), with attention dropout."""

    def __init__(self, d_in: int, d_out: int, context_length: int, dropout: float, qkv_bias: bool = False):
        super().__init__()
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.dropout = nn.Dropout(dropout)
        future = torch.triu(torch.ones(context_length, context_length, dtype=torch.bool), diagonal=1)
        self.register_buffer("mask", future, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        q, k, v = self.W_query(x), self.W_key(x), self.W_value(x)
        scores = q @ k.transpose(1, 2) / math.sqrt(k.shape[-1])
        scores = scores.masked_fill(self.mask[:t, :t], float("-inf"))  # crop to the actual length
        weights = self.dropout(torch.softmax(scores, dim=-1))
        return weights @ v


# %%
# NBVAL_CHECK_OUTPUT
ca = CausalAttention(d_in, d_out, context_length=16, dropout=0.0)
print("parameters:", [name for name, _ in ca.named_parameters()])
print("buffers:   ", [name for name, _ in ca.named_buffers()])
print("state_dict:", list(ca.state_dict()))  # persistent=False: rebuilt, not saved
print(ca.to(torch.float64).mask.dtype, "(bool buffers keep their dtype; .to(device) moves them too)")

# %% [markdown]
# ## 5. Dropout on the attention weights
#
# During training GPT-2 randomly zeroes 10% of the attention weights (`attn_pdrop = 0.1` in the
# configuration OpenAI released with its weights; the course's `GPTConfig.drop_rate` defaults to the
# same), so no token can rely on a single other token. `nn.Dropout` zeroes each entry with
# probability $p$ and scales the survivors by $1/(1-p)$, so the *expected* weights are unchanged; in
# `eval()` mode it does nothing.

# %%
torch.manual_seed(123)
drop = nn.Dropout(0.5)
print(drop(causal_weights))  # training mode (the default): zeros, survivors doubled
drop.eval()
print(torch.equal(drop(causal_weights), causal_weights))

# %% [markdown]
# ## 6. Multi-head attention
#
# One head computes one kind of relevance. Several heads in parallel, each with its own (smaller)
# query/key/value projections, can track different relations at once (which noun a pronoun refers
# to, which verb governs a word...). Their context vectors are concatenated.
#
# ### First version: a wrapper of single heads

# %%
class MultiHeadAttentionWrapper(nn.Module):
    """num_heads independent CausalAttention heads, outputs concatenated."""

    def __init__(self, d_in: int, d_out: int, context_length: int, dropout: float, num_heads: int,
                 qkv_bias: bool = False):
        super().__init__()
        self.heads = nn.ModuleList(CausalAttention(d_in, d_out // num_heads, context_length, dropout, qkv_bias)
                                   for _ in range(num_heads))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([head(x) for head in self.heads], dim=-1)


torch.manual_seed(123)
batch = torch.stack([inputs, inputs.flip(0)])  # two sequences: (2, tokens, emb_dim)
wrapper = MultiHeadAttentionWrapper(d_in, 8, context_length=16, dropout=0.0, num_heads=2)
with torch.no_grad():
    print(wrapper(batch).shape)

# %% [markdown]
# This works, but runs the heads one after another: `num_heads` small matrix products where one
# big one would do. GPUs (and CPUs) are much faster at a few large operations than many small ones.
#
# ### Second version: all heads in one batched module
#
# The trick is that the projections of all heads side by side are just one wider projection. So:
#
# 1. one `Linear(d_in, 3 * d_out)` computes queries, keys and values of every head at once (the
#    "fused qkv", the layout GPT-2's checkpoints use too);
# 2. **split heads**: `view(b, t, 3, heads, head_dim)` reinterprets the last dimension without
#    copying, then a transpose/permute moves heads in front of tokens, giving
#    `(b, heads, t, head_dim)`: now the matrix products `q @ k^T` run for all heads in one batched call;
# 3. **merge heads**: transpose back to `(b, t, heads, head_dim)` and `view` to `(b, t, d_out)`.
#
# The whole batched computation, with the shape on every arrow (B = batch, T = tokens, d = `d_out`,
# h = heads, d_h = d / h):

# %%
from gpt2_core.figures import flow_diagram

fig = flow_diagram(["x", "qkv = x W\n(one Linear,\nd → 3d)", "split heads:\nq, k, v", "scores =\nq kᵀ / √d_h",
                    "causal mask,\nsoftmax", "weights · v", "merge heads,\nout_proj", "output"],
                   ["(B, T, d)", "(B, T, 3d)", "(B, h, T, d_h)", "(B, h, T, T)", "(B, h, T, T)", "(B, h, T, d_h)",
                    "(B, T, d)"],
                   "Figure 4: multi-head causal attention, batched")
plt.show()

# %% [markdown]
# Why `.contiguous()` before the final `view`? `transpose` does not move any data; it only
# changes the *strides* (how many elements to skip per index). `view` needs the elements to be laid
# out in memory in the order the new shape implies, which a transposed tensor is not;
# `.contiguous()` makes that copy (`reshape` would do the same when needed).

# %%
x = torch.arange(3 * 4).view(1, 3, 4)  # (batch, tokens, d=4): 2 heads of size 2
heads = x.view(1, 3, 2, 2).transpose(1, 2)  # (batch, heads, tokens, head_dim)
print(heads[0, 0], heads[0, 1], sep="\n")  # head 0 got columns 0-1 of every token, head 1 columns 2-3
print("contiguous after transpose?", heads.is_contiguous())
merged = heads.transpose(1, 2).contiguous().view(1, 3, 4)
print(torch.equal(merged, x))

# %% [markdown]
# The fused projection gives every token one row of `3 × d_out` numbers: the queries of all heads,
# then their keys, then their values. The module below splits that row with
# `view(b, t, 3, heads, head_dim).permute(2, 0, 3, 1, 4)`. Step by step, on a toy we can read by eye:
# one sequence of 3 tokens, `d_out = 4` (2 heads of size 2), and a stand-in for the output of `qkv`
# whose entries say where they sit: 100 × the token + the column.

# %%
n_tok, n_heads, head_size = 3, 2, 2  # d_out = n_heads * head_size = 4, so qkv gives 3 * 4 = 12 columns
qkv_out = 100 * torch.arange(n_tok)[None, :, None] + torch.arange(3 * n_heads * head_size)  # (1, 3, 12)
print("qkv output", tuple(qkv_out.shape), "(batch, tokens, 3 * d_out):")
print(qkv_out[0])
split = qkv_out.view(1, n_tok, 3, n_heads, head_size)
print("after view:   ", tuple(split.shape), "= (batch, tokens, q/k/v, heads, head_dim), nothing moved")
moved = split.permute(2, 0, 3, 1, 4)
print("after permute:", tuple(moved.shape), "= (q/k/v, batch, heads, tokens, head_dim)")
q_toy, k_toy, v_toy = moved  # unpacking walks the first axis
for name, part in (("q", q_toy), ("k", k_toy), ("v", v_toy)):
    for head in range(n_heads):
        columns = part[0, head, 0].tolist()  # token 0's entries are its column numbers
        print(f"{name} of head {head}: columns {columns[0]}-{columns[-1]} of every token:", part[0, head].tolist())

# %% [markdown]
# So column `part × d_out + head × head_dim + j` of the fused output is entry `j` of that head's query
# (part 0), key (1) or value (2), and after the permute each of `q`, `k`, `v` has shape
# `(batch, heads, tokens, head_dim)`: one matrix of `tokens × head_dim` per head, ready for `q @ kᵀ`.
# This is the order in which the comparison with the wrapper (below) copies each head's weights.


# %%
class BatchedMultiHeadAttention(nn.Module):
    """Causal multi-head attention with one fused qkv projection and an output projection."""

    def __init__(self, d_in: int, d_out: int, context_length: int, dropout: float, num_heads: int,
                 qkv_bias: bool = True):
        super().__init__()
        assert d_out % num_heads == 0, "d_out must be divisible by num_heads"
        self.num_heads, self.head_dim, self.d_out = num_heads, d_out // num_heads, d_out
        self.qkv = nn.Linear(d_in, 3 * d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)  # mixes the heads' outputs
        self.dropout = nn.Dropout(dropout)
        future = torch.triu(torch.ones(context_length, context_length, dtype=torch.bool), diagonal=1)
        self.register_buffer("mask", future, persistent=False)

    def forward(self, x: torch.Tensor, return_weights: bool = False):
        b, t, _ = x.shape
        # (b, t, 3*d_out) -> (3, b, heads, t, head_dim)
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (b, heads, t, t)
        scores = scores.masked_fill(self.mask[:t, :t], float("-inf"))
        weights = self.dropout(torch.softmax(scores, dim=-1))
        out = (weights @ v).transpose(1, 2).contiguous().view(b, t, self.d_out)  # merge heads
        out = self.out_proj(out)
        return (out, weights) if return_weights else out


# %% [markdown]
# Is it really the same computation as the wrapper? Copy each head's three matrices into the right
# rows of the fused `qkv` weight (queries of all heads first, then keys, then values), make the
# output projection the identity (the wrapper has none), and compare:

# %%
# NBVAL_CHECK_OUTPUT
batched = BatchedMultiHeadAttention(d_in, 8, context_length=16, dropout=0.0, num_heads=2, qkv_bias=False)
with torch.no_grad():
    for part, name in enumerate(["W_query", "W_key", "W_value"]):
        stacked = torch.cat([getattr(h, name).weight for h in wrapper.heads], dim=0)  # (d_out, d_in)
        batched.qkv.weight[part * 8:(part + 1) * 8] = stacked
    batched.out_proj.weight.copy_(torch.eye(8))
    batched.out_proj.bias.zero_()
    print("batched == wrapper:", torch.allclose(batched(batch), wrapper(batch), atol=1e-6))

# %% [markdown]
# Each head produces its own attention pattern. Figure 5 shows both heads of a freshly initialised
# module on our sentence: untrained, so the patterns are arbitrary, but each is causal. One thing is
# not as in real use: we feed the module **our inputs multiplied by 3**. An untrained module's scores
# are small, so its softmax is close to uniform and the heatmaps would look almost flat; larger inputs
# give larger scores (queries and keys both grow with the input) and patterns sharp enough to see. The
# sharpness in Figure 5 comes from that scaling, not from anything learned (the line under the figure
# measures both).

# %%
torch.manual_seed(0)
mha_demo = BatchedMultiHeadAttention(d_in, 8, context_length=16, dropout=0.0, num_heads=2)
with torch.no_grad():
    _, w_plain = mha_demo(inputs.unsqueeze(0), return_weights=True)
    _, w = mha_demo(inputs.unsqueeze(0) * 3, return_weights=True)  # the inputs multiplied by 3
fig, axes = plt.subplots(1, 2, figsize=(9, 4))
for h, ax in enumerate(axes):
    show_weights(w[0, h], tokens, f"head {h}", ax)
fig.suptitle("Figure 5: the two heads of an untrained module (inputs multiplied by 3)")
plt.tight_layout()
plt.show()
print(f"largest weight of each row, on average: {w_plain.amax(-1).mean():.2f} with the inputs as they are, "
      f"{w.amax(-1).mean():.2f} with the inputs multiplied by 3")

# %% [markdown]
# ### The heads of a trained model
#
# Untrained heads look anywhere. What do heads look at after pretraining? The course ships a small
# pretrained GPT, the **reference model** (the cell below prints its shape; chapter 5 trains one like it).
# `GPTModel.attention_maps` returns the softmax weights of every head for one sentence; Figures 6–9 show
# them, one layer at a time (row = the token that looks, column = the token it looks at).

# %%
from gpt2_core.figures import plot_attention_heads
from gpt2_core.course.reference import load_reference

ref_model, ref_tok = load_reference("cpu")
print(f"reference model: {ref_model.cfg.n_layers} layers of {ref_model.cfg.n_heads} heads, "
      f"{ref_model.cfg.emb_dim} dimensions, {ref_tok.n_vocab:,}-token vocabulary")
sentence = "The Congress shall have power to lay and collect taxes, and to pay the debts of the United States."
ref_ids = torch.tensor([ref_tok.encode(sentence)])
ref_labels = [ref_tok.decode([i]) for i in ref_ids[0].tolist()]
maps = ref_model.attention_maps(ref_ids)
for layer, layer_maps in enumerate(maps):
    fig = plot_attention_heads(layer_maps, ref_labels,
                               f"Figure {6 + layer}: the heads of layer {layer + 1} of the trained reference model")
    plt.show()

# %%
congress = ref_labels.index(" Congress")
looks_at = maps[2][0].argmax(-1)  # layer 3, head 1: the key each token gives its largest weight
after = slice(congress + 1, None)  # the tokens after "Congress" (the earlier ones cannot see it)
print(f"layer 3, head 1: {int((looks_at[after] == congress).sum())} of the {len(ref_labels) - congress - 1} tokens "
      f"after ' Congress' give it their largest weight")
print(f"layer 1, head 3: {int((maps[0][2].argmax(-1) >= torch.arange(len(ref_labels)) - 1).sum())} of "
      f"{len(ref_labels)} tokens give their largest weight to themselves or the token just before")

# %% [markdown]
# Three kinds of head are easy to spot. Some keep to the diagonal: each token looks at itself and the
# token just before it (layer 1, head 3; the second line above counts it), the local context that every
# later layer builds on. Many park much of their weight on the first token or two, a resting place when
# nothing else in the sentence matters to them. And some reach back to one particular earlier word: in
# layer 3, head 1, most tokens give their largest weight to *Congress*, the subject of the sentence (the
# first line above counts them). None of this was programmed; it is what predicting the next token
# taught the model. (Heads of a small model trained on 20M tokens of speeches are cruder than GPT-2's,
# but the same kinds appear there; see Clark et al., 2019, *What Does BERT Look At?*, for a study of such
# patterns.)

# %% [markdown]
# ## 7. PyTorch's fused kernel: `scaled_dot_product_attention`
#
# Our forward pass writes the full `(t, t)` score matrix to memory, then the mask, then the
# softmax, then multiplies by $V$: four passes over a matrix that grows with the square of the
# length. `torch.nn.functional.scaled_dot_product_attention` computes
# $\mathrm{softmax}(QK^\top/\sqrt{d} + \text{mask})V$ in one call and, on GPUs, dispatches to
# FlashAttention (Dao et al., 2022, *FlashAttention: Fast and Memory-Efficient Exact Attention with
# IO-Awareness*), which processes the matrix in tiles that never leave fast on-chip memory.
# It is **exact**, not an approximation. Let us check that on random inputs:

# %%
def manual_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    t = q.shape[-2]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(torch.triu(torch.ones(t, t, dtype=torch.bool, device=q.device), 1), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


# %%
# NBVAL_CHECK_OUTPUT
torch.manual_seed(1)
q, k, v = torch.randn(3, 2, 4, 10, 16).unbind(0)  # (batch=2, heads=4, tokens=10, head_dim=16)
fused = F.scaled_dot_product_attention(q, k, v, is_causal=True)
print(fused.shape, torch.allclose(fused, manual_attention(q, k, v), atol=1e-5))

# %% [markdown]
# And the speed, at a size picked by the profile (numbers vary by machine and are not checked):

# %%
device = get_device()
b, h, t_len, hd = pick(tiny=(2, 4, 128, 32), default=(4, 8, 512, 64), gpt2=(8, 12, 1024, 64))
q, k, v = torch.randn(3, b, h, t_len, hd, device=device).unbind(0)


def bench(fn, repeats: int = pick(tiny=3, default=10)) -> float:
    """Median wall time of fn() in milliseconds (synchronising the GPU so the clock is honest)."""
    times = []
    for _ in range(repeats + 1):  # the first call warms up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times[1:])[len(times[1:]) // 2] * 1000


with torch.no_grad():
    t_manual = bench(lambda: manual_attention(q, k, v))
    t_fused = bench(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
print(f"batch={b} heads={h} tokens={t_len} head_dim={hd} on {device}")
print(f"hand-written: {t_manual:.2f} ms   SDPA: {t_fused:.2f} ms   speed-up: {t_manual / t_fused:.1f}x")

# %% [markdown]
# ## 8. The package version
#
# `gpt2_core.model.attention.MultiHeadAttention` is our batched module with the hand-written softmax
# replaced by SDPA (and a KV cache, next section). It uses the same parameter names, so our weights
# load straight into it:

# %%
# NBVAL_CHECK_OUTPUT
from gpt2_core.model.attention import KVCache, MultiHeadAttention

torch.manual_seed(2)
ours = BatchedMultiHeadAttention(16, 16, context_length=32, dropout=0.0, num_heads=4).eval()
package = MultiHeadAttention(16, 16, context_length=32, dropout=0.0, num_heads=4).eval()
print(package.load_state_dict(ours.state_dict()))
x = torch.randn(3, 20, 16)
with torch.no_grad():
    print("ours == gpt2_core:", torch.allclose(ours(x), package(x), atol=1e-6))

# %% [markdown]
# ## 9. The KV cache
#
# To generate text, GPT runs once per new token. Without a cache, step $n$ recomputes keys and
# values for all $n$ tokens, although only the newest one is new: the keys and values of earlier
# tokens never change (they only depend on earlier tokens, thanks to the causal mask). A **KV
# cache** stores them: each step computes $q, k, v$ for the new token only, appends $k, v$ to the
# cache, and lets the new query attend to everything stored. Work per step drops from $O(n)$
# projections to $O(1)$.
#
# Figure 10 shows the cache filling up: the prompt's keys and values are computed once (prefill),
# then every step computes them for one new token and reads all earlier ones back. The new query
# still attends to every position, so the attention itself costs $O(n)$ per step; only the
# projections and the feed-forward layers are saved.

# %%
from gpt2_core.figures import kv_cache_diagram

fig = kv_cache_diagram(tokens, prompt_len=3, title="Figure 10: the KV cache while generating after a 3-token prompt")
plt.show()

# %% [markdown]
# `KVCache` preallocates room for every layer's keys and values; `update` writes the new ones,
# `advance` moves the position once all layers have run. Decoding our 20 tokens one at a time
# must give exactly the rows of the full forward pass:

# %%
# NBVAL_CHECK_OUTPUT
cache = KVCache(n_layers=1, batch=3, n_heads=4, head_dim=4, max_len=32, device="cpu")
steps = []
with torch.no_grad():
    for i in range(x.shape[1]):
        steps.append(package(x[:, i:i + 1], cache, layer=0))  # one new token per step
        cache.advance(1)
    incremental = torch.cat(steps, dim=1)
    print("incremental == full:", torch.allclose(incremental, package(x), atol=1e-5), "tokens cached:", cache.pos)

# %% [markdown]
# The cache also accepts several new tokens at once (a prompt, then one token at a time): the new
# queries then get a mask that lets them see the whole cached prefix plus the earlier new tokens.

# %%
# NBVAL_CHECK_OUTPUT
cache = KVCache(1, 3, 4, 4, 32, "cpu")
with torch.no_grad():
    pieces = []
    for start, stop in [(0, 7), (7, 8), (8, 15), (15, 20)]:
        pieces.append(package(x[:, start:stop], cache, 0))
        cache.advance(stop - start)
    print("chunked == full:", torch.allclose(torch.cat(pieces, 1), package(x), atol=1e-5))

# %% [markdown]
# ## Results
#
# The chapter's headline numbers, computed above in this run, go to `results/ch03.json`:

# %%
from gpt2_core.course.results import write_results

with torch.no_grad():
    q_small, k_small, v_small = torch.randn(3, 2, 4, 10, 16).unbind(0)
    sdpa_equal = torch.allclose(manual_attention(q_small, k_small, v_small),
                                F.scaled_dot_product_attention(q_small, k_small, v_small, is_causal=True), atol=1e-6)
ch03 = {"seconds": round(time.perf_counter() - notebook_start, 1), "sdpa_equals_hand_written": sdpa_equal,
        "sdpa_speedup": round(t_manual / t_fused, 2), "sdpa_benchmark_shape": [b, h, t_len, hd],
        "device": device.type}
print(write_results(3, ch03).name, ch03)

# %% [markdown]
# ## Summary: what you built, and what comes next
#
# - Attention mixes token vectors with weights computed from the tokens themselves:
#   `softmax(scores) @ values`.
# - Learned query/key/value projections decide what "relevant" means; dividing scores by
#   $\sqrt{d}$ keeps their variance at 1 so the softmax stays trainable.
# - The causal mask ($-\infty$ above the diagonal, before the softmax) stops tokens from seeing the
#   future; as a buffer it follows the module across devices without being trained.
# - Multi-head attention = several heads in parallel; batched, it is one fused projection plus a
#   split/merge of the last dimension with `view`/`transpose`.
# - `scaled_dot_product_attention` computes the same thing, faster; the KV cache reuses past keys
#   and values during generation.
#
# From now on the course uses `gpt2_core.model.attention.MultiHeadAttention`.
#
# **Next:** attention is one half of a transformer block. Chapter 4 adds the other half (the
# feed-forward network), LayerNorm and shortcut connections, stacks the blocks into GPT-2, and
# checks the result against OpenAI's weights.
#
# ## Exercises
#
# Fill in each function and run its cell; the checker compares your function with the reference on
# a few inputs. (Until you do, the cell reports "not attempted".) Each of exercises 1-3 changes
# something the chapter built: who shares keys, which keys a query sees, and what padding does; 4 is an
# experiment. Reference solutions are in `gpt2_core/exercises/solutions/ch03.py`, for after you have
# tried.
#
# **1. Grouped-query attention.** The KV cache (section 9) stores a key and a value per head, per
# layer, per token; for long texts and large batches it can outgrow the weights (chapter 4's exercise
# 3 puts a number on it). Many recent models (the largest Llama 2, Touvron et al., 2023; Mistral's
# first model, Jiang et al., 2023) therefore give several query heads *one shared* key/value head: grouped-query
# attention (Ainslie et al., 2023, *GQA: Training Generalized Multi-Query Transformer Models from
# Multi-Head Checkpoints*). Write `grouped_query_attention(q, k, v)` for `q` of shape
# `(batch, heads, tokens, head_dim)` and `k`, `v` of shape `(batch, groups, tokens, head_dim)`, where
# `groups` divides `heads`: causal attention in which query heads `0 … heads/groups − 1` all use key/value
# head 0, the next `heads/groups` use head 1, and so on. With `groups == heads` it is the chapter's
# multi-head attention; with `groups == 1`, multi-query attention. You may call
# `F.scaled_dot_product_attention` once each query head has the right keys. Hint: print
# `torch.arange(2).repeat(3)` and `torch.arange(2).repeat_interleave(3)`; which order do the groups need?
# Then: by what factor does the cache shrink?

# %%
from gpt2_core.exercises import check_exercise


def grouped_query_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    raise NotImplementedError  # your code here


_ = check_exercise("ch03.grouped_query_attention", grouped_query_attention)


# %% [markdown]
# **2.** Sliding-window attention. Long-context models such as Longformer and Mistral let each token
# attend only to the last `window` tokens, itself included, so the cost of attention grows linearly
# with the length instead of quadratically. Write `local_causal_mask(num_queries, num_keys, window)`,
# returning a **bool** tensor of shape `(num_queries, num_keys)` that is `True` where a query may attend
# (the convention of `scaled_dot_product_attention`'s `attn_mask`; a float mask would be *added* to
# the scores). As with the KV cache (section 9), the queries are the *last* `num_queries` of the
# `num_keys` positions: query `i` sits at position `num_keys - num_queries + i`. Hint: compute, for
# every (query, key) pair, how far back the key is; section 4's mask is the case `window >= num_keys`.
# The checker compares with a brute-force loop, decoding one token after a cache included.

# %%
def local_causal_mask(num_queries: int, num_keys: int, window: int) -> torch.Tensor:
    raise NotImplementedError  # your code here


_ = check_exercise("ch03.local_causal_mask", local_causal_mask)


# %% [markdown]
# **3.** Attention over a padded batch. To generate from several prompts of different lengths at
# once, the prompts are padded on the **left**, so that every one ends at the last position. Write
# `padded_attention(q, k, v, lengths)` for `q, k, v` of shape `(batch, heads, tokens, head_dim)` and
# `lengths` of shape `(batch,)`, where the last `lengths[b]` positions of sequence `b` are real tokens:
# causal attention in which no query attends to a pad, with zeros as the output rows of pad positions.
# The output of the real tokens must equal attention over the real tokens alone. Hint: combine the
# causal mask with a mask of the real keys built from `lengths`; then ask what softmax gives for a row
# whose scores are all `-inf`.

# %%
def padded_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    raise NotImplementedError  # your code here


_ = check_exercise("ch03.padded_attention", padded_attention)

# %% [markdown]
# **4.** (No checker.) Plot how the time of `manual_attention` and of
# `scaled_dot_product_attention` grows with the number of tokens (64 to 2048). Is it quadratic?
#
# ## References
#
# - D. Bahdanau, K. Cho, Y. Bengio (2015). *Neural Machine Translation by Jointly Learning to Align
#   and Translate.* ICLR. https://arxiv.org/abs/1409.0473
# - A. Vaswani et al. (2017). *Attention Is All You Need.* NeurIPS. https://arxiv.org/abs/1706.03762
# - J. Ainslie, J. Lee-Thorp, M. de Jong, Y. Zemlyanskiy, F. Lebrón, S. Sanghai (2023). *GQA: Training
#   Generalized Multi-Query Transformer Models from Multi-Head Checkpoints.* EMNLP.
#   https://arxiv.org/abs/2305.13245
# - T. Dao, D. Y. Fu, S. Ermon, A. Rudra, C. Ré (2022). *FlashAttention: Fast and Memory-Efficient
#   Exact Attention with IO-Awareness.* NeurIPS. https://arxiv.org/abs/2205.14135
