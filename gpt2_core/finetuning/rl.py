"""Learning from rewards, part 2 (chapter 8): best-of-k fine-tuning, DPO and GRPO.

All three start from the model's own sampled answers (:func:`~gpt2_core.finetuning.instruction_eval.sample_answers`)
graded by a reward (:mod:`gpt2_core.finetuning.rewards`), and all three take their optimizer steps with
pretraining's :func:`~gpt2_core.pretraining.step.train_step` (AdamW, warmup + cosine, clipping):

- **best-of-k** (rejection sampling, expert iteration): keep the right answers, fine-tune on them with the
  ordinary instruction loss (:func:`best_of_k_items`, then :func:`~gpt2_core.finetuning.loop.finetune`).
- **DPO** (Rafailov et al., 2023): pairs of a right and a wrong answer to the same question; the loss
  raises the right one's log-probability *relative to a frozen reference* more than the wrong one's
  (:func:`dpo_pairs`, :func:`dpo_loss`, :func:`dpo_loader` + :func:`dpo_loss_fn` for ``finetune``).
- **GRPO** (Shao et al., 2024): every step samples a group of answers per question, scores each against
  its group's mean (:func:`group_advantages`) and follows the clipped policy ratio with a KL penalty to
  the starting model (:func:`grpo_loss`, :func:`train_grpo`).

The losses run with dropout off: the log-probabilities must be those of the policy that sampled.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..checks import check_int, check_number
from ..model.gpt import eval_mode
from ..pretraining.optim import OptimConfig, autocast_for, optimizer_for
from ..pretraining.step import RunHistory, train_step
from .instruction_eval import Answer, sample_answers
from .instruction_prompts import format_prompt, instruction_collate
from .rewards import answer_batch, answer_logprobs, is_right, reference_logprobs, reward


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


def dpo_loss_fn(reference: nn.Module | None, beta: float = 0.1) -> Callable[[nn.Module, Any], torch.Tensor]:
    """A ``loss_fn(policy, batch)`` for :func:`~gpt2_core.finetuning.loop.finetune` over :func:`dpo_loader`
    batches. ``reference=None``: a LoRA policy with its adapters off is the reference."""

    def loss_fn(policy: nn.Module, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        inputs, targets, mask = batch
        n = inputs.shape[0] // 2
        with eval_mode(policy):
            ref = reference_logprobs(reference, policy, inputs, targets, mask).sum(-1)
            seq = answer_logprobs(policy, inputs, targets, mask).sum(-1)
        return dpo_loss(seq[:n], seq[n:], ref[:n], ref[n:], beta)

    return loss_fn


# --------------------------------------------------------------------------- GRPO
def group_advantages(rewards: torch.Tensor, eps: float = 1e-4, scale: bool = True) -> torch.Tensor:
    """GRPO's advantages for ``rewards`` of shape (questions, group size): each reward minus its group's
    mean, divided by the group's standard deviation when ``scale``. A group whose rewards are all equal gets
    zeros: it says nothing about which answer is better."""
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be (questions, group size >= 2), got shape {tuple(rewards.shape)}")
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    return centred / (rewards.std(dim=1, keepdim=True) + eps) if scale else centred


def kl_k3(logp: torch.Tensor, logp_reference: torch.Tensor) -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) on tokens the policy sampled (Schulman, 2020, "Approximating
    KL divergence", k3): ``r - log r - 1`` with ``r = p_ref / p_policy``; never negative, unbiased."""
    d = logp_reference - logp
    return torch.exp(d) - d - 1.0


def grpo_loss(logp: torch.Tensor, logp_old: torch.Tensor, logp_reference: torch.Tensor, advantages: torch.Tensor,
              mask: torch.Tensor, clip_eps: float = 0.2, kl_coef: float = 0.02) -> tuple[torch.Tensor, dict]:
    """GRPO's objective, negated for gradient descent, averaged over the answer tokens of the batch.

    ``logp``, ``logp_old``, ``logp_reference`` (answers, tokens): answer-token log-probs under the policy
    being trained, the policy that sampled, and the starting model; ``advantages`` (answers,); ``mask`` marks
    answer tokens. Per token: ``-min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A) + kl_coef * k3``, with
    ``ratio = exp(logp - logp_old)``: once a token's ratio has moved ``eps`` in the advantage's direction,
    its gradient is zero, so one batch of samples cannot push the policy far. Returns (loss, stats)."""
    ratio = torch.exp(logp - logp_old)
    a = advantages[:, None]
    surrogate = torch.minimum(ratio * a, ratio.clamp(1 - clip_eps, 1 + clip_eps) * a)
    kl = kl_k3(logp, logp_reference)
    m = mask.to(logp.dtype)
    tokens = m.sum().clamp(min=1)
    loss = (-(surrogate - kl_coef * kl) * m).sum() / tokens
    with torch.no_grad():
        stats = {"kl": float((kl * m).sum() / tokens),
                 "clipped": float((((ratio - 1).abs() > clip_eps).to(m.dtype) * m).sum() / tokens)}
    return loss, stats


@dataclass(kw_only=True)
class GRPOConfig(OptimConfig):
    """One GRPO run: each of ``steps`` steps samples ``group_size`` answers at ``temperature`` for
    ``questions`` training questions, scores them with ``reward_fn``, then takes ``updates`` optimizer steps
    on them (more than one makes the policy ratio move, and the clip matter)."""

    steps: int
    questions: int = 16
    group_size: int = 8
    temperature: float = 1.0
    kl_coef: float = 0.02
    clip_eps: float = 0.2
    updates: int = 1
    format_weight: float = 0.1
    max_new_tokens: int = 16
    weight_decay: float = 0.0
    reward_fn: Callable[[Answer, str, float], float] = reward
    desc: str = "GRPO"

    def __post_init__(self) -> None:
        check_int(self.steps, "GRPOConfig.steps", low=1)
        self._check(self.steps * check_int(self.updates, "GRPOConfig.updates", low=1), "steps * updates")
        check_int(self.questions, "GRPOConfig.questions", low=1)
        check_int(self.group_size, "GRPOConfig.group_size", low=2)
        check_number(self.temperature, "GRPOConfig.temperature", positive=True)
        check_number(self.kl_coef, "GRPOConfig.kl_coef", low=0.0)
        check_number(self.clip_eps, "GRPOConfig.clip_eps", positive=True)


@dataclass
class GRPOHistory(RunHistory):
    """Per step: mean reward, share of right answers (exact reward), KL to the start (k3, per answer token),
    share of clipped tokens, groups with a signal; plus RunHistory's losses and learning rates."""

    reward: list[float] = field(default_factory=list)
    right: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    clipped: list[float] = field(default_factory=list)
    groups_used: list[int] = field(default_factory=list)


def _same_length_questions(rng: random.Random, by_length: dict[int, list[int]], n: int) -> list[int]:
    """``n`` questions whose prompts have one token length (one batched generate call, no padding), the
    length drawn in proportion to how many questions have it."""
    lengths = sorted(by_length)
    pool = by_length[rng.choices(lengths, [len(by_length[n_]) for n_ in lengths])[0]]
    return rng.sample(pool, min(n, len(pool)))


def _grpo_loss_fn(config: GRPOConfig, stats: list[dict]) -> Callable[[nn.Module, tuple], torch.Tensor]:
    """The loss of one GRPO update over ``(inputs, targets, mask, logp_old, logp_reference, advantages)``;
    each call's KL and clipped share go to ``stats``."""

    def loss_fn(model: nn.Module, batch: tuple) -> torch.Tensor:
        inputs, targets, mask, old, ref, adv = batch
        loss, step_stats = grpo_loss(answer_logprobs(model, inputs, targets, mask, config.temperature), old, ref,
                                     adv, mask, config.clip_eps, config.kl_coef)
        stats.append(step_stats)
        return loss

    return loss_fn


def train_grpo(policy: nn.Module, reference: nn.Module | None, tokenizer: Any, records: Sequence[dict],
               config: GRPOConfig) -> GRPOHistory:
    """GRPO on ``records`` (their answers only grade). ``reference=None`` with a LoRA policy uses the
    adapters-off network as the starting model. Groups whose rewards are all equal are left out of the
    update (their advantages are zero); a step with no such group takes no update. The policy is left in
    eval mode."""
    if not isinstance(config, GRPOConfig):
        raise TypeError(f"config must be a GRPOConfig, got {type(config).__name__}")
    if not records:
        raise ValueError("no training records for GRPO")
    eot, device = tokenizer.eot_token, next(policy.parameters()).device
    rng = random.Random(config.seed)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    torch.manual_seed(config.seed)
    by_length: dict[int, list[int]] = {}
    for i, record in enumerate(records):
        by_length.setdefault(len(tokenizer.encode_ordinary(format_prompt(record))), []).append(i)
    optimizer, scheduler = optimizer_for(policy, config, config.steps * config.updates)
    autocast = autocast_for(config, device)
    history = GRPOHistory()
    bar = tqdm(total=config.steps, desc=config.desc, unit="step", disable=not config.progress)
    start = time.perf_counter()
    stats: list[dict] = []
    loss_fn = _grpo_loss_fn(config, stats)
    policy.eval()
    try:
        for step in range(1, config.steps + 1):
            chosen = [records[i] for i in _same_length_questions(rng, by_length, config.questions)]
            groups = sample_answers(policy, tokenizer, chosen, config.group_size, config.temperature,
                                    config.max_new_tokens, generator=generator)
            rewards = torch.tensor([[config.reward_fn(a, r["output"], config.format_weight) for a in g]
                                    for r, g in zip(chosen, groups, strict=True)])
            advantages = group_advantages(rewards)
            keep = [q for q in range(len(chosen)) if rewards[q].std() > 0]
            history.reward.append(rewards.mean().item())
            history.right.append(sum(is_right(a, r["output"]) for r, g in zip(chosen, groups, strict=True)
                                     for a in g) / rewards.numel())
            history.groups_used.append(len(keep))
            lr = optimizer.param_groups[0]["lr"]
            stats.clear()
            losses = []
            if keep:
                batch = answer_batch([a for q in keep for a in groups[q]], eot, device)
                adv = advantages[keep].reshape(-1).to(device)
                with torch.no_grad():
                    old = answer_logprobs(policy, *batch, config.temperature)
                ref = reference_logprobs(reference, policy, *batch, config.temperature)
                batch = (*batch, old, ref, adv)
                for _ in range(config.updates):
                    losses.append(train_step(policy, optimizer, [batch], loss_fn=loss_fn, autocast=autocast,
                                             grad_clip=config.grad_clip, scheduler=scheduler))
                    if not math.isfinite(losses[-1]):
                        raise FloatingPointError(f"the GRPO loss became {losses[-1]} at step {step}, so its update "
                                                 f"was not applied; lower lr (now {lr:.2e})")
            history.steps.append(step)
            history.lrs.append(lr)
            history.losses.append(sum(losses) / len(losses) if losses else float("nan"))
            for key in ("kl", "clipped"):
                getattr(history, key).append(sum(d[key] for d in stats) / len(stats) if stats else float("nan"))
            bar.update(1)
            bar.set_postfix(reward=f"{history.reward[-1]:.2f}", right=f"{history.right[-1]:.2f}")
    finally:
        bar.close()
        history.seconds = time.perf_counter() - start
        policy.eval()
    return history

