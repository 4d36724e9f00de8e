"""The LM head and the cross-entropy loss in one step, without keeping the full logits for backward.

A GPT's last layer turns every token's hidden state ``h`` (``emb_dim`` numbers) into ``vocab_size``
scores, ``logits = h @ W.T``, and training minimises the cross-entropy of those scores against the next
token. For GPT-2 the vocabulary (50,257) is far wider than the model (768), so on a small model this
head is most of a training step: the logits of a batch are a ``tokens x 50,257`` matrix that the
plain path writes, reads for ``log_softmax``, keeps for backward, and then fills, scatters and reads
again to build its gradient.

The gradient of the mean cross-entropy has a closed form. With ``p = softmax(logits)`` and ``y`` the
one-hot target of each row, divided by the number of counted rows ``n``::

    dL/dlogits = (p - y) / n        dL/dh = dL/dlogits @ W        dL/dW = dL/dlogits.T @ h

so the forward pass can compute the loss *and* both gradients, a block of tokens at a time, and
keep only ``dL/dh`` (tokens x emb_dim) and ``dL/dW`` (the size of ``W``) for backward. The matmuls are
the same three as before; what goes away is the memory traffic of the big matrix (and, on a big
batch, its memory). Backward then just scales the stored gradients by the incoming gradient.

Liger-Kernel and Apple's "Cut Your Losses in Large-Vocabulary Language Models" (Wijmans et al., 2024)
do the same on GPUs with custom kernels; this version uses plain torch ops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..checks import check_int

IGNORE_INDEX = -100  # the default of F.cross_entropy: target rows with this id are not counted
DEFAULT_CHUNK = 256  # tokens per block on a CPU; see fused_linear_cross_entropy's docstring
DEFAULT_CHUNK_GPU = 4096  # tokens per block elsewhere: fewer, bigger matmuls and dL/dW updates


def _check(hidden: object, weight: object, targets: object, ignore_index: object, chunk_size: object,
           same_dtype: bool = True) -> None:
    """Raise a clear error for arguments the loss cannot use."""
    for name, value in (("hidden", hidden), ("weight", weight), ("targets", targets)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    assert isinstance(hidden, torch.Tensor) and isinstance(weight, torch.Tensor)
    assert isinstance(targets, torch.Tensor)
    if not hidden.dtype.is_floating_point or not weight.dtype.is_floating_point:
        raise TypeError(f"hidden and weight must be floating point, got {hidden.dtype} and {weight.dtype}")
    if same_dtype and hidden.dtype != weight.dtype:
        raise TypeError(f"hidden ({hidden.dtype}) and weight ({weight.dtype}) must have the same dtype; "
                        "cast one of them, or run under torch.autocast")
    if targets.dtype.is_floating_point or targets.dtype.is_complex or targets.dtype == torch.bool:
        raise TypeError(f"targets must be integer class ids (torch.long), got {targets.dtype}")
    if weight.dim() != 2:
        raise ValueError(f"weight must have shape (vocab_size, emb_dim), got {tuple(weight.shape)}")
    if hidden.dim() < 1 or hidden.shape[-1] != weight.shape[1]:
        raise ValueError(f"hidden must have shape (..., {weight.shape[1]}) to match weight "
                         f"{tuple(weight.shape)}, got {tuple(hidden.shape)}")
    if targets.shape != hidden.shape[:-1]:
        raise ValueError(f"targets must have shape {tuple(hidden.shape[:-1])} (one id per hidden row), "
                         f"got {tuple(targets.shape)}")
    check_int(ignore_index, "ignore_index")
    if chunk_size is not None:  # None: the device's default
        check_int(chunk_size, "chunk_size (tokens per block)", low=1)


class _FusedLinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``hidden @ weight.T``; the gradients are computed during forward.

    ``low``: the dtype that autocast gives matmuls (bf16, fp16), or None. With it, the three matmuls take
    their inputs in that dtype as autocast would, while the softmax, the loss and the accumulation of
    ``dL/dW`` over blocks stay in float32 (see :func:`fused_linear_cross_entropy`).
    """

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,  # type: ignore[override]
                ignore_index: int, chunk_size: int, low: torch.dtype | None = None) -> torch.Tensor:
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        n = hidden.shape[0]
        valid = targets != ignore_index
        count = valid.sum()
        acc = torch.float32 if low is not None else hidden.dtype  # the dtype of logits, loss and dL/dW
        # rows' weights in the mean; clamp so that an all-ignored batch gives zero gradients, not NaN
        row_scale = valid.to(acc) / count.clamp(min=1)
        safe_targets = targets.masked_fill(~valid, 0)  # any in-range id; these rows are weighted 0
        loss_sum = hidden.new_zeros((), dtype=acc)
        grad_h = torch.empty_like(hidden) if need_h else None
        # empty: the first block writes it (zeros only when there is no block at all, or when blocks add
        # low-precision products into it)
        grad_w = None
        # dL/dW is built as the matmul h.T @ dlogits gives it, (emb_dim, vocab) and contiguous, and handed back
        # as its (vocab, emb_dim) view: no matmul writes into a non-contiguous result (which torch.compile
        # cannot trace), and for a weight stored input-major (gpt2_core.model.layout) autograd adds it as is
        grad_wt = None
        if need_w:
            shape = (weight.shape[1], weight.shape[0])
            grad_wt = hidden.new_empty(shape) if n and low is None else hidden.new_zeros(shape, dtype=acc)
        w_low = weight.to(low) if low is not None else weight  # cast once, as autocast's cache does
        buf = hidden.new_empty(min(chunk_size, n), weight.shape[0], dtype=acc)  # one block of logits, reused
        rows = torch.arange(min(chunk_size, n), device=hidden.device)
        for start in range(0, n, chunk_size):
            end = min(n, start + chunk_size)
            h, t, scale = hidden[start:end], safe_targets[start:end], row_scale[start:end]
            logp = buf[: end - start]
            if low is None:
                torch.mm(h, weight.t(), out=logp)  # logits of this block
            else:
                logp.copy_(h.to(low) @ w_low.t())  # logits rounded to `low`, as autocast's matmul returns them
            torch.log_softmax(logp, dim=1, out=logp)  # in place: no second block-sized buffer
            r = rows[: end - start]
            loss_sum -= (logp[r, t] * valid[start:end]).sum()
            if not (need_h or need_w):
                continue
            dlogits = logp.exp_()  # softmax
            dlogits[r, t] -= 1.0  # p - y; the 1/n and the ignored rows are applied to the small factors
            if low is not None:
                dlogits = dlogits.to(low)  # autocast's backward feeds the matmuls in `low` too
            if need_h and low is None:
                torch.mm(dlogits, weight, out=grad_h[start:end])
                grad_h[start:end].mul_(scale[:, None])
            elif need_h:
                torch.mul(dlogits @ w_low, scale[:, None], out=grad_h[start:end])
            if need_w:
                h_scaled = (h * scale[:, None]).t()
                if low is not None:  # a `low` product, summed over the blocks in float32
                    grad_wt.add_(h_scaled.to(low) @ dlogits)
                elif start == 0:
                    torch.mm(h_scaled, dlogits, out=grad_wt)
                else:
                    grad_wt.addmm_(h_scaled, dlogits)
        grad_w = None
        if grad_wt is not None:
            grad_w = grad_wt.t() if grad_wt.dtype == weight.dtype else grad_wt.t().to(weight.dtype)
        ctx.grads = (grad_h, grad_w)
        return loss_sum / count  # NaN when every row is ignored, like F.cross_entropy

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):  # type: ignore[override]
        if ctx.grads is None:
            raise RuntimeError("fused_linear_cross_entropy's backward can run only once (its gradients "
                               "are freed after use); compute the loss again instead of retain_graph=True")
        grad_h, grad_w = ctx.grads
        ctx.grads = None
        # scale in place: these tensors are ours alone, and a fresh (vocab x emb_dim) result would cost
        # an allocation plus a pass over memory
        return (None if grad_h is None else grad_h.mul_(grad_loss),
                None if grad_w is None else grad_w.mul_(grad_loss), None, None, None, None)


def fused_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                               ignore_index: int = IGNORE_INDEX, chunk_size: int | None = None) -> torch.Tensor:
    """``F.cross_entropy(hidden @ weight.T, targets, ignore_index=ignore_index)`` (mean), computed fused.

    ``hidden`` is (..., emb_dim), ``weight`` is (vocab_size, emb_dim) (an LM head's weight, tied or
    not), ``targets`` is (...) integer ids; rows whose target is ``ignore_index`` are left out of the
    mean, and out of the work (dropped first; not under ``torch.compile``, where shapes may not depend on
    the data). The value and the gradients equal the plain path's up to float rounding; when every row is
    ignored the loss is NaN and the gradients are zero, as with ``F.cross_entropy``.

    ``chunk_size`` tokens are handled per block: the block's ``chunk_size x vocab_size`` logits are the
    largest temporary (51 MB for GPT-2's vocabulary in float32). Smaller blocks use less memory but
    re-read ``weight`` and update its gradient once per block: on a 2-core CPU, blocks of 128 to 512
    tokens were equally fast and 64 was slower, so the default there is ``DEFAULT_CHUNK`` (256). On a
    GPU each block's update of the 50,257 x 768 gradient costs a pass over 154 MB, which a step of 16 x
    1024 tokens would pay 64 times at 256 tokens a block; the default elsewhere is ``DEFAULT_CHUNK_GPU``
    (4096 tokens: an 823 MB float32 block of logits).

    When no gradient is needed (``torch.no_grad()``, eval, or neither ``hidden`` nor ``weight`` requires
    grad) it takes the plain path, ``F.cross_entropy`` on the full logits: one matmul and a ``log_softmax``,
    where gradients computed during forward would be two extra matmuls thrown away.

    Under ``torch.autocast`` (bf16 or fp16) the fused path follows autocast's rules by hand: the three
    matmuls take their inputs in autocast's dtype (the logits come out rounded to it, as from autocast's
    matmul), while the log-softmax, the loss, ``dL/dlogits`` before its cast and the sum of ``dL/dW``
    over blocks are float32; the gradients come back in the inputs' dtypes. The result equals the plain
    path under autocast within that dtype's rounding (tested against it and against a float64
    reference). ``hidden`` and ``weight`` may then differ in dtype, as autocast allows.

    Caveats. The gradients are computed when the loss is, so compute a loss you will not backpropagate
    (validation) under ``torch.no_grad()``, or its gradient work is wasted. Backward may run once (no
    ``retain_graph`` reuse) and there is no double backward: the stored gradients are freed after use.
    """
    device_type = hidden.device.type if isinstance(hidden, torch.Tensor) else "cpu"
    autocast = torch.is_autocast_enabled(device_type)
    _check(hidden, weight, targets, ignore_index, chunk_size, same_dtype=not autocast)
    if not torch.compiler.is_compiling():  # reading values is a host sync, a graph break when compiled
        keep = targets != ignore_index
        bad = keep & ((targets < 0) | (targets >= weight.shape[0]))
        if bool(bad.any()):
            raise ValueError(f"target id {int(targets[bad][0])} is outside the vocabulary [0, {weight.shape[0]}) "
                             f"and is not ignore_index={ignore_index}")
        if not bool(keep.all()):  # the head's work is per row: drop the rows not counted (a prompt, padding)
            hidden, targets = hidden[keep], targets[keep]
    needs_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    if not needs_grad:
        logits = hidden @ weight.t()
        return F.cross_entropy(logits.flatten(0, -2), targets.flatten(), ignore_index=ignore_index)
    if chunk_size is None:
        chunk_size = DEFAULT_CHUNK if device_type == "cpu" else DEFAULT_CHUNK_GPU
    low = torch.get_autocast_dtype(device_type) if autocast else None
    if low is not None and hidden.dtype == weight.dtype == low:
        low = None  # already in autocast's dtype: nothing to cast
    flat_h = hidden.reshape(-1, hidden.shape[-1]).contiguous()
    with torch.autocast(device_type, enabled=False):  # the casts are explicit inside
        return _FusedLinearCrossEntropy.apply(flat_h, weight, targets.reshape(-1), ignore_index, chunk_size, low)
