"""Chapter 7's instruction-tuning runs as functions, the chapter model chapter 8 starts from, and the commands
that choose the training mix on the validation sets and measure the seed spread:

    python -m gpt2_core.course.instruction_runs mix-search --out results/ch07-mix-search.json
    python -m gpt2_core.course.instruction_runs seed-spread --out results/ch07-seed-spread.json
    python -m gpt2_core.course.instruction_runs merge --parts a.json b.json --out joined.json

``merge`` joins pieces of one command run apart (other shares or seeds, e.g. two processes of one thread each
on 2 cores) into the file the whole command would write.

The chapter model is the pretrained course model fully fine-tuned with its **token embedding frozen**.
The embedding is tied to the output layer, so training it would push down the logits of every token that
never occurs as a training answer (the held-out words among them), and weight decay would shrink them
further: the model would learn to answer with training words only (measured in the chapter).

:func:`chapter_model` is what chapter 8 calls: chapter 7's saved model when it exists for this profile and
recipe (``data/outputs/ch07-model-<profile>``), else the same function trains it again and saves it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..finetuning.instruction_eval import generate_answers, is_correct, score_answers, summarise
from ..finetuning.instruction_prompts import InstructionDataset, instruction_loader
from ..finetuning.instruction_sets import course_instructions
from ..finetuning.loop import FinetuneConfig, FinetuneHistory, finetune
from ..finetuning.lora import inject_lora
from ..model.gpt import GPTModel
from ..pretraining.checkpoint import checkpoint_info, load_checkpoint, save_checkpoint
from ..pretraining.step import lm_loss
from ..profile import data_dir, get_device, pick, profile_name, seed_everything
from .reference import base_model_name, load_base_model
from .results import measuring_parser, merge_methods, merge_stamp, summary, write_command_result, write_merged

PROG = "gpt2_core.course.instruction_runs"
SETS = ("test", "heldout", "fresh", "new")  # what a chapter model is scored on
VALIDATION_SETS = ("validation", "validation_new")  # what a recipe is chosen on


@dataclass(frozen=True)
class InstructionRecipe:
    """How chapter 7 fine-tunes: ``steps`` of ``batch_size`` examples, warmup then cosine decay."""

    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: float = 0.05
    freeze_token_embedding: bool = True
    lora_lr: float = 3e-3
    lora_rank: int = 16
    lora_targets: tuple[str, ...] = ("att.qkv", "att.out_proj", "ff.fc", "ff.proj")
    procedure_share: float = 0.75  # of the extra training records, procedure records (chosen by mix-search)
    train_records: int | None = None  # None: every training record (a number: the first n, for tiny runs)
    eval_every: int = 1  # score every n-th record of each evaluation set

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "lora_targets": list(self.lora_targets)}


def profile_recipe() -> InstructionRecipe:
    return pick(tiny=InstructionRecipe(steps=12, train_records=256, eval_every=20), default=InstructionRecipe())


def instruction_sets(recipe: InstructionRecipe) -> dict[str, list[dict]]:
    """The course's instruction sets (:func:`~gpt2_core.finetuning.instruction_data.course_instructions`),
    shrunk as the recipe says."""
    sets = course_instructions(recipe.procedure_share)
    if recipe.train_records is not None:
        sets["train"] = sets["train"][:recipe.train_records]
    for name in (*SETS, *VALIDATION_SETS):
        sets[name] = sets[name][::recipe.eval_every]
    return sets


def max_new_tokens(tokenizer: Any, records: Sequence[dict]) -> int:
    """Enough new tokens for the longest expected answer, plus its end-of-text."""
    return max(len(tokenizer.encode_ordinary(" " + r["output"])) for r in records) + 1


def freeze_token_embedding(model: GPTModel) -> int:
    """Freeze the token embedding (and with it the tied output layer); returns the trainable parameters left."""
    model.requires_grad_(True)
    model.tok_emb.weight.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def fine_tune(model: nn.Module, tokenizer: Any, records: Sequence[dict], recipe: InstructionRecipe, seed: int,
              lr: float | None = None, weight_decay: float | None = None,
              metrics_fn: Callable[[nn.Module], dict] | None = None, eval_every: int = 0, desc: str = "fine-tuning",
              progress: bool = True) -> FinetuneHistory:
    """``recipe.steps`` steps of the instruction loss (answers only) on ``records``, seeded."""
    seed_everything(seed)
    device = next(model.parameters()).device
    data = InstructionDataset(records, tokenizer, model.cfg.context_length)
    loader = instruction_loader(data, recipe.batch_size, seed=seed, device=device)
    config = FinetuneConfig(steps=recipe.steps, lr=recipe.lr if lr is None else lr,
                            warmup_steps=max(1, round(recipe.warmup * recipe.steps)),
                            weight_decay=recipe.weight_decay if weight_decay is None else weight_decay,
                            eval_every=eval_every, seed=seed, desc=desc, progress=progress)
    return finetune(model, loader, lm_loss, config, metrics_fn)


def full_fine_tune(model: GPTModel, tokenizer: Any, records: Sequence[dict], recipe: InstructionRecipe,
                   seed: int = 123, **kwargs: Any) -> FinetuneHistory:
    """The chapter's recipe: every weight trains but the (tied) token embedding."""
    if recipe.freeze_token_embedding:
        freeze_token_embedding(model)
    return fine_tune(model, tokenizer, records, recipe, seed, **kwargs)


def _lora_fine_tune(model: GPTModel, tokenizer: Any, records: Sequence[dict], recipe: InstructionRecipe,
                   seed: int = 123, **kwargs: Any) -> FinetuneHistory:
    """LoRA on the recipe's layers (everything else frozen), at LoRA's rate and without weight decay."""
    inject_lora(model, rank=recipe.lora_rank, alpha=2 * recipe.lora_rank, targets=recipe.lora_targets)
    return fine_tune(model, tokenizer, records, recipe, seed, lr=recipe.lora_lr, weight_decay=0.0, **kwargs)


def _full_fine_tune_with_embedding(model: GPTModel, tokenizer: Any, records: Sequence[dict], recipe: InstructionRecipe,
                                  seed: int = 123, **kwargs: Any) -> FinetuneHistory:
    """Full fine-tuning with the token embedding (and the tied output layer) trained too: what the chapter
    measures against its recipe."""
    model.requires_grad_(True)
    return fine_tune(model, tokenizer, records, recipe, seed, **kwargs)


METHODS: dict[str, Callable[..., FinetuneHistory]] = {
    "full fine-tuning": full_fine_tune,
    "LoRA": _lora_fine_tune,
    "full fine-tuning, embedding trained": _full_fine_tune_with_embedding,
}


def score_sets(model: nn.Module, tokenizer: Any, sets: dict[str, list[dict]], names: Sequence[str] = SETS,
               max_new: int | None = None) -> dict[str, dict]:
    """Greedy answers to each named set: ``{name: {"table": per-family DataFrame, **summarise(table), "correct":
    one bool per record}}``."""
    out = {}
    for name in names:
        records = sets[name]
        answers = generate_answers(model, tokenizer, records, max_new or max_new_tokens(tokenizer, records))
        table = score_answers(records, answers)
        out[name] = {"table": table, **summarise(table),
                     "correct": [is_correct(a.text, r["output"]) for r, a in zip(records, answers, strict=True)]}
    return out


def chapter_model_dir(profile: str | None = None) -> Path:
    """Where chapter 7 saves its model for chapter 8: ``data/outputs/ch07-model-<profile>``."""
    return data_dir() / "outputs" / f"ch07-model-{profile or profile_name()}"


def save_chapter_model(model: GPTModel, tokenizer: Any, recipe: InstructionRecipe, base_name: str,
                       scores: dict | None = None) -> Path:
    """Save the chapter model (checkpoint format, with its tokenizer and the recipe that made it)."""
    info = {"chapter": 7, "recipe": recipe.to_dict(), "base_model": base_name, "scores": scores or {}}
    return save_checkpoint(chapter_model_dir(), model, tokenizer=tokenizer, info=info)


def _saved_matches(recipe: InstructionRecipe, base_name: str) -> bool:
    try:
        meta = checkpoint_info(chapter_model_dir())["meta"]
    except (FileNotFoundError, ValueError) as err:
        if chapter_model_dir().exists():  # there, but cut short or damaged: say why it is trained again
            print(f"{chapter_model_dir()} cannot be used ({err}); training it again")
        return False
    return meta.get("recipe") == recipe.to_dict() and meta.get("base_model") == base_name  # info= lands in config.json


def chapter_model(device: torch.device | str | None = None, recipe: InstructionRecipe | None = None,
                  progress: bool = True) -> tuple[GPTModel, Any, str]:
    """(model, tokenizer, where it came from): chapter 7's saved model when it matches this profile's recipe
    and base model, else trained again here (a few minutes at the default profile) and saved."""
    device = torch.device(device) if device is not None else get_device()
    recipe = recipe or profile_recipe()
    if _saved_matches(recipe, base_model_name()):
        loaded = load_checkpoint(chapter_model_dir(), restore_rng=False, map_location=device)
        return loaded["model"].eval(), loaded["tokenizer"], f"loaded from {chapter_model_dir()}"
    model, tokenizer, base_name = load_base_model(device)
    print(f"no saved chapter-7 model for this profile and recipe in {chapter_model_dir()}; training it again")
    full_fine_tune(model, tokenizer, instruction_sets(recipe)["train"], recipe, progress=progress,
                   desc="chapter 7's model")
    model.requires_grad_(True)
    save_chapter_model(model, tokenizer, recipe, base_name)
    return model.eval(), tokenizer, "trained again (chapter 7's recipe)"


def seed_spread(seeds: Sequence[int], recipe: InstructionRecipe, progress: bool = False) -> dict:
    """Each of :data:`METHODS` once per seed; exact match on the supported families of each set, per seed,
    with mean and standard deviation."""
    start = time.perf_counter()
    base, tokenizer, name = load_base_model(get_device())
    state = {k: v.clone() for k, v in base.state_dict().items()}
    sets = instruction_sets(recipe)
    runs: dict[str, dict[str, list[float]]] = {}
    for method, train in METHODS.items():
        runs[method] = {name_: [] for name_ in (*SETS, "format_compliance")}
        for seed in seeds:
            model = GPTModel(base.cfg).to(base.device)
            model.load_state_dict(state)
            train(model, tokenizer, sets["train"], recipe, seed, progress=progress, desc=f"{method}, seed {seed}")
            scores = score_sets(model, tokenizer, sets)
            for set_name in SETS:
                runs[method][set_name].append(scores[set_name]["supported"])
            runs[method]["format_compliance"].append(scores["test"]["format_compliance"])
            print(f"{method}, seed {seed}: " + ", ".join(f"{s} {scores[s]['supported']:.1%}" for s in SETS), flush=True)
    spread = {m: {k: summary(v) for k, v in r.items()} for m, r in runs.items()}
    return {"seeds": list(seeds), "methods": spread, "base_model": name, "recipe": recipe.to_dict(),
            "seconds": round(time.perf_counter() - start, 1)}


def _mix_search(shares: Sequence[float], recipe: InstructionRecipe, seed: int = 123, progress: bool = False) -> dict:
    """Full fine-tuning (the chapter's recipe) once per share of procedure records, scored on the validation
    sets only (never the test, the held-out or the new words): exact match on the supported families, per
    family, and whether each record was answered right (for the chapter's figure of answer tokens)."""
    start = time.perf_counter()
    base, tokenizer, name = load_base_model(get_device())
    state = {k: v.clone() for k, v in base.state_dict().items()}
    rows = {}
    for share in shares:
        mix = dataclasses.replace(recipe, procedure_share=share)
        sets = instruction_sets(mix)
        model = GPTModel(base.cfg).to(base.device)
        model.load_state_dict(state)
        full_fine_tune(model, tokenizer, sets["train"], mix, seed, progress=progress, desc=f"share {share}")
        scores = score_sets(model, tokenizer, sets, VALIDATION_SETS)
        rows[str(share)] = {s: {"supported": scores[s]["supported"], "n": len(sets[s]),
                                "families": scores[s]["table"]["exact_match"].dropna().to_dict(),
                                "correct": scores[s]["correct"]} for s in VALIDATION_SETS}
        print(f"share {share}: " + ", ".join(f"{s} {scores[s]['supported']:.1%}" for s in VALIDATION_SETS), flush=True)
    return {"seed": seed, "shares": list(shares), "runs": rows, "base_model": name, "recipe": recipe.to_dict(),
            "seconds": round(time.perf_counter() - start, 1)}


def merge_measurements(parts: Sequence[dict]) -> dict:
    """One measurement from pieces of the same command run apart (other shares, or other seeds), so that two
    processes of one thread each can share 2 cores. The pieces must agree on the command, profile, base model and
    recipe; the result reads as the one command that measures it all at once (``command``), and ``measured_in``
    keeps each piece's own command, date, threads and time."""
    first = parts[0]
    what = first.get("command", "").split()[3:4]
    if any(part.get("command", "").split()[3:4] != what for part in parts[1:]):
        raise ValueError("cannot merge a mix search with a seed spread; merge pieces of one command")
    merged = merge_stamp(parts, ("profile", "base_model", "recipe", *(("seed",) if "shares" in first else ())))
    if "shares" in first:
        shares = [x for p in parts for x in p["shares"]]
        if len(set(shares)) < len(shares):
            raise ValueError(f"a share is measured in two pieces ({sorted(shares)}); merge pieces of different shares")
        runs_ = {k: v for p in parts for k, v in p["runs"].items()}
        listed = " ".join(f"{x:g}" for x in sorted(shares))
        return {**merged, "command": f"python -m {PROG} mix-search --shares {listed} --seeds {first['seed']}",
                "seed": first["seed"], "shares": sorted(shares),
                "runs": {str(x): runs_[str(x)] for x in sorted(shares)}}
    seeds = [x for p in parts for x in p["seeds"]]
    if len(set(seeds)) < len(seeds):
        raise ValueError(f"a seed is measured in two pieces ({seeds}); merge pieces of different seeds")
    return {**merged, "command": f"python -m {PROG} seed-spread --seeds {' '.join(map(str, seeds))}", "seeds": seeds,
            "methods": merge_methods(parts)}


def main(argv: list[str] | None = None) -> int:
    parser = measuring_parser(PROG, "Measure chapter 7's seed spread, or choose its training mix.",
                              ("seed-spread", "mix-search", "merge"))
    parser.add_argument("--shares", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75],
                        help="mix-search: shares of procedure records among the extra training records")
    args = parser.parse_args(argv)
    if args.what == "merge":
        return write_merged(args.parts, args.out, merge_measurements)
    if args.what == "mix-search":
        result = _mix_search(args.shares, profile_recipe(), args.seeds[0], args.progress)
    else:
        result = seed_spread(args.seeds, profile_recipe(), args.progress)
    return write_command_result(args.out, PROG, argv, result)


if __name__ == "__main__":
    raise SystemExit(main())
