"""Input-major weights: the one place that knows how GPTModel lays its matrices out in memory.

``nn.Linear`` computes ``x @ W.T`` with ``W`` of shape (out, in). GPTModel keeps that shape for every
matrix of its blocks, and for the token embedding that doubles as the output layer, but stores each as
its transpose, (in, out), so ``W.T`` is the contiguous matrix. A GPU, or a CPU multiplying matrices by
matrices (training), reads both layouts at the same speed. A CPU multiplying a matrix by a single
vector, which is what decoding one token at batch 1 does with every weight, streams an (in, out) matrix
faster: measured on the course's 2-core CPU for GPT-2's 50,257 x 768 output layer, 6.3 ms against
12.1 ms per token. Values, shapes and names are unchanged (``state_dict`` and checkpoints are as
before); only the order of the numbers in memory differs, which changes float rounding in the last
bits, not results.

Nothing else needs to know: loading copies into whatever layout a parameter has, initialisation draws
with :func:`normal_`, and the fused loss hands back its gradient as the transpose its matmul gives.
"""

from __future__ import annotations

import torch
from torch import nn


def store_input_major(model: nn.Module) -> None:
    """Store ``model``'s token embedding and every matrix of its blocks input-major, values unchanged,
    and tie the output head to the embedding again (a GPTModel, freshly built: its weights are replaced)."""
    for module in [model.tok_emb, *(m for m in model.blocks.modules() if isinstance(m, nn.Linear))]:
        module.weight = nn.Parameter(module.weight.detach().t().contiguous().t())
    model.out_head.weight = model.tok_emb.weight


def normal_(weight: torch.Tensor, std: float) -> None:
    """N(0, std) drawn in the weight's logical order, whatever its memory layout (same seed, same weights)."""
    weight.copy_(torch.empty(weight.shape, dtype=weight.dtype, device=weight.device).normal_(0.0, std))


def lay_out_like_params(optimizer: torch.optim.Optimizer) -> None:
    """Give each loaded state tensor (Adam's moments) its parameter's memory layout.

    A checkpoint stores tensors contiguous, but torch's fused AdamW walks a parameter, its gradient and
    its moments as flat memory: with different layouts it would pair the wrong numbers.
    """
    for group in optimizer.param_groups:
        for p in group["params"]:
            for name, value in optimizer.state.get(p, {}).items():
                if isinstance(value, torch.Tensor) and value.shape == p.shape and value.stride() != p.stride():
                    optimizer.state[p][name] = torch.empty_like(p, dtype=value.dtype).copy_(value)
