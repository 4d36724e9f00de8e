"""Learning from rewards, part 1 (chapter 8): rewards a program checks, pass@k, and answers' log-probabilities.

Chapter 7's instructions have answers a program grades exactly, so a reward needs no human and no reward
model: a *verifiable* reward (the reinforcement-learning recipe of DeepSeek-R1, 2025).

- :func:`reward`: 1 for an exact-match answer the model ended with end-of-text, a small ``format_weight``
  for a well-formed wrong one, 0 otherwise. :func:`contains_reward` is a deliberately *flawed* reward
  (it pays when the expected answer appears anywhere in the output), and :func:`unordered_reward` another (it
  forgets the order of the words), to see what a policy does with them.
- :func:`pass_at_k`: the chance that at least one of ``k`` answers is right, estimated without bias from
  ``n`` samples (Chen et al., 2021); :func:`pass_at_k_by_family` per task family.
- :func:`answer_batch` and :func:`answer_logprobs`: the log-probability a model gives each token of its
  sampled answers (what DPO and GRPO train on), through the model's own forward.
- :func:`adapters_off`: a LoRA policy with its adapters switched off is the model it started from, so it
  serves as its own frozen reference at no extra memory.

Answers are sampled with :func:`gpt2_core.finetuning.instruction_eval.sample_answers`; the methods that
learn from these rewards (best-of-k, DPO, GRPO) are in :mod:`gpt2_core.finetuning.rl`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from ..checks import check_int
from ..model.gpt import eval_mode
from .instruction_eval import Answer, is_correct, normalise_answer
from .lora import LoRALinear


def reward(answer: Answer, expected: str, format_weight: float = 0.1) -> float:
    """The verifiable reward: 1 for a correct answer that ended with end-of-text, ``format_weight`` for a
    well-formed (non-empty, ended) wrong one, 0 for anything else (empty, or never stopped)."""
    if answer.stopped and is_correct(answer.text, expected):
        return 1.0
    return format_weight if answer.well_formed else 0.0


def contains_reward(answer: Answer, expected: str, format_weight: float = 0.1) -> float:
    """A FLAWED reward, for the reward-hacking experiment: 1 whenever the expected answer appears *anywhere*
    in the output as whole words, so an answer that lists many candidates is paid too."""
    if f" {normalise_answer(expected)} " in f" {normalise_answer(answer.text)} ":
        return 1.0
    return format_weight if answer.well_formed else 0.0


def unordered_reward(answer: Answer, expected: str, format_weight: float = 0.1) -> float:
    """A FLAWED reward, for the reward-hacking experiment: a grader that compares the *words* of the answer with
    the expected ones but forgets their order, so copying the input is paid for reversing or sorting it."""
    if answer.stopped and sorted(normalise_answer(answer.text).split()) == sorted(normalise_answer(expected).split()):
        return 1.0
    return format_weight if answer.well_formed else 0.0


def is_right(answer: Answer, expected: str) -> bool:
    """What every number of chapter 8 counts: exact match, ended by the model (the reward without its format term)."""
    return reward(answer, expected, 0.0) == 1.0


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` are right (Chen et al., 2021): the chance that ``k``
    of them drawn without replacement include a right one, ``1 - C(n - c, k) / C(n, k)``, as a stable product."""
    check_int(n, "n", low=1)
    check_int(c, "c", low=0, high=n)
    check_int(k, "k", low=1, high=n)
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def pass_at_k_by_family(records: Sequence[dict], answers: Sequence[Sequence[Answer]], ks: Sequence[int]
                        ) -> dict[str, dict[str, float]]:
    """Per family: the mean pass@k for each ``k`` (keys ``"pass@k"``), the share of well-formed answers
    (``"format"``) and the number of questions (``"n"``), from the same ``n`` answers per question."""
    table: dict[str, dict[str, float]] = {}
    for record, group in zip(records, answers, strict=True):
        right = sum(is_right(a, record["output"]) for a in group)
        row = table.setdefault(record["family"], {"n": 0, "format": 0.0, **{f"pass@{k}": 0.0 for k in ks}})
        row["n"] += 1
        row["format"] += sum(a.well_formed for a in group) / len(group)
        for k in ks:
            row[f"pass@{k}"] += pass_at_k(len(group), right, k)
    return {family: {key: (v if key == "n" else v / row["n"]) for key, v in row.items()}
            for family, row in table.items()}


def answer_batch(answers: Sequence[Answer], pad_id: int, device: torch.device | str = "cpu"
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(inputs, targets, mask)`` of shape (answers, longest - 1): each row ``prompt + answer``, padded on the
    right (which never changes earlier positions under a causal mask); ``targets[:, j]`` is the token after
    position ``j``; ``mask`` marks the positions whose target is an answer token (end-of-text included)."""
    seqs = [list(a.prompt_ids) + list(a.answer_ids) for a in answers]
    if not seqs or any(not a.prompt_ids or not a.answer_ids for a in answers):
        raise ValueError("every answer needs its prompt and answer token ids (from sample_answers)")
    width = max(len(s) for s in seqs)
    inputs = torch.full((len(seqs), width - 1), pad_id, dtype=torch.long)
    targets = torch.full((len(seqs), width - 1), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width - 1), dtype=torch.bool)
    for r, (seq, a) in enumerate(zip(seqs, answers, strict=True)):
        inputs[r, :len(seq) - 1] = torch.tensor(seq[:-1])
        targets[r, :len(seq) - 1] = torch.tensor(seq[1:])
        mask[r, len(a.prompt_ids) - 1:len(seq) - 1] = True
    return inputs.to(device), targets.to(device), mask.to(device)


def answer_logprobs(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                    temperature: float = 1.0) -> torch.Tensor:
    """Log-probabilities (answers, tokens) of ``targets`` under ``model`` where ``mask`` is set, 0 elsewhere.

    ``temperature`` divides the logits first: the distribution the answers were sampled from.
    """
    logits = model(inputs)[mask].float() / temperature  # (answer tokens, vocab)
    picked = logits.gather(-1, targets[mask][:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    return torch.zeros(mask.shape, dtype=picked.dtype, device=picked.device).masked_scatter(mask, picked)


@contextlib.contextmanager
def adapters_off(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block every :class:`~gpt2_core.finetuning.lora.LoRALinear` of ``model`` computes its frozen
    base layer only: the LoRA policy's own reference model."""
    layers = [m for m in model.modules() if isinstance(m, LoRALinear)]
    if not layers:
        raise ValueError("the model has no LoRA layers; give a frozen reference model instead")
    saved = [m.scaling for m in layers]
    for m in layers:
        m.scaling = 0.0
    try:
        yield model
    finally:
        for m, s in zip(layers, saved, strict=True):
            m.scaling = s


def reference_logprobs(reference: nn.Module | None, policy: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                       mask: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Answer log-probs under the reference, without gradients: the frozen ``reference`` model, or, when it is
    ``None``, the LoRA ``policy`` with its adapters off."""
    model = policy if reference is None else reference
    with torch.no_grad(), eval_mode(model), (adapters_off(policy) if reference is None else contextlib.nullcontext()):
        return answer_logprobs(model, inputs, targets, mask, temperature)
