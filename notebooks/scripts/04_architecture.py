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
# # Chapter 4 — The GPT-2 architecture
#
# We have token embeddings (chapter 2) and causal multi-head attention (chapter 3). This chapter
# assembles them into the full GPT-2 model of Radford et al. (2019), *Language Models are
# Unsupervised Multitask Learners*:
#
# ```
# token ids ─► token embedding + position embedding ─► dropout
#           ─► N × TransformerBlock:  x = x + Attention(LayerNorm(x))
#                                     x = x + FeedForward(LayerNorm(x))
#           ─► final LayerNorm ─► linear head (tied to the token embedding) ─► logits
# ```
#
# We build each missing piece by hand (layer normalisation, the GELU activation, the feed-forward
# network, shortcut connections), check each against PyTorch or `gpt2_core`, put together a whole
# GPT inline and prove it equal to `gpt2_core.model.GPTModel`. Then we count parameters and memory
# for the four GPT-2 sizes, see what weight tying saves, and let the (untrained) model generate text.

# %%
import math
import time

notebook_start = time.perf_counter()  # the notebook's wall time goes into results/chNN.json

import matplotlib.pyplot as plt
import pandas as pd
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display
from torch import nn

from gpt2_core.model.attention import MultiHeadAttention
from gpt2_core.model.config import GPTConfig
from gpt2_core.model.gpt import GPTModel
from gpt2_core.profile import describe, get_device, pick, profile_name, seed_everything
from gpt2_core.text.ranks import gpt2_encoding

print(describe())
seed_everything(123)
torch.set_printoptions(precision=4, sci_mode=False)

cfg = GPTConfig.preset(pick(tiny="tiny", default="default", gpt2="gpt2"))
print(cfg)

# %% [markdown]
# `GPTConfig` holds the handful of numbers that define the model: vocabulary size, context length
# (the most tokens it can see), embedding width, number of heads and of layers, dropout rate and
# whether the query/key/value projections have a bias. The profile picks the size: GPT-2 small
# itself under `gpt2`, scaled-down shapes otherwise (same code, fewer numbers).
#
# ## 1. Layer normalisation
#
# Deep networks train badly when the scale of activations drifts from layer to layer. **Layer
# normalisation** (Ba, Kiros & Hinton, 2016, *Layer Normalization*) rescales each token's vector to
# mean 0 and variance 1 over its features, then applies a learned per-feature scale and shift (so
# the network can undo it where useful):
#
# $$\mathrm{LN}(x) = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} \odot \gamma + \beta$$
#
# $\mu, \sigma^2$ are the mean and the *biased* variance (divide by $n$, not $n-1$) of the vector's
# own entries; $\epsilon = 10^{-5}$ avoids division by zero. Unlike batch norm, nothing depends on
# the other examples in the batch, so training and generation behave the same.

# %%
class LayerNorm(nn.Module):
    def __init__(self, emb_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(emb_dim))  # gamma: scale
        self.bias = nn.Parameter(torch.zeros(emb_dim))  # beta: shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


torch.manual_seed(0)
x = torch.randn(2, 5) * 3 + 7  # two vectors far from mean 0 / variance 1
ln = LayerNorm(5)
with torch.no_grad():
    y = ln(x)
print("before: mean", x.mean(-1), " var", x.var(-1, unbiased=False))
print("after:  mean", y.mean(-1), " var", y.var(-1, unbiased=False))

# %% [markdown]
# Same as PyTorch's `nn.LayerNorm` (and `gpt2_core`'s `LayerNorm`, which calls the fused
# `F.layer_norm`), also with non-trivial $\gamma, \beta$:

# %%
# NBVAL_CHECK_OUTPUT
from gpt2_core.model.gpt import LayerNorm as CoreLayerNorm

torch.manual_seed(1)
ln = LayerNorm(16)
with torch.no_grad():
    ln.weight.normal_(), ln.bias.normal_()
reference, core = nn.LayerNorm(16), CoreLayerNorm(16)
reference.load_state_dict(ln.state_dict()), core.load_state_dict(ln.state_dict())
x = torch.randn(4, 7, 16) * 5
with torch.no_grad():
    print("ours == nn.LayerNorm:", torch.allclose(ln(x), reference(x), atol=1e-5))
    print("ours == gpt2_core:   ", torch.allclose(ln(x), core(x), atol=1e-5))

# %% [markdown]
# ## 2. GELU
#
# The feed-forward network needs a non-linearity. GPT-2 uses the **Gaussian Error Linear Unit**
# (Hendrycks & Gimpel, 2016, *Gaussian Error Linear Units (GELUs)*): $\mathrm{GELU}(x) = x\,\Phi(x)$,
# where $\Phi$ is the standard normal CDF. It is ReLU made smooth: close to $x$ for large $x$, close
# to 0 for very negative $x$, but with a small negative dip. Unlike ReLU, whose gradient is exactly 0
# for every negative input, GELU's gradient is exactly 0 only at the bottom of the dip (near
# $x \approx -0.75$) and stays clearly non-zero for moderately negative inputs, so they still pass a
# learning signal. Far below zero GELU flattens out like ReLU: its gradient is close to 0 there too
# (Figure 1 below; the line under it prints a few values). GPT-2 was trained with a cheaper **tanh
# approximation**:
#
# $$\mathrm{GELU}(x) \approx \tfrac12 x \left(1 + \tanh\left[\sqrt{2/\pi}\,(x + 0.044715\,x^3)\right]\right)$$
#
# To load OpenAI's weights and get the same outputs, we must use the same approximation.

# %%
class GELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


xs = torch.linspace(-4, 4, 801)
gelu_tanh, gelu_exact = GELU()(xs), F.gelu(xs)  # F.gelu defaults to the exact erf form
print(f"largest |tanh approx - exact| on [-4, 4]: {(gelu_tanh - gelu_exact).abs().max():.2e}")

# %%
# NBVAL_CHECK_OUTPUT
from gpt2_core.model.gpt import GELU as CoreGELU

print("ours == F.gelu(approximate='tanh'):", torch.allclose(gelu_tanh, F.gelu(xs, approximate="tanh"), atol=1e-6))
print("ours == gpt2_core GELU:            ", torch.allclose(gelu_tanh, CoreGELU()(xs), atol=1e-6))

# %%
xg = xs.clone().requires_grad_(True)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
for name, fn in [("GELU (tanh)", GELU()), ("GELU (erf)", F.gelu), ("ReLU", F.relu)]:
    out = fn(xg)
    (grad,) = torch.autograd.grad(out.sum(), xg)
    axes[0].plot(xs, out.detach(), label=name, linestyle="--" if "erf" in name else "-")
    axes[1].plot(xs, grad, label=name, linestyle="--" if "erf" in name else "-")
axes[0].set_title("activation")
axes[1].set_title("derivative")
for ax in axes:
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_xlabel("x")
fig.suptitle("Figure 1: GELU against ReLU, and their slopes")
plt.tight_layout()
plt.show()

# %%
slope_at = torch.tensor([-4.0, -3.0, -2.0, -1.0, -0.5], requires_grad=True)
(slopes,) = torch.autograd.grad(GELU()(slope_at).sum(), slope_at)
print("GELU's slope at", ", ".join(f"x = {x:g}: {g:+.4f}" for x, g in zip(slope_at.tolist(), slopes.tolist(),
                                                                         strict=True)))

# %% [markdown]
# The two GELUs overlap at this scale. Note the derivative: ReLU's jumps from 0 to 1 and is exactly
# 0 for every negative input (a "dead" unit gets no gradient). GELU's is smooth and, as the line above
# prints, clearly non-zero at $x = -1$ and $-2$ (it is exactly 0 only at the bottom of the dip), but
# close to 0 from about $-3$ down: a unit pushed far into the negative side learns almost as little as
# a dead ReLU.
#
# ## 3. The feed-forward network
#
# After attention has mixed information *between* tokens, each token is processed on its own by a
# small MLP: widen to 4× the embedding size, GELU, project back. The wide middle gives the model
# room to compute: with weights of 4d² (attention) against 8d² (feed-forward), two thirds of each
# block's weights live here (the cell below counts them, biases included; section 7 counts where all
# of GPT-2's parameters live).

# %%
class FeedForward(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.emb_dim, 4 * cfg.emb_dim)
        self.act = GELU()
        self.proj = nn.Linear(4 * cfg.emb_dim, cfg.emb_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.act(self.fc(x)))


ff = FeedForward(cfg)
x = torch.randn(2, 3, cfg.emb_dim)
ff_params = sum(p.numel() for p in ff.parameters())
att_params = sum(p.numel() for p in MultiHeadAttention(cfg.emb_dim, cfg.emb_dim, cfg.context_length, 0.0,
                                                          cfg.n_heads, cfg.qkv_bias).parameters())
print(ff(x).shape, f"feed-forward parameters: {ff_params:,}; attention's: {att_params:,}; "
      f"the feed-forward network's share: {ff_params / (ff_params + att_params):.1%}")

# %% [markdown]
# ## 4. Shortcut connections
#
# Stacking many layers makes gradients shrink (or blow up) as they flow backwards through each
# layer in turn. **Shortcut** (residual) connections (He et al., 2016, *Deep Residual Learning for
# Image Recognition*) add each layer's input to its output, $x \leftarrow x + f(x)$, so the gradient
# has a direct path, the identity, to every earlier layer.
#
# A small experiment: a 12-layer MLP, identical weights, with and without shortcuts. We backpropagate
# one loss and look at the mean absolute gradient of each layer's weights.

# %%
class DeepMLP(nn.Module):
    def __init__(self, width: int, depth: int, shortcut: bool) -> None:
        super().__init__()
        self.shortcut = shortcut
        self.layers = nn.ModuleList(nn.Sequential(nn.Linear(width, width), GELU()) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = x + layer(x) if self.shortcut else layer(x)
        return x


def layer_gradients(shortcut: bool, width: int = 16, depth: int = 12) -> list[float]:
    torch.manual_seed(123)  # same weights and data for both variants
    model = DeepMLP(width, depth, shortcut)
    x, target = torch.randn(32, width), torch.randn(32, width)
    F.mse_loss(model(x), target).backward()
    return [layer[0].weight.grad.abs().mean().item() for layer in model.layers]


grads = pd.DataFrame({"without shortcut": layer_gradients(False), "with shortcut": layer_gradients(True)},
                     index=pd.Index(range(1, 13), name="layer"))
print(grads.to_string(float_format=lambda v: f"{v:.2e}"))

# %%
ax = grads.plot.bar(figsize=(9, 3.5), logy=True, rot=0)
ax.set_ylabel("mean |gradient| (log scale)")
ax.set_title("Figure 2: gradient reaching each layer")
ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
plt.tight_layout()
plt.show()
first_over_last = grads.iloc[0] / grads.iloc[-1]
display(Markdown(f"Without shortcuts the gradient reaching layer 1 is {first_over_last['without shortcut']:.1e} "
                 f"times the gradient at layer 12: the first layers barely learn. With shortcuts the ratio is "
                 f"{first_over_last['with shortcut']:.2f}: the gradient stays at the same scale throughout."))

# %% [markdown]
#
# ## 5. The transformer block
#
# A block applies attention, then the feed-forward network, each wrapped the same way:
# normalise → sublayer → dropout → add to the shortcut. GPT-2 normalises *before* each sublayer
# ("pre-norm"); the original Transformer normalised after the addition ("post-norm"). Pre-norm
# keeps the shortcut path a pure sum, which makes deep stacks train more stably: post-norm
# Transformers need a careful learning-rate warm-up to train at all, while pre-norm ones tolerate
# larger rates and shorter warm-ups (Xiong et al., 2020, *On Layer Normalization in the Transformer
# Architecture*). GPT-1 still warmed up over its first 2,000 updates (Radford et al., 2018, *Improving
# Language Understanding by Generative Pre-Training*, §4.1), and chapter 5 warms up briefly too.
#
# Attention is the `gpt2_core` module we proved equal to our own in chapter 3. The block keeps the
# shape `(batch, tokens, emb_dim)`, so blocks stack. Figure 3 follows one block (B = batch, T = tokens,
# d = `emb_dim`; orange = layers with weights that train). The line through the middle is the
# **residual stream**: each sublayer reads a normalised copy of it, and its output is *added* back at a
# "+", while the shortcut above carries `x` itself past the sublayer. So the block computes
# `x = x + attn(norm(x))`, then `x = x + ff(norm(x))`, and nothing on the shortcut ever rescales `x`.

# %%
from gpt2_core.figures import flow_diagram, residual_diagram

fig = residual_diagram([["LayerNorm", "multi-head\nattention,\ndropout"],
                        ["LayerNorm", "feed-forward\nd → 4d → d,\ndropout"]],
                       "Figure 3: one GPT-2 transformer block (pre-norm): two sublayers, each added back to x",
                       highlight=[0, 1, 2, 3], sums=["x + attn(norm(x))", "x + ff(norm(x))"])
plt.show()

# %%
class TransformerBlock(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.norm1 = LayerNorm(cfg.emb_dim)
        self.att = MultiHeadAttention(cfg.emb_dim, cfg.emb_dim, cfg.context_length, cfg.drop_rate,
                                      cfg.n_heads, cfg.qkv_bias)
        self.norm2 = LayerNorm(cfg.emb_dim)
        self.ff = FeedForward(cfg)
        self.drop = nn.Dropout(cfg.drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.att(self.norm1(x)))
        return x + self.drop(self.ff(self.norm2(x)))


block = TransformerBlock(cfg)
print(block(torch.randn(2, 5, cfg.emb_dim)).shape)

# %% [markdown]
# ## 6. The whole model
#
# Token and position embeddings, dropout, `n_layers` blocks, a final LayerNorm and a linear layer
# from `emb_dim` to `vocab_size` that produces one **logit** per vocabulary entry: the unnormalised
# log-probability of each possible next token, at every position. The whole model, with the shape on
# every arrow (V = vocabulary size, L = `n_layers`):

# %%
fig = flow_diagram(["token ids", "token +\nposition\nembeddings", "L transformer\nblocks", "final\nLayerNorm",
                    "output head\n(tied to the\ntoken embedding)", "logits"],
                   ["(B, T)", "(B, T, d)", "(B, T, d)", "(B, T, d)", "(B, T, V)"], "Figure 4: the whole GPT-2 model")
plt.show()

# %%
class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.emb_dim)
        self.pos_emb = nn.Embedding(cfg.context_length, cfg.emb_dim)
        self.drop_emb = nn.Dropout(cfg.drop_rate)
        self.blocks = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.n_layers))
        self.final_norm = LayerNorm(cfg.emb_dim)
        self.out_head = nn.Linear(cfg.emb_dim, cfg.vocab_size, bias=False)
        self.out_head.weight = self.tok_emb.weight  # weight tying (section 8)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        x = self.drop_emb(self.tok_emb(idx) + self.pos_emb(torch.arange(t, device=idx.device)))
        for block in self.blocks:
            x = block(x)
        return self.out_head(self.final_norm(x))


# %% [markdown]
# Our inline model uses the same parameter names as `gpt2_core.model.GPTModel`, so the package's
# weights load into it unchanged. Same weights must give the same logits:

# %%
# NBVAL_CHECK_OUTPUT
torch.manual_seed(123)
core_model = GPTModel(cfg).eval()
inline_model = GPT(cfg).eval()
print(inline_model.load_state_dict(core_model.state_dict()))
idx = torch.randint(0, cfg.vocab_size, (2, 10))
with torch.no_grad():
    logits = inline_model(idx)
    print("logits shape (batch, tokens, vocab) ->", tuple(logits.shape[:2]), "x vocab_size")
    print("inline GPT == gpt2_core GPTModel:", torch.allclose(logits, core_model(idx), atol=1e-4))

# %% [markdown]
# The package version adds what the rest of the course needs: GPT-2's initialisation (weights
# $\mathcal N(0, 0.02)$, residual projections scaled by $1/\sqrt{2 n_\text{layers}}$ so the sum
# of many blocks does not grow with depth), clear errors for bad input, a KV cache for generation,
# and loading/saving Hugging Face checkpoints (section 10). It also refuses what the model cannot
# handle, with a message saying why:

# %%
for bad in (torch.tensor([[1, cfg.vocab_size]]), torch.zeros(1, cfg.context_length + 1, dtype=torch.long),
            torch.tensor([[0.5, 1.5]])):
    try:
        core_model(bad)
    except (ValueError, TypeError) as err:
        print(f"{type(err).__name__}: {err}")

# %% [markdown]
# ## 7. Counting parameters and memory
#
# Where do the parameters live? Per block: attention has $3d^2 + 3d$ (fused q, k, v) plus
# $d^2 + d$ (output projection); the feed-forward network $4d^2 + 4d$ plus $4d^2 + d$; two
# LayerNorms $4d$. That is about $12d^2$ per block, plus $V d$ for token embeddings and $T d$ for
# positions. We build the four GPT-2 sizes on PyTorch's **meta device**: tensors with shapes but no
# storage, so even the 1.5-billion-parameter model "builds" instantly without using memory.

# %%
# NBVAL_CHECK_OUTPUT
def size_row(name: str) -> dict:
    preset = GPTConfig.preset(name)
    with torch.device("meta"):
        model = GPTModel(preset)
    total = model.num_parameters()  # tied: the output head shares the token embedding
    embeddings = model.tok_emb.weight.numel() + model.pos_emb.weight.numel()
    return {"model": name, "layers": preset.n_layers, "emb_dim": preset.emb_dim, "heads": preset.n_heads,
            "parameters": total, "in blocks": total - embeddings - 2 * preset.emb_dim,
            "untied": total + preset.vocab_size * preset.emb_dim,
            "fp32 MiB": round(total * 4 / 2**20), "AdamW training MiB": round(total * 16 / 2**20)}


sizes = pd.DataFrame([size_row(n) for n in ["gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"]]).set_index("model")
print(sizes.to_string(formatters={c: "{:,}".format for c in ["parameters", "in blocks", "untied"]}))

# %% [markdown]
# - **parameters** are the released sizes: 124M, 355M, 774M and 1.56B.
# - **fp32 MiB**: 4 bytes per parameter, just to hold the weights. Half precision halves it.
# - **AdamW training MiB**: weights + gradients + AdamW's two moment estimates, 16 bytes per
#   parameter, before counting any activations. This is why training needs far more memory than
#   inference.
#
# Where do GPT-2 small's parameters live? Grouped by the part of the model they belong to:

# %%
with torch.device("meta"):
    gpt2_small = GPTModel(GPTConfig.preset("gpt2"))
share = {"token embedding (= output head)": 0, "position embedding": 0, "attention": 0, "feed-forward": 0,
         "LayerNorms": 0}
for name, p in gpt2_small.named_parameters():  # the tied head is listed once, as tok_emb
    part = ("token embedding (= output head)" if name.startswith("tok_emb") else
            "position embedding" if name.startswith("pos_emb") else
            "attention" if ".att." in name else "feed-forward" if ".ff." in name else "LayerNorms")
    share[part] += p.numel()
total = sum(share.values())
fig, ax = plt.subplots(figsize=(7, 3))
ax.barh(list(share), [v / 1e6 for v in share.values()])
for i, v in enumerate(share.values()):
    ax.text(v / 1e6, i, f" {v / 1e6:.1f}M ({v / total:.0%})" if v >= 1e5 else f" {v:,} ({v / total:.2%})", va="center")
ax.set(xlabel="parameters (millions)", title=f"Figure 5: where GPT-2 small's {total / 1e6:.1f}M parameters live",
       xlim=(0, max(share.values()) / 1e6 * 1.35))
ax.invert_yaxis()
plt.show()

# %% [markdown]
# The feed-forward layers are the largest single part, but not the majority: the token embedding,
# which is also the output head, is almost a third of the model on its own.
#
# ## 8. Weight tying
#
# The token embedding maps token id → vector (a `vocab_size × emb_dim` matrix); the output head
# maps vector → one score per token id (an `emb_dim → vocab_size` linear layer, whose weight is the
# same shape). GPT-2 uses **one** matrix for both (Press & Wolf, 2017, *Using the Output Embedding to
# Improve Language Models*): a token's input vector is also the direction that scores it as output.
# It saves $V \cdot d$ parameters, almost a third of GPT-2 small:

# %%
# NBVAL_CHECK_OUTPUT
print("out_head.weight is tok_emb.weight:", core_model.out_head.weight is core_model.tok_emb.weight)
small = sizes.loc["gpt2"]
saved = small["untied"] - small["parameters"]
print(f"gpt2: {small['parameters']:,} with tying, {small['untied']:,} without "
      f"(tying saves {saved:,}, {saved / small['parameters']:.1%} of the tied model's size)")

# %% [markdown]
# `model.parameters()` lists a shared tensor once, which is why `num_parameters()` counts it once.
# The profile's model, with GPT-2's vocabulary as in this chapter, has this many:

# %%
print(f"{profile_name()} profile, {cfg.vocab_size:,}-token vocabulary: {core_model.num_parameters():,} parameters "
      f"({core_model.num_parameters() * 4 / 2**20:.1f} MiB in fp32)")

# %% [markdown]
# ## 9. Generating text (badly, for now)
#
# A language model generates by repeatedly predicting the next token: run the model on the text so
# far, take the logits at the **last** position, pick a token, append it, repeat. The simplest pick
# is **greedy**: the token with the highest logit. If the text grows beyond the context length we
# keep only the last `context_length` tokens. (Chapter 5 adds sampling and uses the KV cache.)

# %%
def generate_greedy(model: nn.Module, idx: torch.Tensor, max_new_tokens: int, context_length: int) -> torch.Tensor:
    for _ in range(max_new_tokens):
        with torch.no_grad():
            logits = model(idx[:, -context_length:])  # (batch, tokens, vocab)
        next_id = logits[:, -1].argmax(dim=-1, keepdim=True)  # (batch, 1)
        idx = torch.cat([idx, next_id], dim=1)
    return idx


enc = gpt2_encoding()
device = get_device()
model = GPTModel(cfg).to(device).eval()
prompt = "Hello, I am"
start = torch.tensor([enc.encode(prompt)], device=device)
t0 = time.perf_counter()
out = generate_greedy(model, start, max_new_tokens=pick(tiny=8, default=20, gpt2=30), context_length=cfg.context_length)
print(f"{out.shape[1] - start.shape[1]} new tokens in {time.perf_counter() - t0:.2f}s")
print(repr(enc.decode(out[0].tolist())))

# %% [markdown]
# Gibberish, as expected: the weights are random. Chapter 5 trains a model of this architecture (with a
# smaller vocabulary, section 11 says why).
#
# ## 10. Hugging Face checkpoints: the same model, other weights
#
# OpenAI's GPT-2 weights are distributed in Hugging Face's format (`config.json` +
# `model.safetensors`). Their layout differs from ours in names and in one detail: GPT-2's
# projection layers are `Conv1D` modules that store weights transposed compared with `nn.Linear`.
# `gpt2_core.model.hf_weights` handles the mapping: `from_hf(folder)` loads a checkpoint,
# `save_hf(model, folder)` writes one that `transformers` loads back.
#
# `transformers` is a test dependency of the course, not a runtime one, so this cell runs only if it
# is installed: it builds a random `GPT2LMHeadModel`, saves it, loads it into our `GPTModel` and
# compares logits, then exports ours back.

# %%
import tempfile
import warnings

try:
    with warnings.catch_warnings():  # tqdm warns when ipywidgets is missing: harmless for us
        warnings.simplefilter("ignore")
        import transformers
except ImportError:
    transformers = None
    print("transformers is not installed; skipping the round trip (pip install transformers to try it)")

if transformers is not None:
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    hf_cfg = transformers.GPT2Config(n_embd=48, n_head=3, n_layer=2, n_positions=32, vocab_size=300,
                                     bos_token_id=None, eos_token_id=None)
    torch.manual_seed(0)
    theirs = transformers.GPT2LMHeadModel(hf_cfg).eval()
    from gpt2_core.model.hf_weights import from_hf, save_hf

    with tempfile.TemporaryDirectory() as tmp:
        theirs.save_pretrained(tmp)
        ours = from_hf(tmp)
        save_hf(ours, f"{tmp}/export")
        back = transformers.GPT2LMHeadModel.from_pretrained(f"{tmp}/export").eval()
    ids = torch.randint(0, 300, (2, 32))
    with torch.no_grad():
        print("transformers -> GPTModel, same logits:", torch.allclose(theirs(ids).logits, ours(ids), atol=1e-4))
        print("GPTModel -> transformers, same logits:", torch.allclose(back(ids).logits, ours(ids), atol=1e-4))

# %% [markdown]
# Under the `gpt2` profile (a GPU and network), `from_pretrained("gpt2")` (in `gpt2_core.model.hf_weights`) downloads
# OpenAI's real weights once and the greedy loop above produces fluent English. Offline it raises a
# clear `WeightsDownloadError` explaining how to load a local copy instead.

# %%
from gpt2_core.model.hf_weights import WeightsDownloadError, from_pretrained

if profile_name() == "gpt2":
    try:
        openai = from_pretrained("gpt2").to(device)
        out = generate_greedy(openai, start, max_new_tokens=30, context_length=openai.cfg.context_length)
        print(repr(enc.decode(out[0].tolist())))
    except WeightsDownloadError as err:
        print(err)
else:
    print(f"profile {profile_name()!r}: skipping OpenAI's weights (set GPT2_COURSE_PROFILE=gpt2 to try them)")

# %% [markdown]
# ## 11. Before chapter 5: two tokenizers, two sizes
#
# Chapters 1-4 used GPT-2's tokenizer (50,257 tokens) throughout, and GPT-2's own sizes wherever a
# number was checked against OpenAI's: tiktoken's token ids, the parameter counts of the four released
# models, `transformers`' logits. Chapters 5-8 train and fine-tune on a laptop CPU, and there two things
# change. The model has the profile's size (the `default` profile is the laptop size), and the
# vocabulary is the **course tokenizer**: 8,192 tokens learned by chapter 1's `BPETokenizer.train` on
# the training split of the speeches. (Under the `gpt2` profile chapter 5 keeps GPT-2's tokenizer and
# size.)
#
# Why a smaller vocabulary? The output layer multiplies every position's vector by the whole
# `vocab_size × emb_dim` matrix. For a small model with a large vocabulary that is most of the work; the
# table counts the output layer's share of the training FLOPs with each vocabulary (as
# `gpt2_core.pretraining.flops` counts them for MFU):

# %%
from collections import Counter

from gpt2_core.pretraining.flops import training_flops_per_token
from gpt2_core.pretraining.recipes import course_recipe, course_tokenizer
from gpt2_core.text.corpus import sotu_text

course_tok = course_tokenizer()
recipe = course_recipe()
rows = []
for vocab in sorted({cfg.vocab_size, course_tok.n_vocab}, reverse=True):
    shape = recipe.model_config(vocab)
    with torch.device("meta"):
        n = GPTModel(shape).num_parameters()
    head = 6 * shape.vocab_size * shape.emb_dim  # the output layer's training FLOPs per token
    rows.append({"vocabulary": vocab, "parameters": n,
                 "output layer's share of training FLOPs": head / training_flops_per_token(shape,
                                                                                          shape.context_length, n)})
two = pd.DataFrame(rows).set_index("vocabulary")
print(f"chapter 5's model under the {profile_name()!r} profile ({recipe.preset} shape, "
      f"{recipe.context_length}-token context), with each vocabulary:")
print(two.to_string(formatters={"parameters": "{:,}".format,
                                "output layer's share of training FLOPs": "{:.0%}".format}))
seen = Counter(enc.encode(sotu_text("train"), allowed_special="all"))  # GPT-2's tokens in the speeches
print(f"of GPT-2's {enc.n_vocab:,} tokens, {enc.n_vocab - len(seen):,} never occur in the training split of the "
      f"speeches, and {sum(count < 10 for count in seen.values()):,} more occur fewer than 10 times")
if course_tok.n_vocab != cfg.vocab_size:
    display(Markdown(f"So chapter 5 trains a {two.loc[course_tok.n_vocab, 'parameters'] / 1e6:.1f}M-parameter "
                     f"model with the {course_tok.n_vocab:,}-token course tokenizer, not the "
                     f"{two.loc[cfg.vocab_size, 'parameters'] / 1e6:.1f}M-parameter one that GPT-2's vocabulary "
                     f"would give the same shape."))
else:
    display(Markdown(f"Under this profile chapter 5 keeps GPT-2's tokenizer: a "
                     f"{two.loc[cfg.vocab_size, 'parameters'] / 1e6:.1f}M-parameter model."))

# %% [markdown]
# With GPT-2's vocabulary, the output layer would take the larger share of every training step (the
# table above), and most of its 50,257 tokens, built for web text, are rare in these speeches or absent
# from them (the line under the table counts them). The course measured the trade at an equal CPU
# budget: validation loss of **1.80 bits per byte with the 8,192-token tokenizer against 1.89 with
# GPT-2's** (bits per byte, unlike loss per token, can compare two tokenizers; the measurement is
# described in the docstring of `gpt2_core/course/reference.py`). The course's reference model, which chapters
# 5-7 compare with or start from, uses the same tokenizer and the `default` shape.

# %% [markdown]
# ## Results
#
# The chapter's headline numbers, computed above in this run, go to `results/ch04.json`:

# %%
from gpt2_core.course.results import write_results

ch04 = {"seconds": round(time.perf_counter() - notebook_start, 1),
        "parameters": {name: int(sizes.loc[name, "parameters"]) for name in sizes.index}}
if transformers is not None:
    with torch.no_grad():
        ch04["equals_transformers"] = bool(torch.allclose(theirs(ids).logits, ours(ids), atol=1e-4)
                                           and torch.allclose(back(ids).logits, ours(ids), atol=1e-4))
print(write_results(4, ch04).name, ch04)

# %% [markdown]
# ## Summary: what you built, and what comes next
#
# - **LayerNorm** rescales each token's vector to mean 0, variance 1, then learns a scale and shift.
# - **GELU** (tanh approximation) is GPT-2's smooth ReLU; the **feed-forward** block widens 4×.
# - **Shortcut connections** keep gradients alive through deep stacks; GPT-2 uses **pre-norm**
#   blocks: `x + attn(norm(x))`, `x + ff(norm(x))`.
# - **GPTModel** = embeddings → N blocks → final norm → head tied to the token embedding; our
#   inline model equals `gpt2_core.model.GPTModel` given the same weights.
# - GPT-2 small has 124,439,808 parameters and weight tying saves 38.6M of them (counted in
#   sections 7 and 8); AdamW training needs about 16 bytes per parameter before activations.
#
# - Chapters 1-4 used GPT-2's tokenizer and sizes; chapters 5-8 use the course's 8,192-token
#   tokenizer and the profile's (laptop) size, because a large vocabulary's output layer would be most
#   of a small model's work (section 11).
#
# **Next:** the model is complete but its weights are random, so it writes gibberish (section 9).
# Chapter 5 trains one of this architecture with the course tokenizer: the loss, the optimizer and its
# schedule, a training loop with checkpoints, and a comparison with the course's reference model.
#
# ## Exercises
#
# Each exercise checks itself against the package. Exercise 1 rebuilds a piece of this chapter; 2 and
# 3 put numbers on the cost of running the model; 4 is an experiment. Reference solutions are in
# `gpt2_core/exercises/solutions/ch04.py`, for after you have tried.
#
# **1.** Count the parameters of a `GPTConfig` by formula (remember the tied head, and that
# `qkv_bias=False` removes the q/k/v biases). The checker compares with the real model and, when your
# count is off, says which part it thinks you left out or counted twice.

# %%
from gpt2_core.exercises import check_exercise


def count_parameters(cfg: GPTConfig) -> int:
    raise NotImplementedError  # your code here


_ = check_exercise("ch04.count_parameters", count_parameters)

# %% [markdown]
# **2.** FLOPs per token. How much arithmetic does one token cost? Nearly all of it is matrix
# multiplication, and multiplying a vector by a matrix costs 2 FLOPs (a multiply and an add) per
# weight. Write `flops_per_token(cfg, training=False)`:
#
# - forward: `2 ×` the weights of every matrix multiplication (in each block qkv, out_proj, fc and
#   proj; and the output head, tied or not, since tying shares the *memory* of the weights, not the
#   *work*), plus `2 × n_layers × context_length × emb_dim` for attention's own two matmuls (the
#   scores and the weighted sum each cost `2 × context_length × emb_dim` per token and layer, and the
#   causal mask halves that on average). Embedding lookups, biases, LayerNorms and softmax are cheap
#   next to these and left out;
# - `training=True`: forward plus backward, about 3 × the forward (the backward pass computes
#   gradients with respect to both the inputs and the weights).
#
# Hint: section 7 lists the block's matrices. (Kaplan et al., 2020, *Scaling Laws for Neural Language
# Models*, §2.1, count the same way.) Once it passes, put a number on chapter 5: your run's tokens/s
# times `flops_per_token(cfg, training=True)` is the arithmetic your machine did per second; compare
# it with what its matrix multiplications can do, `gpt2_core.pretraining.flops.measured_matmul_peak()` (in FLOP/s).

# %%
def flops_per_token(cfg: GPTConfig, training: bool = False) -> int:
    raise NotImplementedError  # your code here


_ = check_exercise("ch04.flops_per_token", flops_per_token)


# %% [markdown]
# **3.** The memory of a KV cache. Write `kv_cache_bytes(cfg, batch, num_tokens, dtype)`: the bytes the
# KV cache of chapter 3 needs to hold `batch` sequences of `num_tokens` tokens for a model of shape
# `cfg`, in numbers of type `dtype` (`torch.float32`, `torch.bfloat16`, ...). Hint: what does one layer
# store for one token? `dtype.itemsize` is the size of one number in bytes. Then compare: for GPT-2
# small in bfloat16, how many tokens of cache (batch × length) weigh as much as its 124M weights?

# %%
def kv_cache_bytes(cfg: GPTConfig, batch: int, num_tokens: int, dtype: torch.dtype) -> int:
    raise NotImplementedError  # your code here


_ = check_exercise("ch04.kv_cache_bytes", kv_cache_bytes)

# %% [markdown]
# **4.** (No checker.) Turn the block into a *post-norm* block (`x = norm(x + sublayer(x))`) and
# repeat the gradient experiment of section 4 with 24 blocks of each kind. Which one keeps the
# gradients of early layers larger?
#
# ## References
#
# - J. L. Ba, J. R. Kiros, G. E. Hinton (2016). *Layer Normalization.* https://arxiv.org/abs/1607.06450
# - D. Hendrycks, K. Gimpel (2016). *Gaussian Error Linear Units (GELUs).* https://arxiv.org/abs/1606.08415
# - K. He, X. Zhang, S. Ren, J. Sun (2016). *Deep Residual Learning for Image Recognition.* CVPR.
#   https://arxiv.org/abs/1512.03385
# - O. Press, L. Wolf (2017). *Using the Output Embedding to Improve Language Models.* EACL.
#   https://arxiv.org/abs/1608.05859
# - A. Radford, J. Wu, R. Child, D. Luan, D. Amodei, I. Sutskever (2019). *Language Models are
#   Unsupervised Multitask Learners.* OpenAI.
