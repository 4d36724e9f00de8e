"""GRPO (Shao et al., 2024, DeepSeekMath), chapter 8's online method: learn from rewards while sampling.

Every step samples a **group** of answers to each of a few training questions with the policy being trained,
scores each answer against its group's mean (:func:`group_advantages`), and follows the clipped policy ratio
with a KL penalty to the starting model (:func:`grpo_loss`). :func:`train_grpo` runs it with what chapter 8
measured it needs on a small model:

- questions drawn at random, so one step mixes prompt lengths (drawing one length per step, for one
  batched generate call, made count_words' answers all alike within a step: its prompt length fixes
  the answer);
- **dynamic sampling** (DAPO: Yu et al., 2025): a group whose answers all score the same carries no signal,
  so the step draws more questions until ``questions`` groups have one (at most ``max_draws`` draws);
- the sampled batch split into ``minibatches`` optimizer steps (PPO's minibatches), so an update sees as many
  sequences as an offline method's and the policy ratio moves away from 1 within a step, where the clip binds;
- greedy exact match on a validation set every ``eval_every`` steps (``metrics_fn``), as nanochat's RL does.

Each optimizer step is pretraining's :func:`~gpt2_core.pretraining.step.train_step`, the losses run with
dropout off (the log-probabilities must be those of the policy that sampled), and the sampling steps run in
pretraining's loop shell, :func:`~gpt2_core.pretraining.runner.run_steps`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..checks import check_int, check_number
from ..pretraining.optim import OptimConfig, autocast_for, optimizer_for
from ..pretraining.runner import MetricsFn, RunHistory, check_metrics_fn, measure, run_steps
from ..pretraining.step import train_step
from .instruction_eval import Answer, sample_answers
from .rewards import answer_batch, answer_logprobs, is_right, reference_logprobs, reward


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
    ``questions`` training questions whose groups carry a signal (drawing again, at most ``max_draws`` times,
    for groups that do not), scores them with ``reward_fn``, then takes ``minibatches`` optimizer steps on
    disjoint slices of them, ``updates`` times over. AdamW's betas are fine-tuning's, as for the offline methods."""

    steps: int
    questions: int = 16
    group_size: int = 8
    temperature: float = 1.0
    kl_coef: float = 0.02
    clip_eps: float = 0.2
    minibatches: int = 1
    updates: int = 1
    max_draws: int = 1
    format_weight: float = 0.1
    max_new_tokens: int = 16
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eval_every: int = 0  # 0: evaluate only at the end (if a metrics_fn is given)
    reward_fn: Callable[[Answer, str, float], float] = reward
    desc: str = "GRPO"

    def __post_init__(self) -> None:
        check_int(self.steps, "GRPOConfig.steps", low=1)
        check_int(self.minibatches, "GRPOConfig.minibatches", low=1)
        self._check(self.optimizer_steps, "steps * minibatches * updates")
        check_int(self.updates, "GRPOConfig.updates", low=1)
        check_int(self.max_draws, "GRPOConfig.max_draws", low=1)
        check_int(self.questions, "GRPOConfig.questions", low=1)
        check_int(self.group_size, "GRPOConfig.group_size", low=2)
        check_int(self.eval_every, "GRPOConfig.eval_every", low=0)
        check_number(self.temperature, "GRPOConfig.temperature", positive=True)
        check_number(self.kl_coef, "GRPOConfig.kl_coef", low=0.0)
        check_number(self.clip_eps, "GRPOConfig.clip_eps", positive=True)

    @property
    def optimizer_steps(self) -> int:
        """The most optimizer steps the run takes (fewer if some step finds no group with a signal)."""
        return self.steps * self.minibatches * self.updates


@dataclass
class GRPOHistory(RunHistory):
    """Per sampling step: mean reward and share of right answers over every group drawn, KL to the start (k3,
    per answer token), share of clipped tokens, groups trained on, draws taken; per evaluation (``eval_steps``):
    ``evals``, the dicts ``metrics_fn`` returned; plus RunHistory's losses and learning rates (per step, means)."""

    reward: list[float] = field(default_factory=list)
    right: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    clipped: list[float] = field(default_factory=list)
    groups_used: list[int] = field(default_factory=list)
    draws: list[int] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)


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


def _groups_with_signal(policy: nn.Module, tokenizer: Any, records: Sequence[dict], config: GRPOConfig,
                        rng: random.Random, generator: torch.Generator
                        ) -> tuple[list[list[Answer]], list[list[float]], list[Answer], int]:
    """Up to ``config.questions`` groups whose rewards differ, drawing at most ``config.max_draws`` times;
    returns (kept groups, their rewards, every answer drawn, draws taken)."""
    kept: list[list[Answer]] = []
    kept_rewards: list[list[float]] = []
    drawn: list[tuple[dict, Answer]] = []
    draws = 0
    while len(kept) < config.questions and draws < config.max_draws:
        draws += 1
        chosen = [records[i] for i in rng.sample(range(len(records)), min(config.questions, len(records)))]
        groups = sample_answers(policy, tokenizer, chosen, config.group_size, config.temperature,
                                config.max_new_tokens, generator=generator)
        for record, group in zip(chosen, groups, strict=True):
            rewards = [config.reward_fn(a, record["output"], config.format_weight) for a in group]
            drawn += [(record, a) for a in group]
            if len(set(rewards)) > 1 and len(kept) < config.questions:
                kept.append(group)
                kept_rewards.append(rewards)
    return kept, kept_rewards, drawn, draws


def train_grpo(policy: nn.Module, reference: nn.Module | None, tokenizer: Any, records: Sequence[dict],
               config: GRPOConfig, metrics_fn: MetricsFn | None = None) -> GRPOHistory:
    """GRPO on ``records`` (their answers only grade). ``reference=None`` with a LoRA policy uses the
    adapters-off network as the starting model. Only groups whose rewards differ are trained on; a step that
    finds none takes no update (its loss is recorded as NaN). ``metrics_fn(policy) -> dict`` runs every
    ``config.eval_every`` steps and at the end, without gradients. The policy is left in eval mode."""
    if not isinstance(config, GRPOConfig):
        raise TypeError(f"config must be a GRPOConfig, got {type(config).__name__}")
    if not records:
        raise ValueError("no training records for GRPO")
    check_metrics_fn(metrics_fn)
    eot, device = tokenizer.eot_token, next(policy.parameters()).device
    rng = random.Random(config.seed)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    torch.manual_seed(config.seed)
    optimizer, scheduler = optimizer_for(policy, config, config.optimizer_steps)
    autocast = autocast_for(config, device)
    history = GRPOHistory()
    stats: list[dict] = []
    loss_fn = _grpo_loss_fn(config, stats)

    def take_step(step: int) -> list[float]:  # sample, score, then minibatches x updates optimizer steps
        groups, rewards, drawn, draws = _groups_with_signal(policy, tokenizer, records, config, rng, generator)
        history.reward.append(sum(config.reward_fn(a, r["output"], config.format_weight) for r, a in drawn)
                              / len(drawn))
        history.right.append(sum(is_right(a, r["output"]) for r, a in drawn) / len(drawn))
        history.groups_used.append(len(groups))
        history.draws.append(draws)
        stats.clear()
        losses: list[float] = []
        if groups:
            batches = _minibatches(policy, reference, groups, rewards, config, rng, eot, device)
            for batch in [b for _ in range(config.updates) for b in batches]:
                losses.append(train_step(policy, optimizer, [batch], loss_fn=loss_fn, autocast=autocast,
                                         grad_clip=config.grad_clip, scheduler=scheduler))
                if not math.isfinite(losses[-1]):  # stop: the next update would add to unapplied gradients
                    return losses
        for key in ("kl", "clipped"):
            getattr(history, key).append(sum(d[key] for d in stats) / len(stats) if stats else float("nan"))
        return losses

    def on_eval(step: int) -> None:
        history.evals.append(measure(policy, metrics_fn))

    def postfix() -> dict[str, str]:
        return {"reward": f"{history.reward[-1]:.2f}", "right": f"{history.right[-1]:.2f}"}

    policy.eval()  # dropout off: the log-probabilities must be those of the policy that sampled
    return run_steps(policy, optimizer, history, take_step, last_step=config.steps, eval_every=config.eval_every,
                     on_eval=on_eval if metrics_fn is not None else None, postfix=postfix, desc=config.desc,
                     progress=config.progress, hint=f"Lower the learning rate (lr={config.lr:g}) or raise kl_coef.")


def _minibatches(policy: nn.Module, reference: nn.Module | None, groups: list[list[Answer]],
                 rewards: list[list[float]], config: GRPOConfig, rng: random.Random, eot: int,
                 device: torch.device) -> list[tuple]:
    """The kept answers in random disjoint slices: batches ``(inputs, targets, mask, logp_old, logp_ref, adv)``."""
    answers = [a for g in groups for a in g]
    advantages = group_advantages(torch.tensor(rewards)).reshape(-1)
    order = torch.randperm(len(answers), generator=torch.Generator().manual_seed(rng.randrange(2**31)))
    slices = [order[i::config.minibatches].tolist() for i in range(config.minibatches)]
    batches = []
    for rows in (s for s in slices if s):
        batch = answer_batch([answers[i] for i in rows], eot, device)
        with torch.no_grad():
            old = answer_logprobs(policy, *batch, config.temperature)
        ref = reference_logprobs(reference, policy, *batch, config.temperature)
        batches.append((*batch, old, ref, advantages[rows].to(device)))
    return batches
