"""GPTModel: token + position embeddings, a stack of pre-norm transformer blocks, a tied LM head.

The pieces are the ones chapter 4 builds by hand (and proves equal to torch's own); here they use
the fused torch kernels for speed. Weight names are ours; ``hf_weights`` maps them to and from
Hugging Face's GPT-2 checkpoints.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .attention import KVCache, MultiHeadAttention
from .config import GPTConfig
from .fused_loss import fused_linear_cross_entropy


class LayerNorm(nn.Module):
    """(x - mean) / sqrt(var + eps) * weight + bias over the last dimension (biased variance)."""

    def __init__(self, emb_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(emb_dim))
        self.bias = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class GELU(nn.Module):
    """GPT-2's GELU: the tanh approximation 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate="tanh")


class FeedForward(nn.Module):
    """Position-wise MLP: expand to 4x the width, GELU, project back."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.emb_dim, 4 * cfg.emb_dim)
        self.act = GELU()
        self.proj = nn.Linear(4 * cfg.emb_dim, cfg.emb_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.act(self.fc(x)))


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + ff(norm(x)), dropout on each branch."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.norm1 = LayerNorm(cfg.emb_dim)
        self.att = MultiHeadAttention(cfg.emb_dim, cfg.emb_dim, cfg.context_length, cfg.drop_rate,
                                      cfg.n_heads, cfg.qkv_bias)
        self.norm2 = LayerNorm(cfg.emb_dim)
        self.ff = FeedForward(cfg)
        self.drop = nn.Dropout(cfg.drop_rate)

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        x = x + self.drop(self.att(self.norm1(x), kv_cache, layer))
        return x + self.drop(self.ff(self.norm2(x)))


class GPTModel(nn.Module):
    """GPT-2: ``model(idx)`` maps token ids (batch, tokens) to next-token logits (batch, tokens, vocab).

    ``model(idx, targets=targets)`` returns the mean cross-entropy loss instead (targets: same shape as
    ``idx``; -100 marks positions to leave out), computed without materialising the logits for backward
    (see :mod:`gpt2_core.fused_loss`).
    """

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        if not isinstance(cfg, GPTConfig):
            raise TypeError(f"GPTModel expects a GPTConfig, got {type(cfg).__name__}; "
                            "try GPTConfig.preset('gpt2')")
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.emb_dim)
        self.pos_emb = nn.Embedding(cfg.context_length, cfg.emb_dim)
        self.drop_emb = nn.Dropout(cfg.drop_rate)
        self.blocks = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.n_layers))
        self.final_norm = LayerNorm(cfg.emb_dim)
        self.out_head = nn.Linear(cfg.emb_dim, cfg.vocab_size, bias=False)
        self.out_head.weight = self.tok_emb.weight  # weight tying, as in GPT-2
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2's initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2 * n_layers)."""
        residual_std = 0.02 / math.sqrt(2 * self.cfg.n_layers)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                std = residual_std if name.endswith(("out_proj", "ff.proj")) else 0.02
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            elif isinstance(module, LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    @property
    def device(self) -> torch.device:
        return self.tok_emb.weight.device

    def check_input(self, idx: torch.Tensor, past: int = 0) -> None:
        """Raise a clear error for ids that are not a (batch, tokens) integer tensor in range."""
        if not isinstance(idx, torch.Tensor):
            raise TypeError(f"token ids must be a torch.Tensor, got {type(idx).__name__}; "
                            "wrap them with torch.tensor([ids])")
        if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
            raise TypeError(f"token ids must be an integer tensor (torch.long), got {idx.dtype}")
        if idx.dim() != 2:
            raise ValueError(f"token ids must have shape (batch, tokens), got {tuple(idx.shape)}; "
                             "use idx.unsqueeze(0) for a single sequence")
        if idx.shape[1] == 0:
            raise ValueError("token ids are empty: give at least one token")
        if past + idx.shape[1] > self.cfg.context_length:
            raise ValueError(f"input of {past + idx.shape[1]} tokens is longer than context_length="
                             f"{self.cfg.context_length}; crop it to the last {self.cfg.context_length} "
                             "tokens")
        if torch.compiler.is_compiling():
            return  # reading the ids' values would force a host sync and a graph break; the caller checks
        low, high = torch.stack([idx.min(), idx.max()]).tolist()  # one device sync, not two
        if low < 0 or high >= self.cfg.vocab_size:
            bad = low if low < 0 else high
            raise ValueError(f"token id {bad} is outside the vocabulary [0, {self.cfg.vocab_size}); "
                             "was the text encoded with a different tokenizer?")

    def forward(self, idx: torch.Tensor, kv_cache: KVCache | None = None,
                targets: torch.Tensor | None = None, last_only: bool = False) -> torch.Tensor:
        """Logits (batch, tokens, vocab); or, given ``targets`` (batch, tokens), the mean loss (a scalar).

        The loss equals ``F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)``;
        when gradients are needed it is computed fused with the LM head (faster, less memory), and the
        head runs only on the positions that count: rows whose target is -100 (a prompt, padding) are
        dropped before it. ``last_only=True`` returns the logits of the last position only, shape
        (batch, 1, vocab): all that a decoding step needs, for a fraction of the head's cost.
        """
        past = kv_cache.pos if kv_cache is not None else 0
        self.check_input(idx, past)
        t = idx.shape[1]
        pos = torch.arange(past, past + t, device=idx.device)
        x = self.drop_emb(self.tok_emb(idx) + self.pos_emb(pos))
        for i, block in enumerate(self.blocks):
            x = block(x, kv_cache, i)
        if kv_cache is not None:
            kv_cache.advance(t)
        if last_only:
            x = x[:, -1:]
        x = self.final_norm(x)
        if targets is None:
            return self.out_head(x)
        if last_only:
            raise ValueError("last_only=True gives logits for decoding; it cannot be combined with targets")
        if not torch.compiler.is_compiling() and targets.shape == idx.shape:
            # Keep only the rows that are scored. (Skipped under torch.compile: the number of kept
            # rows depends on the data, and a data-dependent shape would break the graph.)
            keep = targets.flatten() != -100
            if not bool(keep.all()):
                x, targets = x.flatten(0, 1)[keep], targets.flatten()[keep]
        if self.out_head.bias is not None:  # e.g. a classification head: the fused path has no bias term
            logits = self.out_head(x)
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
        return fused_linear_cross_entropy(x, self.out_head.weight, targets)

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Attention weights for one sequence ``idx`` (1, tokens): one (heads, tokens, tokens) tensor per layer.

        Row ``i`` of a head's map is how much token ``i`` attends to each token up to itself (the causal
        softmax; each row sums to 1). Computed in eval mode, for pictures of what a model looks at.
        """
        self.check_input(idx)
        if idx.shape[0] != 1:
            raise ValueError(f"attention_maps takes one sequence, shape (1, tokens), got {tuple(idx.shape)}")
        was_training = self.training
        self.eval()
        t = idx.shape[1]
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(t, device=idx.device))
        future = torch.ones(t, t, dtype=torch.bool, device=idx.device).triu(diagonal=1)
        maps = []
        for block in self.blocks:
            att = block.att
            q, k, _ = att.qkv(block.norm1(x)).view(1, t, 3, att.num_heads, att.head_dim).permute(2, 0, 3, 1, 4)
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(att.head_dim)
            maps.append(torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)[0])
            x = block(x)
        self.train(was_training)
        return maps

    def new_kv_cache(self, batch: int, max_len: int | None = None) -> KVCache:
        """An empty KV cache for ``batch`` sequences of up to ``max_len`` (default: context) tokens."""
        cfg = self.cfg
        return KVCache(cfg.n_layers, batch, cfg.n_heads, cfg.head_dim, max_len or cfg.context_length,
                       self.device, self.tok_emb.weight.dtype)

    @classmethod
    def from_hf(cls, path: str | os.PathLike, **kwargs) -> GPTModel:
        """Load a Hugging Face GPT-2 checkpoint directory (see :func:`gpt2_core.hf_weights.from_hf`)."""
        from .hf_weights import from_hf

        return from_hf(path, **kwargs)

    @classmethod
    def from_pretrained(cls, name: str, **kwargs) -> GPTModel:
        """OpenAI's GPT-2 weights, downloaded once (see :func:`gpt2_core.hf_weights.from_pretrained`)."""
        from .hf_weights import from_pretrained

        return from_pretrained(name, **kwargs)

    def save_hf(self, path: str | os.PathLike) -> Path:
        """Write a checkpoint that ``transformers.GPT2LMHeadModel.from_pretrained(path)`` loads."""
        from .hf_weights import save_hf

        return save_hf(self, path)

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Parameter count; tied weights are counted once (``parameters()`` de-duplicates them)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The GPTModel inside a DistributedDataParallel (``.module``) or torch.compile (``._orig_mod``) wrapper.

    Saving the inner model keeps weight names free of wrapper prefixes, so a checkpoint written by a
    wrapped run loads into a plain model and back.
    """
    while True:
        # torch.compile's wrapper forwards attribute reads (even .cfg) to the model, so look for the
        # wrapper attributes themselves rather than for a missing .cfg
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner
