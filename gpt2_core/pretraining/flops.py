"""Model FLOPs utilisation (MFU): how much of the hardware's matmul peak a training run turns into model work.

``MFU = tokens/s x FLOPs per token / peak FLOP/s``. FLOPs per token count what the model must compute,
not what the code happens to run (a recomputation or a wasted kernel does not raise it), following
Kaplan et al. (2020) and Chowdhery et al. (2022, PaLM, appendix B): a forward and backward pass cost 6
FLOPs per weight that multiplies (2 forward, 4 backward), plus the attention score and value matmuls.

The peak is the card's published dense bf16/fp16 tensor-core figure when the name is known (no
sparsity), otherwise a measured one: the best of a few large matmuls in the run's dtype. A CPU has
no published figure worth trusting (clocks and vector units vary), so it is always measured.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from ..checks import check_int
from ..model.config import GPTConfig

# Dense bf16 (= fp16) tensor-core peaks, FLOP/s, from NVIDIA's data sheets; matched against
# torch.cuda.get_device_name() in this order (the first substring that occurs wins).
CUDA_BF16_PEAKS: tuple[tuple[str, float], ...] = (
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM ("NVIDIA H100 80GB HBM3")
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
)


def matmul_parameters(cfg: GPTConfig, n_params: int) -> int:
    """Weights that multiply: every parameter except the position embedding (a table lookup). The token
    embedding counts: tied to the LM head, it is a ``emb_dim x vocab`` matmul there."""
    return n_params - cfg.context_length * cfg.emb_dim


def training_flops_per_token(cfg: GPTConfig, seq_len: int, n_params: int) -> float:
    """FLOPs of one training token (forward + backward): ``6 N`` for the weight matmuls, plus attention.

    ``N`` is :func:`matmul_parameters`. Attention adds ``QK^T`` and ``AV``: ``2 x 2 x seq_len x emb_dim``
    FLOPs per token and layer forward, three times that with backward, so ``12 x layers x emb_dim x
    seq_len`` (the causal mask's saving is not counted, as in PaLM's appendix B).
    """
    check_int(seq_len, "seq_len", low=1)
    check_int(n_params, "n_params", low=1)
    return 6 * matmul_parameters(cfg, n_params) + 12 * cfg.n_layers * cfg.emb_dim * seq_len


def synchronizer(device: torch.device | str) -> Callable[[], None]:
    """What a timed piece of work calls before the clock stops, so that a GPU's queued kernels are
    inside the time (a no-op on a CPU, where work runs when it is called)."""
    device = torch.device(device)
    return {"cuda": torch.cuda.synchronize, "mps": torch.mps.synchronize}.get(device.type, lambda: None)


def measured_matmul_peak(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                         n: int = 2048, repeats: int = 5) -> float:
    """The best of ``repeats`` ``n x n`` matmuls on ``device`` in ``dtype``, in FLOP/s (a ceiling, not a
    typical speed)."""
    device = torch.device(device)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = synchronizer(device)
    a @ b  # warm-up
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def peak_flops(device: torch.device | str, dtype: torch.dtype = torch.bfloat16) -> tuple[float, str]:
    """(peak FLOP/s, where it comes from) for matmuls in ``dtype`` on ``device``."""
    device = torch.device(device)
    if device.type == "cuda" and dtype in (torch.bfloat16, torch.float16):
        name = torch.cuda.get_device_name(device)
        for key, peak in CUDA_BF16_PEAKS:
            if key in name:
                return peak, f"{name} dense bf16 peak {peak / 1e12:.0f} TFLOP/s (data sheet)"
    peak = measured_matmul_peak(device, dtype)
    what = str(dtype).removeprefix("torch.")
    return peak, f"measured {what} matmul peak {peak / 1e12:.3g} TFLOP/s on {device.type}"


def mfu(tokens_per_second: float, flops_per_token: float, peak: float) -> float:
    """The fraction of ``peak`` FLOP/s that ``tokens_per_second`` of model work amounts to."""
    if not peak > 0:
        raise ValueError(f"peak must be positive, got {peak!r}")
    return tokens_per_second * flops_per_token / peak
