"""LoRA, low-rank adaptation (Hu et al., 2021), written from scratch.

A frozen linear layer ``y = x W^T + b`` gets a trainable low-rank detour:

    y = x W^T + b + (alpha / r) * x A B        A: (in, r), B: (r, out)

``B`` starts at zero, so the adapted model starts out exactly equal to the pretrained one; only
``r * (in + out)`` numbers per layer are trained instead of ``in * out``. After training the detour
can be folded back into the weight, ``W += (alpha / r) * (A B)^T``, leaving a plain ``nn.Linear``
with no extra cost at inference time (:func:`merge_lora`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..checks import check_int, check_number

DEFAULT_TARGETS = ("att.qkv", "att.out_proj", "ff.fc", "ff.proj")


def _check_rank_alpha(rank: object, alpha: object) -> None:
    check_int(rank, "rank (typical values: 4 to 64)", low=1)
    check_number(alpha, "alpha (a common choice: 2 * rank)", positive=True)


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update scaled by ``alpha / rank``."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        _check_rank_alpha(rank, alpha)
        self.base = base
        self.base.requires_grad_(False)
        self.rank = rank
        self.alpha = float(alpha)
        self.scaling = self.alpha / rank
        weight = base.weight
        self.A = nn.Parameter(torch.empty(base.in_features, rank, device=weight.device, dtype=weight.dtype))
        self.B = nn.Parameter(torch.zeros(rank, base.out_features, device=weight.device, dtype=weight.dtype))
        # A random, B zero: the update A @ B starts at exactly zero, but gradients reach B at once.
        nn.init.kaiming_uniform_(self.A.T, a=math.sqrt(5))

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.A @ self.B) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        """The update in ``nn.Linear`` layout (out, in): ``scaling * (A @ B)^T``."""
        return (self.A @ self.B).T * self.scaling

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` computing the same function (weights copied, update folded in)."""
        base = self.base
        linear = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None,
                           device=base.weight.device, dtype=base.weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(base.weight + self.delta_weight())
            if base.bias is not None:
                linear.bias.copy_(base.bias)
        linear.requires_grad_(base.weight.requires_grad)
        return linear

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha:g}, scaling={self.scaling:g}"


def lora_parameter_count(in_features: int, out_features: int, rank: int) -> int:
    """Trainable numbers LoRA adds to one ``in -> out`` linear layer: ``rank * (in + out)``."""
    return rank * (in_features + out_features)


def count_trainable(model: nn.Module) -> int:
    """Parameters with ``requires_grad`` (shared tensors counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def inject_lora(model: nn.Module, rank: int = 8, alpha: float = 16.0,
                targets: tuple[str, ...] | list[str] = DEFAULT_TARGETS) -> int:
    """Freeze ``model`` and wrap every ``nn.Linear`` whose name ends with one of ``targets`` in a
    :class:`LoRALinear` (in place). Returns the number of trainable parameters afterwards.

    With the defaults on a :class:`~gpt2_core.model.GPTModel` this adapts the attention projections and
    the feed-forward layers of every transformer block; embeddings, layer norms and the head stay frozen.
    """
    _check_rank_alpha(rank, alpha)
    if isinstance(targets, str):
        raise TypeError(f"targets must be a tuple of names, got the string {targets!r}; write ({targets!r},)")
    if any(isinstance(m, LoRALinear) for m in model.modules()):
        raise ValueError("the model already has LoRA layers; merge_lora(model) first, "
                         "or start from a fresh copy")
    found = [name for name, module in model.named_modules()
             if isinstance(module, nn.Linear) and any(name == t or name.endswith("." + t) for t in targets)]
    if not found:
        linears = sorted({".".join(name.split(".")[-2:]) for name, m in model.named_modules()
                          if isinstance(m, nn.Linear)})
        raise ValueError(f"no nn.Linear matches targets {tuple(targets)}; linear layers here end with: "
                         f"{', '.join(linears) or 'none'}")
    model.requires_grad_(False)
    for name in found:
        _set_submodule(model, name, LoRALinear(model.get_submodule(name), rank, alpha))
    return count_trainable(model)


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every :class:`LoRALinear` into a plain ``nn.Linear`` (in place) and return the model.

    The outputs do not change (up to float rounding). Frozen parameters stay frozen; call
    ``model.requires_grad_(True)`` to train the merged model fully.
    """
    names = [name for name, module in model.named_modules() if isinstance(module, LoRALinear)]
    if not names:
        raise ValueError("the model has no LoRA layers to merge; call inject_lora(model, ...) first")
    for name in names:
        _set_submodule(model, name, model.get_submodule(name).merged())
    return model
