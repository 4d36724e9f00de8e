"""Learning from rewards, part 2 (chapter 8): the offline methods, best-of-k fine-tuning and DPO.

Both start from the model's own sampled answers (:func:`~gpt2_core.finetuning.instruction_eval.sample_answers`)
graded by a reward (:mod:`gpt2_core.finetuning.rewards`), sampled once before training, and both take their
optimizer steps with pretraining's :func:`~gpt2_core.pretraining.step.train_step` (AdamW, warmup + cosine, clipping):

- **best-of-k** (rejection sampling, expert iteration): keep the right answers, fine-tune on them with the
  ordinary instruction loss (:func:`best_of_k_items`, then :func:`~gpt2_core.finetuning.loop.finetune`).
- **DPO** (Rafailov et al., 2023): pairs of a right and a wrong answer to the same question; the loss
  raises the right one's log-probability *relative to a frozen reference* more than the wrong one's
  (:func:`dpo_pairs`, :func:`dpo_loss`, :func:`dpo_loader` + :func:`dpo_loss_fn` for ``finetune``), with an
  optional NLL term on the chosen answer (Pang et al., 2024) against *likelihood displacement*: the margin
  can grow while the chosen answer itself becomes less likely (Razin et al., 2024; Pal et al., 2024), which
  :func:`pair_statistics` measures.

:func:`frontier` keeps the questions whose sampled answers are partly right: the only ones that give DPO a
pair or GRPO a signal. The online method, GRPO, is :mod:`gpt2_core.finetuning.grpo`. DPO's log-probabilities
run with dropout off: they must be those of the policy that sampled.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..checks import check_int, check_number
from ..model.gpt import eval_mode
from .instruction_eval import Answer
from .instruction_prompts import instruction_collate
from .rewards import answer_batch, answer_logprobs, is_right, reference_logprobs


def best_of_k_items(records: Sequence[dict], answers: Sequence[Sequence[Answer]], per_question: int = 1
                    ) -> list[tuple[list[int], int]]:
    """Rejection sampling: up to ``per_question`` *distinct* right answers per question, as instruction items
    ``(prompt + answer ids, prompt_len)`` (without end-of-text: :func:`instruction_collate` appends it).

    The answers keep the model's own tokens, so fine-tuning on them sharpens what it already does."""
    check_int(per_question, "per_question", low=1)
    items = []
    for record, group in zip(records, answers, strict=True):
        kept: set[tuple[int, ...]] = set()
        for a in group:
            if len(kept) < per_question and a.answer_ids not in kept and is_right(a, record["output"]):
                kept.add(a.answer_ids)
                items.append((list(a.prompt_ids) + list(a.answer_ids[:-1]), len(a.prompt_ids)))
    return items


def frontier(records: Sequence[dict], answers: Sequence[Sequence[Answer]]) -> list[dict]:
    """The records whose answers are neither all right nor all wrong: the questions at the edge of what the
    model can do, where a reward tells one answer from another."""
    return [r for r, group in zip(records, answers, strict=True)
            if 0 < sum(is_right(a, r["output"]) for a in group) < len(group)]


def items_loader(items: Sequence[tuple[list[int], int]], eot_id: int, batch_size: int, seed: int = 123,
                 device: torch.device | str | None = None) -> DataLoader:
    """A shuffled DataLoader of masked instruction batches over ready ``(ids, prompt_len)`` items."""
    if not items:
        raise ValueError("no items to fine-tune on (no question had a right answer)")
    return DataLoader(list(items), batch_size=batch_size, shuffle=True,
                      collate_fn=lambda b: instruction_collate(b, eot_id, device=device),
                      generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- DPO
@dataclass(frozen=True)
class Pair:
    """One preference pair: a right answer (chosen) and a wrong one (rejected) to the same question."""

    chosen: Answer
    rejected: Answer


def dpo_pairs(records: Sequence[dict], answers: Sequence[Sequence[Answer]], per_question: int = 1,
              seed: int = 0) -> list[Pair]:
    """Up to ``per_question`` pairs per question from its distinct right and wrong answers (a question whose
    answers are all right, or all wrong, gives none: there is nothing to prefer)."""
    check_int(per_question, "per_question", low=1)
    rng = random.Random(seed)
    pairs = []
    for record, group in zip(records, answers, strict=True):
        right = list({a.answer_ids: a for a in group if is_right(a, record["output"])}.values())
        wrong = list({a.answer_ids: a for a in group if not is_right(a, record["output"])}.values())
        for _ in range(min(per_question, len(right), len(wrong))):
            pairs.append(Pair(right.pop(rng.randrange(len(right))), wrong.pop(rng.randrange(len(wrong)))))
    return pairs


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, reference_chosen: torch.Tensor,
             reference_rejected: torch.Tensor, beta: float = 0.1) -> torch.Tensor:
    """The DPO loss, mean over pairs: ``-log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))`` from the
    answers' *sequence* log-probabilities (sums over their tokens) under the policy and the reference.

    At the start (policy = reference) every pair costs ``log 2``; the gradient pushes the chosen answer's
    log-ratio up and the rejected one's down, weighted by how wrongly the pair is ranked so far."""
    check_number(beta, "beta", positive=True)
    margin = (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)
    return -F.logsigmoid(beta * margin).mean()


def dpo_loader(pairs: Sequence[Pair], pad_id: int, batch_size: int, seed: int = 123,
               device: torch.device | str = "cpu") -> DataLoader:
    """Batches of pairs as ``(inputs, targets, mask)``: the chosen answers in the first half of the rows,
    the rejected ones in the second (:func:`~gpt2_core.finetuning.rewards.answer_batch`)."""
    if not pairs:
        raise ValueError("no preference pairs (no question had both a right and a wrong answer)")

    def collate(batch: Sequence[Pair]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return answer_batch([p.chosen for p in batch] + [p.rejected for p in batch], pad_id, device)

    return DataLoader(list(pairs), batch_size=batch_size, shuffle=True, collate_fn=collate,
                      generator=torch.Generator().manual_seed(seed))


def dpo_loss_fn(reference: nn.Module | None, beta: float = 0.1, nll_weight: float = 0.0
                ) -> Callable[[nn.Module, Any], torch.Tensor]:
    """A ``loss_fn(policy, batch)`` for :func:`~gpt2_core.finetuning.loop.finetune` over :func:`dpo_loader`
    batches. ``reference=None``: a LoRA policy with its adapters off is the reference. ``nll_weight > 0`` adds
    that much of the chosen answers' negative log-likelihood per token (Pang et al., 2024), which keeps the
    chosen answers likely while the margin grows."""
    check_number(nll_weight, "nll_weight", low=0.0)

    def loss_fn(policy: nn.Module, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        inputs, targets, mask = batch
        n = inputs.shape[0] // 2
        with eval_mode(policy):
            ref = reference_logprobs(reference, policy, inputs, targets, mask).sum(-1)
            token_logp = answer_logprobs(policy, inputs, targets, mask)
        seq = token_logp.sum(-1)
        loss = dpo_loss(seq[:n], seq[n:], ref[:n], ref[n:], beta)
        if nll_weight:
            loss = loss - nll_weight * (seq[:n] / mask[:n].sum(-1)).mean()
        return loss

    return loss_fn


@torch.no_grad()
def pair_statistics(policy: nn.Module, reference: nn.Module | None, pairs: Sequence[Pair], pad_id: int,
                    batch_size: int = 64) -> dict[str, float]:
    """Where DPO has taken ``pairs``: the mean sequence log-probability of the chosen and the rejected answers
    under ``policy``, the mean margin ``(pi_c - ref_c) - (pi_r - ref_r)``, the share of pairs ranked right
    (margin > 0) and the share of chosen answers *less* likely than under the reference."""
    if not pairs:
        raise ValueError("no pairs to measure")
    device = next(policy.parameters()).device
    sums = {"chosen": 0.0, "rejected": 0.0, "margin": 0.0, "ranked_right": 0.0, "chosen_down": 0.0}
    with eval_mode(policy):
        for i in range(0, len(pairs), batch_size):
            part = pairs[i:i + batch_size]
            batch = answer_batch([p.chosen for p in part] + [p.rejected for p in part], pad_id, device)
            seq = answer_logprobs(policy, *batch).sum(-1)
            ref = reference_logprobs(reference, policy, *batch).sum(-1)
            n = len(part)
            margin = (seq[:n] - ref[:n]) - (seq[n:] - ref[n:])
            sums["chosen"] += float(seq[:n].sum())
            sums["rejected"] += float(seq[n:].sum())
            sums["margin"] += float(margin.sum())
            sums["ranked_right"] += float((margin > 0).sum())
            sums["chosen_down"] += float((seq[:n] < ref[:n] - 1e-6).sum())
    return {k: v / len(pairs) for k, v in sums.items()}
