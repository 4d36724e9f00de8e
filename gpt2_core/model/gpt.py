"""GPTModel: token + position embeddings, a stack of pre-norm transformer blocks, a tied LM head.

The pieces are the ones chapter 4 builds by hand (and proves equal to torch's own); here they use the
fused torch kernels for speed. Three calls, three results:

- ``model(idx)``: next-token logits (batch, tokens, vocab), as chapter 4's model returns them;
- ``model(idx, targets=targets)``: the mean next-token loss, a scalar (training goes through ``forward`` so that
  DDP and ``torch.compile`` see it), computed fused with the LM head (:meth:`GPTModel.next_token_loss`);
- ``model.next_token_logits(idx, kv_cache)``: the logits (batch, vocab) of the token after the last one,
  all that a decoding step needs, storing the tokens' keys and values in a KV cache if one is given.

The weights are stored input-major, a speed trick for decoding on a CPU that changes nothing else
(:mod:`gpt2_core.model.layout`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .attention import KVCache, MultiHeadAttention
from .config import GPTConfig
from .fused_loss import fused_linear_cross_entropy
from .layout import normal_, store_input_major


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
    """GPT-2: logits, the loss with ``targets``, or the next token's logits for decoding (see the module)."""

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
        store_input_major(self)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """GPT-2's initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2 * n_layers)."""
        residual_std = 0.02 / math.sqrt(2 * self.cfg.n_layers)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                normal_(module.weight, residual_std if name.endswith(("out_proj", "ff.proj")) else 0.02)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.Embedding):
                normal_(module.weight, 0.02)
            elif isinstance(module, LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()

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

    def hidden_states(self, idx: torch.Tensor, kv_cache: KVCache | None = None) -> torch.Tensor:
        """The final-normalised hidden states (batch, tokens, emb_dim) that the head reads. With ``kv_cache``
        the tokens follow those cached: their keys and values are stored, and they attend to all before them."""
        self.check_input(idx, kv_cache.pos if kv_cache is not None else 0)
        t = idx.shape[1]
        positions = kv_cache.positions(t) if kv_cache is not None else torch.arange(t, device=idx.device)
        x = self.drop_emb(self.tok_emb(idx) + self.pos_emb(positions))
        for i, block in enumerate(self.blocks):
            x = block(x, kv_cache, i)
        if kv_cache is not None:
            kv_cache.advance(t)
        return self.final_norm(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (batch, tokens, vocab); given ``targets`` (batch, tokens), the mean loss (a scalar) instead:
        :meth:`next_token_loss`, here so that DDP's gradient hooks and ``torch.compile`` see the whole step."""
        x = self.hidden_states(idx)
        return self.out_head(x) if targets is None else self.next_token_loss(x, targets)

    def next_token_loss(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean cross-entropy of the head's logits for ``hidden`` against ``targets`` (-100: not counted), as
        ``F.cross_entropy(self.out_head(hidden).flatten(0, 1), targets.flatten(), ignore_index=-100)`` gives it,
        but fused with the head: the logits are not kept for backward (:mod:`gpt2_core.model.fused_loss`)."""
        if not (isinstance(self.out_head, nn.Linear) and self.out_head.bias is None):
            raise ValueError("targets ask for the next-token loss, which needs the model's next-token head; "
                             f"this model has another head ({type(self.out_head).__name__})")
        return fused_linear_cross_entropy(hidden, self.out_head.weight, targets)

    def next_token_logits(self, idx: torch.Tensor, kv_cache: KVCache | None = None) -> torch.Tensor:
        """Logits (batch, vocab) of the token after the last of ``idx``, the head run on that position only;
        with ``kv_cache``, ``idx`` continues the cached tokens (see :meth:`hidden_states`)."""
        return self.out_head(self.hidden_states(idx, kv_cache)[:, -1])

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Attention weights for one sequence ``idx`` (1, tokens): one (heads, tokens, tokens) tensor per layer.

        Row ``i`` of a head's map is how much token ``i`` attends to each token up to itself (the causal
        softmax; each row sums to 1). Computed in eval mode, for pictures of what a model looks at.
        """
        self.check_input(idx)
        if idx.shape[0] != 1:
            raise ValueError(f"attention_maps takes one sequence, shape (1, tokens), got {tuple(idx.shape)}")
        layers = [block.att for block in self.blocks]
        with eval_mode(self):
            for att in layers:
                att.keep_weights = True
            try:
                self.hidden_states(idx)
            finally:
                for att in layers:
                    att.keep_weights = False
        maps = [att.weights[0] for att in layers]
        for att in layers:
            att.weights = None
        return maps

    def new_kv_cache(self, batch: int, max_len: int | None = None, cache_class: type[KVCache] = KVCache) -> KVCache:
        """An empty ``cache_class`` for ``batch`` sequences of up to ``max_len`` (default: context) tokens."""
        cfg = self.cfg
        return cache_class(cfg.n_layers, batch, cfg.n_heads, cfg.head_dim, max_len or cfg.context_length,
                           self.device, self.tok_emb.weight.dtype)

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Parameter count; tied weights are counted once (``parameters()`` de-duplicates them)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``with eval_mode(model):`` the model in eval mode (dropout off), its previous mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


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
