"""Chapter 6's classifier runs as functions, and the command that measures what one notebook run cannot.

One run of the chapter fine-tunes a few models once. Whether a gap between two of them is real needs
several seeds, and choosing the recipe needs many runs; both take longer than a notebook should. So
they are measured here, by a command that writes JSON the notebook reads and labels with its date:

    python -m gpt2_core.course.spam_runs learning-curve --out results/ch06-learning-curve.json
    python -m gpt2_core.course.spam_runs recipe-search --out results/ch06-recipe-search.json

A long curve can be measured in pieces (label counts run at different times) and joined into one file:

    python -m gpt2_core.course.spam_runs merge-curves --parts a.json b.json --out results/ch06-learning-curve.json

The notebook's own runs call the same functions (:func:`start_model`, :func:`domain_lm_step`,
:func:`fine_tune`), so its single-seed numbers are one draw of the distributions measured here.

A seed changes the labelled subset (for fewer labels than all), the classification head's
initialisation and the order of the batches. The e-mail language-model step is run once (seed 123)
and shared: it reads the unlabelled training e-mails, which do not change with the labels.
"""

from __future__ import annotations

import copy
import dataclasses
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from ..finetuning import classification as clf
from ..finetuning import spam
from ..finetuning.baselines import NaiveBayes
from ..finetuning.classification_data import WindowedTexts, lm_loader
from ..finetuning.loop import FinetuneConfig, FinetuneHistory, finetune
from ..model.gpt import GPTModel
from ..pretraining.step import lm_loss
from ..profile import get_device, pick, seed_everything
from .reference import load_base_model
from .results import measuring_parser, read_measurement, write_command_result, write_measurement

PROG = "gpt2_core.course.spam_runs"  # run as `python -m PROG`
METHODS = ("pretrained + e-mail LM step", "pretrained only", "random init", "Naive Bayes")


@dataclass(frozen=True)
class SpamRecipe:
    """How the chapter fine-tunes its classifier. Steps: ``window_epochs`` passes over the training windows,
    at least ``min_steps`` (so that a handful of labelled e-mails is still seen several times)."""

    window: int = 128  # tokens per window: the reference model's context
    batch_size: int = 16
    window_epochs: float = 0.5
    min_steps: int = 40
    lr: float = 3e-4
    warmup: float = 0.1
    pooling: str = "mean"  # within a window: the mean over its tokens' logits
    window_pooling: str = "mean"  # across an e-mail's windows
    train_on: str = "all windows"  # or "first window": the e-mail cut to its first window
    trainable_blocks: int | None = None  # None: every block trains
    train_embeddings: bool = True
    domain_lm_steps: int = 150
    domain_lr: float = 5e-4

    def steps(self, n_windows: int) -> int:
        return max(self.min_steps, round(self.window_epochs * n_windows / self.batch_size))


def _tiny_recipe() -> SpamRecipe:
    """The recipe shrunk for the ``tiny`` profile (CI): the same code, seconds instead of minutes."""
    return SpamRecipe(window=64, min_steps=4, window_epochs=0.05, lr=1e-3, domain_lm_steps=2, domain_lr=1e-3)


def profile_recipe() -> SpamRecipe:
    return pick(tiny=_tiny_recipe(), default=SpamRecipe())


def domain_lm_step(model: GPTModel, tokenizer: Any, texts: Sequence[str], recipe: SpamRecipe, progress: bool = True
                   ) -> FinetuneHistory:
    """ULMFiT's middle step: next-token training on the (unlabelled) training e-mails, in place."""
    loader = lm_loader(list(texts), tokenizer, model.cfg.context_length, batch_size=32)
    config = FinetuneConfig(steps=recipe.domain_lm_steps, lr=recipe.domain_lr,
                            warmup_steps=max(1, recipe.domain_lm_steps // 10), desc="language model on e-mails",
                            progress=progress)
    return finetune(model, loader, lm_loss, config)


def start_model(cfg: Any, state: dict | None, recipe: SpamRecipe, seed: int, device: torch.device | str) -> GPTModel:
    """A classifier ready to fine-tune: ``state`` loaded (``None``: random weights, seeded), a fresh head
    (seeded), frozen as the recipe says."""
    seed_everything(seed)
    model = GPTModel(cfg).to(device)
    if state is not None:
        model.load_state_dict(state)
    clf.add_classification_head(model, 2, recipe.pooling)
    clf.freeze_for_finetuning(model, recipe.trainable_blocks, recipe.train_embeddings)
    return model


def _training_windows(train: WindowedTexts, recipe: SpamRecipe) -> WindowedTexts:
    return train if recipe.train_on == "all windows" else train.first_windows()


def fine_tune(model: GPTModel, train: WindowedTexts, recipe: SpamRecipe, seed: int,
              metrics_fn: Any = None, eval_every: int = 0, desc: str = "fine-tuning", progress: bool = True
              ) -> FinetuneHistory:
    """Fine-tune the classifier on ``train``'s windows (every one, with its e-mail's label), seeded."""
    windows = _training_windows(train, recipe)
    steps = recipe.steps(len(windows))
    config = FinetuneConfig(steps=steps, lr=recipe.lr, warmup_steps=round(recipe.warmup * steps), seed=seed,
                            eval_every=eval_every, desc=desc, progress=progress)
    return finetune(model, windows.loader(recipe.batch_size, shuffle=True, seed=seed), clf.classification_loss,
                    config, metrics_fn)


def scores(result: dict, table: pd.DataFrame) -> dict:
    """Accuracy overall and on hard ham (the legitimate mail that looks like spam) of one evaluation."""
    by_source = spam.accuracy_by_source(table, result["predictions"])["accuracy"]
    return {"accuracy": result["accuracy"], "hard_ham": float(by_source.get("hard ham", float("nan")))}


def _naive_bayes_scores(train: WindowedTexts, test: WindowedTexts, test_df: pd.DataFrame, vocab_size: int) -> dict:
    """Naive Bayes reading every token of each e-mail (its bag of words is the whole e-mail)."""
    nb = NaiveBayes(vocab_size).fit(train.ids, train.labels)
    predictions = nb.predict(test.ids)
    return scores({"accuracy": sum(p == y for p, y in zip(predictions, test.labels, strict=True)) / len(predictions),
                   "predictions": predictions}, test_df)


@dataclass
class SpamData:
    """The chapter's split, read whole, encoded once."""

    train_df: pd.DataFrame
    val_df: pd.DataFrame
    test_df: pd.DataFrame
    train: WindowedTexts
    val: WindowedTexts
    test: WindowedTexts

    @classmethod
    def load(cls, tokenizer: Any, window: int, per_class: int | None = None) -> SpamData:
        tables = spam.spam_splits(per_class=per_class, read_chars=spam.READ_CHARS)
        return cls(*tables, *(WindowedTexts(t.text, t.label, tokenizer, window) for t in tables))

    def labelled(self, n: int, seed: int) -> tuple[WindowedTexts, pd.DataFrame]:
        """A stratified sample of ``n`` labelled training e-mails (all of them when ``n`` is their number)."""
        if n >= self.train.n_texts:
            return self.train, self.train_df
        rows = spam.stratified_sample(self.train_df.assign(row=range(len(self.train_df))), n, seed)["row"].tolist()
        return self.train.subset(rows), self.train_df.iloc[rows]


def _setup(recipe: SpamRecipe, per_class: int | None, progress: bool
           ) -> tuple[SpamData, Any, dict[str, dict | None], Any, str]:
    """The data, the model's config, the three starting states (after the LM step, before it, random),
    the tokenizer and the base model's name."""
    base, tokenizer, name = load_base_model(get_device())
    data = SpamData.load(tokenizer, recipe.window, per_class)
    pretrained = copy.deepcopy(base.state_dict())
    domain_lm_step(base, tokenizer, data.train_df.text, recipe, progress)
    states = {METHODS[0]: copy.deepcopy(base.state_dict()), METHODS[1]: pretrained, METHODS[2]: None}
    return data, base.cfg, states, tokenizer, name


def learning_curve(labels: Sequence[int], seeds: Sequence[int], recipe: SpamRecipe, per_class: int | None = None,
                   progress: bool = False) -> dict:
    """Test accuracy (and hard-ham accuracy) of every method at every label count and seed."""
    device, start = get_device(), time.perf_counter()
    data, cfg, states, tokenizer, name = _setup(recipe, per_class, progress)
    labels = [min(n, data.train.n_texts) for n in labels]
    runs: dict[str, dict[str, list[list[float]]]] = {m: {"accuracy": [], "hard_ham": []} for m in METHODS}
    for n in labels:
        per_seed: dict[str, list[dict]] = {m: [] for m in METHODS}
        for seed in seeds:
            train, _ = data.labelled(n, seed)
            per_seed[METHODS[3]].append(_naive_bayes_scores(train, data.test, data.test_df, tokenizer.n_vocab))
            for method, state in states.items():
                model = start_model(cfg, state, recipe, seed, device)
                fine_tune(model, train, recipe, seed, desc=f"{method}, {n} labels, seed {seed}", progress=progress)
                per_seed[method].append(scores(clf.classifier_metrics(model, data.test, recipe.window_pooling),
                                               data.test_df))
            print(f"{n:>5} labels, seed {seed}: " + ", ".join(f"{m} {per_seed[m][-1]['accuracy']:.1%}"
                                                              for m in METHODS), flush=True)
        for method in METHODS:
            for key in ("accuracy", "hard_ham"):
                runs[method][key].append([s[key] for s in per_seed[method]])
    methods = {m: {**r, "mean": [statistics.fmean(a) for a in r["accuracy"]],
                   "std": [statistics.stdev(a) if len(a) > 1 else 0.0 for a in r["accuracy"]]}
               for m, r in runs.items()}
    return {"labels": labels, "seeds": list(seeds), "methods": methods, "base_model": name,
            "recipe": dataclasses.asdict(recipe), "test_emails": data.test.n_texts,
            "seconds": round(time.perf_counter() - start, 1)}


def merge_curves(parts: Sequence[dict]) -> dict:
    """One learning curve from pieces measured apart: the same seeds, recipe, base model, profile and test set,
    different label counts. The result reads as the one command that would measure it all at once
    (``command``), and ``measured_in`` keeps each piece's own command, date, threads and time."""
    if len(parts) < 2:
        raise ValueError(f"merge-curves needs at least 2 learning curves, got {len(parts)}")
    first = parts[0]
    for part in parts[1:]:
        for key in ("seeds", "recipe", "base_model", "test_emails", "profile"):
            if part.get(key) != first.get(key):
                raise ValueError(f"cannot merge learning curves measured with different {key}: "
                                 f"{first.get(key)!r} and {part.get(key)!r}; re-run the piece with the same {key}")
    where: dict[int, tuple[dict, int]] = {}
    for part in parts:
        for i, n in enumerate(part["labels"]):
            if n in where:
                raise ValueError(f"{n} labels are measured in two of the pieces; merge pieces with different label "
                                 "counts")
            where[n] = (part, i)
    labels = sorted(where)
    methods = {m: {key: [where[n][0]["methods"][m][key][where[n][1]] for n in labels]
                   for key in ("accuracy", "hard_ham", "mean", "std")} for m in METHODS}
    return {"measured": max(p["measured"] for p in parts), "profile": first["profile"],
            "command": (f"python -m {PROG} learning-curve --labels {' '.join(map(str, labels))}"
                        f" --seeds {' '.join(map(str, first['seeds']))}"),
            "torch_threads": max(p["torch_threads"] for p in parts),
            "measured_in": [f"{p['command']} ({p['measured']}, torch threads: {p['torch_threads']}, "
                            f"{p['seconds']:.0f} s)" for p in parts],
            "labels": labels, "seeds": first["seeds"], "methods": methods, "base_model": first["base_model"],
            "recipe": first["recipe"], "test_emails": first["test_emails"],
            "seconds": round(sum(p["seconds"] for p in parts), 1)}


# One change at a time from the recipe: (the change, whether to start without the e-mail LM step, and the rows
# it gives: a name and how the windows' logits are pooled; two poolings of one model cost one fine-tune).
VARIANTS: tuple[tuple[dict, bool, tuple[tuple[str, str], ...]], ...] = (
    ({}, False, (("the recipe", "mean"), ("windows pooled by max instead of mean", "max"))),
    ({}, True, (("without the e-mail LM step", "mean"),)),
    ({"train_on": "first window", "window_pooling": "first"}, False,
     (("trained and read on the first window only (the e-mail cut to its first window)", "first"),)),
    ({"pooling": "last"}, False, (("last-token pooling within a window instead of the mean", "mean"),)),
    ({"train_embeddings": False}, False, (("token and position embeddings frozen", "mean"),)),
    ({"trainable_blocks": 2, "train_embeddings": False}, False,
     (("only the top 2 blocks train (embeddings frozen)", "mean"),)),
)


def _recipe_search(n_labels: int, seeds: Sequence[int], recipe: SpamRecipe, per_class: int | None = None,
                  progress: bool = False) -> dict:
    """Validation and test accuracy of each :data:`VARIANTS` change, on ``n_labels`` labelled e-mails."""
    device, start = get_device(), time.perf_counter()
    data, cfg, states, _, name = _setup(recipe, per_class, progress)
    rows = []
    for change, no_lm_step, readings in VARIANTS:
        variant = dataclasses.replace(recipe, **change)
        state = states[METHODS[1] if no_lm_step else METHODS[0]]
        found = {label: {"validation": [], "test": [], "test_hard_ham": []} for label, _ in readings}
        val, test = (data.val, data.test) if variant.train_on == "all windows" else \
            (data.val.first_windows(), data.test.first_windows())
        for seed in seeds:
            train, _ = data.labelled(n_labels, seed)
            model = start_model(cfg, state, variant, seed, device)
            fine_tune(model, train, variant, seed, desc=readings[0][0], progress=progress)
            val_logits, test_logits = clf.window_logits(model, val), clf.window_logits(model, test)
            for label, how in readings:
                val_scores = clf.classifier_metrics(model, val, how, logits=val_logits)
                found[label]["validation"].append(val_scores["accuracy"])
                test_scores = scores(clf.classifier_metrics(model, test, how, logits=test_logits), data.test_df)
                found[label]["test"].append(test_scores["accuracy"])
                found[label]["test_hard_ham"].append(test_scores["hard_ham"])
        for label, how in readings:
            rows.append({"variant": label, "change": change, "window_pooling": how, "without_lm_step": no_lm_step,
                         **found[label]})
            print(f"{label}: validation {statistics.fmean(found[label]['validation']):.1%}, "
                  f"test {statistics.fmean(found[label]['test']):.1%}", flush=True)
    return {"labels": min(n_labels, data.train.n_texts), "seeds": list(seeds), "rows": rows, "base_model": name,
            "recipe": dataclasses.asdict(recipe), "seconds": round(time.perf_counter() - start, 1),
            "validation_emails": data.val.n_texts, "test_emails": data.test.n_texts}  # each score's sampling error


def main(argv: list[str] | None = None) -> int:
    parser = measuring_parser(PROG, __doc__.split("\n")[0], ("learning-curve", "recipe-search", "merge-curves"))
    parser.add_argument("--labels", type=int, nargs="+", default=[16, 64, 256, 10**6],
                        help="label counts of the learning curve (more than there are: all), or the one of the search")
    parser.add_argument("--per-class", type=int, default=None, help="e-mails per class (default: all)")
    args = parser.parse_args(argv)
    if args.what == "merge-curves":
        if len(args.parts) < 2:
            parser.error(f"merge-curves needs --parts with at least 2 learning-curve files, got {len(args.parts)}")
        merged = merge_curves([read_measurement(p) for p in args.parts])
        write_measurement(args.out, PROG, argv, merged)  # merged's stamps win
        print(f"wrote {args.out}: {merged['command']}")
        return 0
    recipe = profile_recipe()
    if args.what == "learning-curve":
        result = learning_curve(args.labels, args.seeds, recipe, args.per_class, args.progress)
    else:
        result = _recipe_search(args.labels[0], args.seeds, recipe, args.per_class, args.progress)
    return write_command_result(args.out, PROG, argv, result)


if __name__ == "__main__":
    raise SystemExit(main())
