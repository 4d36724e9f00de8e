"""Chapter 8's runs as functions, and the commands that choose its recipes on the validation sets, measure a
flawed reward and the seed spread:

    python -m gpt2_core.course.reward_runs search --out results/ch08-recipe-search.json
    python -m gpt2_core.course.reward_runs seed-spread --out results/ch08-seed-spread.json
    python -m gpt2_core.course.reward_runs merge --parts a.json b.json --out joined.json

**One budget for every method** (:class:`RewardRecipe`): ``steps`` AdamW steps of ``batch`` sequences each,
the same betas, warmup and cosine decay, no weight decay; one learning rate for the offline methods (best-of-k,
DPO, more SFT) and GRPO's own. The offline methods take ``steps`` steps over their data; GRPO samples
``questions`` groups of ``k`` answers per sampling step and splits them into ``questions * k / batch`` optimizer
steps, so it takes as many sampling steps as make the same ``steps`` optimizer steps over the same number of
sequences. A DPO pair counts as two sequences.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..finetuning.grpo import GRPOConfig, GRPOHistory, train_grpo
from ..finetuning.instruction_data import SUPPORTED, extra_training_records
from ..finetuning.instruction_eval import Answer, generate_answers, sample_answers
from ..finetuning.instruction_sets import procedure_records
from ..finetuning.loop import FinetuneConfig, FinetuneHistory, finetune
from ..finetuning.rewards import contains_reward, is_right, reward, unordered_reward
from ..finetuning.rl import (
    Pair,
    best_of_k_items,
    dpo_loader,
    dpo_loss_fn,
    dpo_pairs,
    frontier,
    items_loader,
    pair_statistics,
)
from ..pretraining.step import lm_loss
from ..profile import get_device, pick, seed_everything
from . import instruction_runs as ch7
from .results import measuring_parser, merge_methods, merge_stamp, summary, write_command_result, write_merged

PROG = "gpt2_core.course.reward_runs"
POOL_PROCEDURE_SEED = 61  # chapter 7's procedure records use another seed
REWARDS: dict[str, Callable[[Answer, str, float], float]] = {
    "exact": reward, "contains": contains_reward, "unordered": unordered_reward}


@dataclass(frozen=True)
class RewardRecipe:
    """How chapter 8 trains every method, at one budget (module docstring)."""

    k: int = 8  # answers sampled per question: pass@k, best-of-k, DPO pairs, GRPO groups
    temperature: float = 1.0
    pool: int = 1500  # new training questions (supported families) the methods learn from
    procedure_share: float = 0.0  # of the pool, questions about chapter 7's procedure words (made up, letters)
    steps: int = 400  # optimizer steps, every method
    batch: int = 32  # sequences per optimizer step, every method
    lr: float = 2e-5  # the offline methods (best-of-k, DPO, more SFT)
    grpo_lr: float = 2e-5  # GRPO (chosen on validation by the search)
    warmup: float = 0.1
    questions: int = 16  # GRPO: groups with a signal per sampling step
    max_draws: int = 3  # GRPO: draws per sampling step to find them (1: no dynamic sampling)
    frontier_only: bool = True  # GRPO: only questions whose first k samples were partly right
    kl_coef: float = 0.02
    clip_eps: float = 0.2
    reward: str = "exact"  # GRPO's reward, a key of REWARDS
    dpo_beta: float = 0.5  # chosen on validation by the search (plain DPO, beta 0.1, collapses)
    dpo_nll: float = 1.0  # weight of the NLL term on the chosen answer (0: plain DPO)
    dpo_validation: float = 0.1  # share of the pool's questions whose pairs only measure DPO
    track_every: int = 20  # GRPO and DPO: validation measured every n optimizer steps (0: only at the end)
    max_new_tokens: int = 16  # longest sampled answer, end-of-text included

    @property
    def minibatches(self) -> int:
        """GRPO's optimizer steps per sampling step."""
        return max(1, self.questions * self.k // self.batch)

    @property
    def sampling_steps(self) -> int:
        """GRPO's sampling steps: as many as make ``steps`` optimizer steps."""
        return max(1, self.steps // self.minibatches)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def profile_recipe() -> RewardRecipe:
    # tiny: seconds in CI; its few questions may have no frontier, so GRPO draws from all of them
    return pick(tiny=RewardRecipe(pool=32, steps=3, questions=4, lr=1e-4, grpo_lr=1e-4, max_draws=1,
                                  frontier_only=False, track_every=0),
                default=RewardRecipe())


def training_pool(recipe: RewardRecipe) -> list[dict]:
    """``recipe.pool`` new training questions of the supported families, drawn from the training vocabulary
    like chapter 7's but asked nowhere before (not in training, not in any test or validation set); a
    ``recipe.procedure_share`` of them about chapter 7's procedure words instead (other questions than its
    training records: another seed), shuffled in."""
    everything = [r for records in ch7.instruction_sets(ch7.InstructionRecipe()).values() for r in records]
    n_procedure = round(recipe.pool * recipe.procedure_share)
    made = extra_training_records(everything, n=2 * recipe.pool, seed=31)
    pool = [r for r in made if r["family"] in SUPPORTED][:recipe.pool - n_procedure]
    if n_procedure:
        asked = {(r["instruction"], r["input"]) for r in everything}
        procedure = [r for r in procedure_records(2 * n_procedure, seed=POOL_PROCEDURE_SEED)
                     if (r["instruction"], r["input"]) not in asked][:n_procedure]
        pool += procedure
        random.Random(POOL_PROCEDURE_SEED).shuffle(pool)
    return pool


def sample_pool(model: nn.Module, tokenizer: Any, pool: Sequence[dict], recipe: RewardRecipe, seed: int
                ) -> list[list[Answer]]:
    """``recipe.k`` answers to each pool question at ``recipe.temperature``, seeded."""
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    return sample_answers(model, tokenizer, pool, recipe.k, recipe.temperature, recipe.max_new_tokens,
                          generator=generator)


def policy_from(start: nn.Module) -> nn.Module:
    """A trainable copy of the start, with the (tied) token embedding frozen as in chapter 7."""
    policy = copy.deepcopy(start)
    ch7.freeze_token_embedding(policy)
    return policy


def _finetune_config(recipe: RewardRecipe, seed: int, desc: str, progress: bool, eval_every: int = 0
                     ) -> FinetuneConfig:
    return FinetuneConfig(steps=recipe.steps, lr=recipe.lr, warmup_steps=max(1, round(recipe.warmup * recipe.steps)),
                          weight_decay=0.0, seed=seed, desc=desc, progress=progress, eval_every=eval_every)


def greedy_tracker(tokenizer: Any, records: Sequence[dict], max_new: int) -> Callable[[nn.Module], dict]:
    """A ``metrics_fn(model)``: greedy exact match on the supported families of ``records`` (a validation set)."""
    supported = [r for r in records if r["family"] in SUPPORTED]

    def validation(model: nn.Module) -> dict:
        answers = generate_answers(model, tokenizer, supported, max_new)
        return {"validation": sum(is_right(a, r["output"]) for r, a in zip(supported, answers, strict=True))
                / len(supported)}

    return validation


def run_best_of_k(start: nn.Module, tokenizer: Any, pool: Sequence[dict], answers: Sequence[Sequence[Answer]],
                  recipe: RewardRecipe, seed: int = 123, progress: bool = True) -> tuple[nn.Module, FinetuneHistory]:
    """Fine-tune a copy of ``start`` on the distinct right answers it sampled (rejection sampling)."""
    model = policy_from(start)
    items = best_of_k_items(pool, answers, per_question=1)
    loader = items_loader(items, tokenizer.eot_token, recipe.batch, seed=seed, device=next(model.parameters()).device)
    return model, finetune(model, loader, lm_loss, _finetune_config(recipe, seed, "best-of-k", progress))


def split_pairs(pool: Sequence[dict], answers: Sequence[Sequence[Answer]], recipe: RewardRecipe, seed: int
                ) -> tuple[list[Pair], list[Pair]]:
    """DPO's (training pairs, validation pairs): the pairs of the last ``recipe.dpo_validation`` of the pool's
    questions only measure."""
    cut = round(len(pool) * (1 - recipe.dpo_validation))
    train = dpo_pairs(pool[:cut], answers[:cut], per_question=2, seed=seed)
    validation = dpo_pairs(pool[cut:], answers[cut:], per_question=2, seed=seed) if cut < len(pool) else []
    return train, validation


def run_dpo(start: nn.Module, reference: nn.Module, tokenizer: Any, pairs: Sequence[Pair],
            validation_pairs: Sequence[Pair], recipe: RewardRecipe, seed: int = 123, progress: bool = True
            ) -> tuple[nn.Module, FinetuneHistory]:
    """DPO (with ``recipe.dpo_nll`` of the chosen answers' NLL) on ``pairs``, ``recipe.batch // 2`` pairs a step;
    every ``recipe.track_every`` steps the pairs' statistics on 200 training and the validation pairs."""
    model = policy_from(start)
    eot = tokenizer.eot_token
    loader = dpo_loader(pairs, eot, max(1, recipe.batch // 2), seed=seed, device=next(model.parameters()).device)
    watched = list(pairs[:200])

    def pair_metrics(policy: nn.Module) -> dict:
        stats = {f"train {k}": v for k, v in pair_statistics(policy, reference, watched, eot).items()}
        if validation_pairs:
            stats.update({f"validation {k}": v for k, v in pair_statistics(policy, reference, validation_pairs,
                                                                           eot).items()})
        return stats

    history = finetune(model, loader, dpo_loss_fn(reference, recipe.dpo_beta, recipe.dpo_nll),
                       _finetune_config(recipe, seed, "DPO", progress, recipe.track_every), pair_metrics)
    return model, history


def run_grpo(start: nn.Module, reference: nn.Module, tokenizer: Any, records: Sequence[dict], recipe: RewardRecipe,
             seed: int = 123, metrics_fn: Callable[[nn.Module], dict] | None = None, progress: bool = True,
             desc: str = "GRPO") -> tuple[nn.Module, GRPOHistory]:
    """GRPO from a copy of ``start`` on ``records`` at the chapter's budget (:class:`RewardRecipe`)."""
    model = policy_from(start)
    steps = recipe.sampling_steps
    config = GRPOConfig(steps=steps, questions=recipe.questions, group_size=recipe.k, temperature=recipe.temperature,
                        lr=recipe.grpo_lr, warmup_steps=max(1, round(recipe.warmup * steps * recipe.minibatches)),
                        kl_coef=recipe.kl_coef, clip_eps=recipe.clip_eps, minibatches=recipe.minibatches,
                        max_draws=recipe.max_draws, max_new_tokens=recipe.max_new_tokens,
                        reward_fn=REWARDS[recipe.reward],
                        eval_every=max(1, recipe.track_every // recipe.minibatches) if recipe.track_every else 0,
                        seed=seed, desc=desc, progress=progress)
    return model, train_grpo(model, reference, tokenizer, records, config, metrics_fn)


def run_more_sft(start: nn.Module, tokenizer: Any, pool: Sequence[dict], recipe: RewardRecipe, seed: int = 123,
                 progress: bool = True) -> tuple[nn.Module, FinetuneHistory]:
    """The baseline: the same budget of chapter 7's supervised loss on the pool's reference answers."""
    model = policy_from(start)
    steps = ch7.InstructionRecipe(steps=recipe.steps, batch_size=recipe.batch, lr=recipe.lr, weight_decay=0.0,
                                  warmup=recipe.warmup)
    return model, ch7.fine_tune(model, tokenizer, pool, steps, seed=seed, desc="more SFT", progress=progress)


def run_methods(start: nn.Module, tokenizer: Any, recipe: RewardRecipe, seed: int, methods: Sequence[str],
                progress: bool = False, metrics_fn: Callable[[nn.Module], dict] | None = None,
                sampled: tuple[list[dict], list[list[Answer]]] | None = None) -> dict[str, tuple[nn.Module, Any]]:
    """Each named method (``best-of-k``, ``DPO``, ``GRPO``, ``more SFT``) once from ``start``, seeded:
    {method: (model, history)}. The pool is sampled once, by the start, for all of them (``sampled``: the
    ``(pool, answers)`` of an earlier call with the same seed)."""
    seed_everything(seed)
    reference = copy.deepcopy(start).requires_grad_(False)
    if sampled is None:
        pool = training_pool(recipe)
        sampled = pool, sample_pool(start, tokenizer, pool, recipe, seed)
    pool, answers = sampled
    out: dict[str, tuple[nn.Module, Any]] = {}
    for method in methods:
        if method == "best-of-k":
            out[method] = run_best_of_k(start, tokenizer, pool, answers, recipe, seed, progress)
        elif method == "DPO":
            out[method] = run_dpo(start, reference, tokenizer, *split_pairs(pool, answers, recipe, seed), recipe,
                                  seed, progress)
        elif method == "GRPO":
            records = frontier(pool, answers) if recipe.frontier_only else pool
            out[method] = run_grpo(start, reference, tokenizer, records, recipe, seed, metrics_fn, progress)
        elif method == "more SFT":
            out[method] = run_more_sft(start, tokenizer, pool, recipe, seed, progress)
        else:
            raise ValueError(f"unknown method {method!r}; use best-of-k, DPO, GRPO or more SFT")
    return out


# --------------------------------------------------------------------------- the measuring commands
VARIANTS: dict[str, tuple[str, dict]] = {  # name: (method, recipe changes from the chapter's RewardRecipe)
    "GRPO, whole pool, no dynamic sampling": ("GRPO", {"max_draws": 1, "frontier_only": False}),
    "GRPO, frontier questions, no dynamic sampling": ("GRPO", {"max_draws": 1}),
    "GRPO, frontier questions, dynamic sampling": ("GRPO", {}),
    "GRPO, frontier, dynamic sampling, lr 5e-5": ("GRPO", {"grpo_lr": 5e-5}),
    "DPO, plain": ("DPO", {"dpo_nll": 0.0, "dpo_beta": 0.1}),
    "DPO, NLL term 1": ("DPO", {"dpo_nll": 1.0, "dpo_beta": 0.1}),
    "DPO, NLL term 1, beta 0.5": ("DPO", {"dpo_nll": 1.0, "dpo_beta": 0.5}),
    "GRPO, order-blind reward": ("GRPO", {"reward": "unordered"}),
    "GRPO, frontier, dynamic sampling, procedure questions 0.75": ("GRPO", {"procedure_share": 0.75}),
}


def _flawed_reward_report(model: nn.Module, tokenizer: Any, records: Sequence[dict], reward_name: str,
                          max_new: int) -> dict:
    """Greedy answers to ``records`` judged by the flawed reward and by exact match, with examples paid but wrong."""
    answers = generate_answers(model, tokenizer, records, max_new)
    paid = [REWARDS[reward_name](a, r["output"], 0.0) for r, a in zip(records, answers, strict=True)]
    right = [is_right(a, r["output"]) for r, a in zip(records, answers, strict=True)]
    paid_wrong = [(r, a) for r, a, p, ok in zip(records, answers, paid, right, strict=True) if p == 1.0 and not ok]
    return {"flawed reward": sum(paid) / len(records), "exact match": sum(right) / len(records),
            "paid but wrong": len(paid_wrong) / len(records), "n": len(records),
            "words per answer": sum(len(a.text.split()) for a in answers) / len(records),
            "examples": [{"input": r["input"], "family": r["family"], "answer": a.text, "expected": r["output"]}
                         for r, a in paid_wrong[:8]]}


def search(names: Sequence[str], seed: int = 123, progress: bool = False) -> dict:
    """Each named :data:`VARIANTS` once, scored on the validation sets only (never the test): exact match on the
    supported families, per family, its training curves, and for a flawed reward what it paid for."""
    start_time = time.perf_counter()
    start, tokenizer, source = ch7.chapter_model(get_device())
    base = profile_recipe()
    sets = ch7.instruction_sets(ch7.profile_recipe())
    track = greedy_tracker(tokenizer, sets["validation"][::2], base.max_new_tokens)
    rows: dict[str, dict] = {"start": _validation_scores(start, tokenizer, sets)}
    pool = training_pool(base)
    sampled = pool, sample_pool(start, tokenizer, pool, base, seed)  # the variants change nothing it depends on
    for name in names:
        method, changes = VARIANTS[name]
        recipe = dataclasses.replace(base, **changes)
        t0 = time.perf_counter()
        same_pool = (recipe.pool, recipe.procedure_share) == (base.pool, base.procedure_share)
        model, history = run_methods(start, tokenizer, recipe, seed, [method], progress, metrics_fn=track,
                                     sampled=sampled if same_pool else None)[method]
        row = {"method": method, "recipe": recipe.to_dict(), **_validation_scores(model, tokenizer, sets),
               "history": _history_dict(history), "seconds": round(time.perf_counter() - t0, 1)}
        if recipe.reward != "exact":
            supported = [r for r in sets["validation"] if r["family"] in SUPPORTED]
            row["flawed"] = {when: _flawed_reward_report(m, tokenizer, supported, recipe.reward, recipe.max_new_tokens)
                             for when, m in (("start", start), ("after", model))}
        rows[name] = row
        print(f"{name}: " + ", ".join(f"{s} {row[s]['supported']:.1%}" for s in ch7.VALIDATION_SETS), flush=True)
    return {"seed": seed, "variants": list(names), "runs": rows, "start_model": source, "recipe": base.to_dict(),
            "seconds": round(time.perf_counter() - start_time, 1)}


def _validation_scores(model: nn.Module, tokenizer: Any, sets: dict) -> dict:
    scores = ch7.score_sets(model, tokenizer, sets, ch7.VALIDATION_SETS, max_new=RewardRecipe.max_new_tokens)
    return {s: {"supported": scores[s]["supported"], "format_compliance": scores[s]["format_compliance"],
                "families": scores[s]["table"]["exact_match"].dropna().to_dict()} for s in ch7.VALIDATION_SETS}


def _history_dict(history: Any) -> dict:
    """The curves a notebook draws; a step without an update has no loss or KL (None in JSON)."""
    keep = ("steps", "losses", "eval_steps", "evals", "reward", "right", "kl", "clipped", "groups_used", "draws")
    return {k: [None if isinstance(x, float) and x != x else x for x in v] if isinstance(v, list) else v
            for k, v in history.to_dict().items() if k in keep}


SPREAD_METHODS = ("GRPO", "DPO", "more SFT", "best-of-k")


def seed_spread(seeds: Sequence[int], progress: bool = False) -> dict:
    """Each of :data:`SPREAD_METHODS` once per seed at the chapter's recipe: exact match on the supported
    families of each test set, per seed, with mean and standard deviation; the start's score too."""
    start_time = time.perf_counter()
    start, tokenizer, source = ch7.chapter_model(get_device())
    recipe = profile_recipe()
    sets = ch7.instruction_sets(ch7.profile_recipe())
    start_scores = ch7.score_sets(start, tokenizer, sets, max_new=recipe.max_new_tokens)
    runs: dict[str, dict[str, list[float]]] = {m: {k: [] for k in (*ch7.SETS, "format_compliance")}
                                               for m in SPREAD_METHODS}
    for seed in seeds:
        for method, (model, _) in run_methods(start, tokenizer, recipe, seed, SPREAD_METHODS, progress).items():
            scores = ch7.score_sets(model, tokenizer, sets, max_new=recipe.max_new_tokens)
            for set_name in ch7.SETS:
                runs[method][set_name].append(scores[set_name]["supported"])
            runs[method]["format_compliance"].append(scores["test"]["format_compliance"])
            print(f"{method}, seed {seed}: " + ", ".join(f"{s} {scores[s]['supported']:.1%}" for s in ch7.SETS),
                  flush=True)
    return {"seeds": list(seeds), "start_exact_match_supported": start_scores["test"]["supported"],
            "start": {s: start_scores[s]["supported"] for s in ch7.SETS}, "start_model": source,
            "n": {s: sum(r["family"] in SUPPORTED for r in sets[s]) for s in ch7.SETS},
            "methods": {m: {k: summary(v) for k, v in r.items()} for m, r in runs.items()},
            "recipe": recipe.to_dict(), "seconds": round(time.perf_counter() - start_time, 1)}


def merge(parts: Sequence[dict]) -> dict:
    """One measurement from pieces of one command run apart (other variants, or other seeds), as
    :func:`~gpt2_core.course.instruction_runs.merge_measurements` does for chapter 7."""
    # a recipe written before a field was added reads as that field's default
    parts = [{**p, "recipe": RewardRecipe(**p["recipe"]).to_dict(),
              **({"runs": {k: {**v, "recipe": RewardRecipe(**v["recipe"]).to_dict()} if "recipe" in v else v
                           for k, v in p["runs"].items()}} if "runs" in p else {})} for p in parts]
    first = parts[0]
    kind = "variants" if "variants" in first else "seeds"
    if any(kind not in part for part in parts[1:]):
        raise ValueError("cannot merge a recipe search with a seed spread; merge pieces of one command")
    merged = merge_stamp(parts, ("profile", "recipe", "start_model", *(("seed",) if kind == "variants" else ())))
    listed = [x for p in parts for x in p[kind]]
    if len(set(listed)) < len(listed):
        raise ValueError(f"one of {listed} is measured in two pieces; merge pieces that measure different {kind}")
    if kind == "variants":
        names = " ".join(f"'{n}'" for n in listed)
        return {**merged, "command": f"python -m {PROG} search --variants {names}", "seed": first["seed"],
                "variants": listed, "runs": {k: v for p in parts for k, v in p["runs"].items()}}
    return {**merged, "command": f"python -m {PROG} seed-spread --seeds {' '.join(map(str, listed))}", "seeds": listed,
            "start_exact_match_supported": first["start_exact_match_supported"], "start": first["start"],
            "n": first["n"], "methods": merge_methods(parts)}


def main(argv: list[str] | None = None) -> int:
    parser = measuring_parser(PROG, "Choose chapter 8's recipes, or measure its seed spread.",
                              ("search", "seed-spread", "merge"))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                        help="search: the recipes to try (default: all)")
    args = parser.parse_args(argv)
    if args.what == "merge":
        return write_merged(args.parts, args.out, merge)
    if args.what == "search":
        result = search(args.variants, args.seeds[0], args.progress)
    else:
        result = seed_spread(args.seeds, args.progress)
    return write_command_result(args.out, PROG, argv, result)


if __name__ == "__main__":
    raise SystemExit(main())
