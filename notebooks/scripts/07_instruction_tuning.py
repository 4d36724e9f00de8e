# ---
# jupyter:
#   jupytext:
#     formats: ipynb,scripts//py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 7 — Instruction tuning, with full fine-tuning and LoRA
#
# A pretrained GPT continues text. Ask the course model *"What is the last word? Input: nation army law"*
# and it writes more State-of-the-Union prose, or nothing. **Instruction tuning** teaches the same
# network a new habit: read an instruction, answer it, stop. It is supervised fine-tuning on
# (instruction, answer) pairs, the first step that turned GPT-3 into InstructGPT (Ouyang et al., 2022,
# *Training language models to follow instructions with human feedback*) and that FLAN showed
# generalises across tasks (Wei et al., 2022, *Finetuned Language Models Are Zero-Shot Learners*).
#
# In this chapter we
#
# 1. generate ~6,600 instructions whose answers can be **checked exactly**, in 11 task families: seven
#    the text of the question supports (copy, reorder, count, extract, add) and four that need knowledge
#    the speeches do not teach (who spoke in a year, numbers in words, capitals, plurals);
# 2. meet the Alpaca prompt format (Taori et al., 2023) and see why a small model wants a **compact**
#    one, with the answer after a space;
# 3. batch examples with a **loss mask**, so only the answer and its end-of-text are learned;
# 4. fine-tune the pretrained course model two ways: **all weights**, and **LoRA** (Hu et al., 2021,
#    *LoRA: Low-Rank Adaptation of Large Language Models*), which trains about 5% of the numbers;
# 5. score everything by exact match on held-out questions, beside three baselines: the most common
#    answer, the model before fine-tuning, and the same recipe on random weights.
#
# Everything below is computed in this run; the profile decides how much.

# %%
import copy
import random
import time

import matplotlib.pyplot as plt
import pandas as pd
import torch
from torch import nn

from gpt2_core.exercises import check_exercise
from gpt2_core.figures import lora_diagram, loss_mask_diagram
from gpt2_core.finetuning.instruction_data import (FAMILIES, KNOWLEDGE, SUPPORTED, dump_records, fresh_records,
                                                   load_instruction_data, make_instruction_data, split_records)
from gpt2_core.finetuning.instruction_eval import generate_answers, majority_answers, score_answers, summarise
from gpt2_core.finetuning.instruction_prompts import (InstructionDataset, format_alpaca, format_prompt,
                                                      instruction_collate, instruction_loader)
from gpt2_core.finetuning.loop import FinetuneConfig, finetune
from gpt2_core.finetuning.lora import LoRALinear, count_trainable, inject_lora, merge_lora
from gpt2_core.pretraining.step import lm_loss
from gpt2_core.profile import data_dir, describe, get_device, pick, profile_name, seed_everything
from gpt2_core.reference import BASE_MODEL_ENV, load_base_model

notebook_start = time.time()
print(describe())
seed_everything(123)
device = get_device()
pd.set_option("display.precision", 3)

# Every size comes from the profile: seconds in CI (tiny), minutes on a laptop CPU (default).
TRAIN_RECORDS = pick(tiny=256, default=None)  # None: every training record
TEST_EVERY = pick(tiny=20, default=1)  # score every n-th held-out record
CURVE_RECORDS = pick(tiny=24, default=220)  # held-out records scored during training, for the curves
STEPS = pick(tiny=12, default=1000)
EVAL_EVERY = pick(tiny=6, default=200)
BATCH_SIZE = 32
FULL_LR, LORA_LR = 1e-3, 3e-3
LORA_RANK, LORA_TARGETS = 16, ("att.qkv", "att.out_proj", "ff.fc", "ff.proj")
print(f"{STEPS} steps of {BATCH_SIZE} examples per run; full lr {FULL_LR}, LoRA lr {LORA_LR}, rank {LORA_RANK}")

# %% [markdown]
# ## 1. The model we start from
#
# Chapters 6 and 7 start from the **reference course model**: the chapter-5 recipe run on a GPU for
# ~20M tokens of State of the Union speeches, 4 layers, 256 wide, with its own 8,192-token tokenizer.
# (A model trained for ten CPU minutes does not transfer: it fine-tunes worse than random weights.)
# Setting the environment variable `GPT2_COURSE_BASE_MODEL=gpt2` before starting Jupyter switches this
# chapter to OpenAI's GPT-2 124M and GPT-2's tokenizer, when its weights can be downloaded (it falls
# back to the reference model, with a message, when they cannot). The model and its tokenizer always
# travel together: every end-of-text id below comes from `tokenizer.eot_token`.

# %%
base_model, tokenizer, base_name = load_base_model(device)
EOT = tokenizer.eot_token
CTX = base_model.cfg.context_length
print(f"base model: {base_name} ({base_model.num_parameters():,} parameters, context {CTX}); "
      f"switch with {BASE_MODEL_ENV}=gpt2")
print(f"end-of-text is token {EOT} of {tokenizer.n_vocab}")


def fresh_copy():
    """A new copy of the pretrained model to fine-tune (the original stays untouched)."""
    return copy.deepcopy(base_model)


# %% [markdown]
# ## 2. An instruction set we can grade
#
# Open-ended instructions ("write a poem about…") need a human or another model to judge. To measure
# progress *objectively* every instruction here has one right answer. The families come in two groups,
# reported separately, because they ask different things of a model:
#
# * **supported by the text**: the answer is in the question — the first or last word, the words
#   reversed, how many words, the numbers sorted, the year a clause from the speeches mentions, a small
#   sum. A model can learn the *procedure* from examples and apply it to new words.
# * **needing knowledge**: who gave the address of a given year, a number in words, a word in capital
#   letters, a plural. The held-out questions ask about years, numbers and words never seen in
#   fine-tuning, so only what pretraining stored can answer them. Capitals are knowledge too: `army`
#   and `ARMY` share no token, and capitals are rare in the speeches.
#
# The generator is seeded and reads only the corpus, so it rebuilds `data/instructions.json` byte for
# byte. Each record has the Alpaca fields `instruction`, `input`, `output`, plus a `family`.

# %%
# NBVAL_CHECK_OUTPUT
records = load_instruction_data()
print(len(records), "records,", len(SUPPORTED), "supported families,", len(KNOWLEDGE), "needing knowledge")
print("regenerating gives the committed file:",
      dump_records(make_instruction_data()) == (data_dir() / "instructions.json").read_text(encoding="utf-8"))

# %%
frame = pd.DataFrame(records)
frame["group"] = ["supported" if f in SUPPORTED else "knowledge" for f in frame["family"]]
frame.groupby("family", sort=False).head(1)[["group", "family", "instruction", "input", "output"]]

# %% [markdown]
# A fixed, **stratified** held-out split: every family gives an eighth of its records to the test set,
# so each family is scored on questions the model never saw. A third set tests whether it learned
# *tasks* rather than items: records from another seed, none of whose questions is in the file.
# (The small families — numbers in words, plurals, years with a clause — are used up by the file, so the
# fresh records come from the families with room for new questions.)

# %%
# NBVAL_CHECK_OUTPUT
train_all, test_all = split_records(records)
fresh_all = fresh_records(records, n=len(test_all))
print(f"train {len(train_all)}  test {len(test_all)}  fresh {len(fresh_all)}")
pd.DataFrame({"train": pd.Series([r["family"] for r in train_all]).value_counts(),
              "test": pd.Series([r["family"] for r in test_all]).value_counts(),
              "fresh": pd.Series([r["family"] for r in fresh_all]).value_counts()}).fillna(0).astype(int).T[list(FAMILIES)]

# %%
train_records = train_all[:TRAIN_RECORDS] if TRAIN_RECORDS else train_all
test_records = test_all[::TEST_EVERY]
fresh_set = fresh_all[::TEST_EVERY]
curve_records = test_records[:: max(1, len(test_records) // CURVE_RECORDS)][:CURVE_RECORDS]
print(f"using {len(train_records)} training, {len(test_records)} test, {len(fresh_set)} fresh records; "
      f"{len(curve_records)} test records scored during training")

# %% [markdown]
# ## 3. The prompt: Alpaca's format, and a compact one
#
# Stanford Alpaca wrapped every example in a fixed text: a header, then `### Instruction:`, the input
# after `### Input:` when there is one, and `### Response:`, after which the model writes. Most
# instruction sets since use it or a close cousin. Here it is, written out:

# %%
def my_format_alpaca(record: dict) -> str:
    header = ("Below is an instruction that describes a task. "
              "Write a response that appropriately completes the request.")
    text = f"{header}\n\n### Instruction:\n{record['instruction']}"
    if record.get("input"):
        text += f"\n\n### Input:\n{record['input']}"
    return text + "\n\n### Response:\n"


example = next(r for r in records if r["family"] == "last_word")
print(my_format_alpaca(example) + example["output"])
print("same as gpt2_core:", all(my_format_alpaca(r) == format_alpaca(r) for r in records[:500]))

# %% [markdown]
# For a 5-million-parameter model that saw only speeches, this format is hard in two ways. Look at the
# tokens. The markers `###`, `Instruction`, `Response` never occur in the speeches, so their tokens carry
# little meaning yet. And the answer starts a new line: the input's ` law` (with its space) and the
# answer's `law` (without one) are *different tokens*, so even copying a word means translating it.

# %%
def show_tokens(text):
    return " | ".join(repr(tokenizer.decode([t]))[1:-1] for t in tokenizer.encode_ordinary(text))


print("Alpaca :", show_tokens("### Input:\nnation army law\n\n### Response:\nlaw"))
print("compact:", show_tokens("What is the last word? Input: nation army law Answer: law"))
print(f"Alpaca prompt: {len(tokenizer.encode_ordinary(format_alpaca(example)))} tokens; "
      f"compact: {len(tokenizer.encode_ordinary(format_prompt(example)))} tokens")

# %% [markdown]
# So this course uses a **compact prompt**, `"<instruction> Input: <input> Answer:"`, and puts the
# answer after a space. `Input` and `Answer` are ordinary English words the speeches use (a few tokens
# each in this tokenizer), copying ` law` is copying one token, and a prompt of ~20 tokens instead of ~60 makes every training step three times
# cheaper. The idea is the same as Alpaca's — fixed markers that say where the task, the input and the
# answer are — sized for a small model. (With GPT-2 124M, the Alpaca format works well; exercise 5.)

# %%
def my_format_prompt(record: dict) -> str:
    text = record["instruction"]
    if record.get("input"):
        text += " Input: " + record["input"]
    return text + " Answer:"


print(my_format_prompt(example) + " " + example["output"])

# %%
# NBVAL_CHECK_OUTPUT
print("same as gpt2_core:", all(my_format_prompt(r) == format_prompt(r) for r in records))

# %% [markdown]
# ## 4. Batches, and the loss mask
#
# A training example is `prompt + " " + answer + <|endoftext|>`; `InstructionDataset` encodes each once
# and remembers how many tokens are prompt. Examples differ in length, so a batch is padded to its
# longest with end-of-text. Targets are the inputs shifted left by one token, as in pretraining, and two
# kinds of target are replaced by `-100`, the index the loss ignores:
#
# * **padding after the first end-of-text**: the model must learn to emit *one* end-of-text (that is how
#   it stops), but predicting padding is meaningless;
# * **the prompt**: the instruction is given, not to be learned; only the answer counts.
#
# Figure 1 shows it on one real example (`␣` marks a token's leading space): a target counts (green) only from the last prompt token on,
# whose target is the answer's first token, up to the end-of-text.

# %%
ds_example = InstructionDataset([example], tokenizer, CTX)
ids, prompt_len = ds_example[0]
fig = loss_mask_diagram([tokenizer.decode([t]) for t in ids], prompt_len,
                        title="Figure 1: the loss mask, only the answer and its end-of-text are learned")
plt.show()

# %% [markdown]
# Here is the mask for one example written out, on token ids small enough to read, and the package's
# `instruction_collate` on a batch of two (the second is padded).

# %%
def my_mask_targets(ids, prompt_len, eot_id):
    targets = ids[1:] + [eot_id]  # target j is the token after position j
    keep_from = max(prompt_len - 1, 0)  # the last prompt position predicts the first answer token;
    # max(..., 0): with no prompt at all, every target counts (prompt_len - 1 = -1 would slice from the end)
    return [-100] * keep_from + targets[keep_from:]


toy = [([11, 12, 13, 14, 15], 3), ([21, 22, 23], 2)]  # (token ids, prompt length)
inputs, targets = instruction_collate(toy, eot_id=0)
print("inputs\n", inputs, "\ntargets\n", targets)

# %%
# NBVAL_CHECK_OUTPUT
print("row 0 equals gpt2_core:", my_mask_targets(*toy[0], eot_id=0) == targets[0].tolist())
no_prompt = instruction_collate([([21, 22, 23], 0)], eot_id=0)[1][0].tolist()
print("with no prompt at all too:", my_mask_targets([21, 22, 23], 0, eot_id=0) == no_prompt)

# %% [markdown]
# The loss is the model's own: `GPTModel(inputs, targets=targets)` returns the mean cross-entropy over the
# targets that are not `-100` (and computes the output layer only where it is needed).
# `lm_loss(model, batch)` is exactly that, in the `loss_fn(model, batch)` shape the shared
# fine-tuning loop (`gpt2_core.finetuning.loop`, also chapter 6's) expects.

# %%
train_ds = InstructionDataset(train_records, tokenizer, CTX)
lengths = train_ds.lengths()
print(f"{len(train_ds)} training examples, {sum(lengths) / len(lengths):.1f} tokens on average, "
      f"longest {max(lengths)} (context {CTX})")
batch = instruction_collate([train_ds[i] for i in range(8)], EOT)
with torch.no_grad():
    print(f"loss on the answers of 8 examples, before fine-tuning: {lm_loss(base_model, batch):.2f}")

# %% [markdown]
# ## 5. Baselines: what does "good" mean here?
#
# Three numbers to beat, on the same held-out questions:
#
# * **most common answer**: give every question of a family the answer seen most often in its training
#   records (for counting, that is a count; for sorting, one particular list…);
# * **the base model**, prompted but not fine-tuned;
# * later, **random weights fine-tuned with the same recipe**: what fine-tuning alone can do without
#   pretraining.
#
# Answers are generated greedily with the KV cache (`gpt2_core.model.generation`), 64 prompts at a time —
# prompts of equal token length share a batch, so none needs padding — and stop at end-of-text.
# An answer is **correct** when it equals the expected output (whitespace collapsed, a final period
# dropped; case counts) and **well-formed** when it is non-empty and ended with end-of-text.

# %%
MAX_NEW = max(len(tokenizer.encode_ordinary(" " + r["output"])) for r in records) + 1
t0 = time.time()
base_answers = generate_answers(base_model, tokenizer, test_records, MAX_NEW)
print(f"{len(test_records)} answers in {time.time() - t0:.1f}s (up to {MAX_NEW} new tokens each)")
majority_table = score_answers(test_records, majority_answers(train_records, test_records))
base_table = score_answers(test_records, base_answers)
print(f"most common answer: supported families {summarise(majority_table)['supported']:.1%}")
print(f"base model        : supported families {summarise(base_table)['supported']:.1%}, "
      f"well-formed answers {summarise(base_table)['format_compliance']:.1%}")
pd.DataFrame({"question": [format_prompt(r) for r in test_records[:4]],
              "base model says": [a.text for a in base_answers[:4]]})

# %% [markdown]
# ## 6. Full fine-tuning
#
# `finetune` (from `gpt2_core.finetuning.loop`) runs AdamW over every parameter that requires a gradient, with a
# short linear **warmup** and then a **cosine** decay of the learning rate (warmup lets Adam's running
# averages settle before large steps; the decay lets the weights settle at the end). Every `EVAL_EVERY`
# steps it calls our `evaluate`, which answers a fixed slice of the test questions, so we can watch exact
# match rise. The recipe was chosen by measurement (section 8).

# %%
def curve_eval(model):
    return summarise(score_answers(curve_records, generate_answers(model, tokenizer, curve_records, MAX_NEW)))


def run(model, lr, desc, weight_decay=0.1):
    seed_everything(123)
    loader = instruction_loader(train_ds, BATCH_SIZE, seed=123, device=device)
    config = FinetuneConfig(steps=STEPS, lr=lr, warmup_steps=max(1, STEPS // 20), weight_decay=weight_decay,
                            eval_every=EVAL_EVERY, desc=desc)
    history = finetune(model, loader, lm_loss, config, evaluate=curve_eval)
    print(f"{desc}: {STEPS} steps in {history.seconds:.0f}s, final loss {history.losses[-1]:.3f}, "
          f"curve slice {history.evals[-1]['supported']:.1%} on supported families")
    return history


full_model = fresh_copy()
full_history = run(full_model, FULL_LR, "full fine-tuning")

# %% [markdown]
# ## 7. LoRA: train a low-rank update instead
#
# Fine-tuning all weights needs optimizer state for every one of them and a full copy of the model per
# task. LoRA (Hu et al., 2021) freezes the pretrained weight $W$ (out × in) of a linear layer and learns
# a low-rank change to it:
#
# $$ y = xW^\top + b + \tfrac{\alpha}{r}\, x A B, \qquad A \in \mathbb{R}^{\text{in}\times r},\;
#    B \in \mathbb{R}^{r\times \text{out}}. $$
#
# $A$ starts random and $B$ starts at **zero**, so the adapted layer starts out exactly equal to the
# pretrained one; only $r(\text{in}+\text{out})$ numbers are trained instead of
# $\text{in}\cdot\text{out}$. Figure 2 draws the shapes to scale for the attention's `qkv` layer of
# our model; the scale $\alpha/r$ keeps the size of the update roughly independent of the rank.

# %%
d = base_model.cfg.emb_dim
fig = lora_diagram(d, 3 * d, LORA_RANK, title=f"Figure 2: LoRA on the qkv layer, x Wᵀ + (alpha / r) x A B, r = {LORA_RANK}")
plt.show()

# %% [markdown]
# Here is a whole LoRA layer, checked against the package's `LoRALinear`:

# %%
class MyLoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base.requires_grad_(False)  # the pretrained weight stays as it is
        self.A = nn.Parameter(torch.randn(base.in_features, rank) / rank**0.5)
        self.B = nn.Parameter(torch.zeros(rank, base.out_features))
        self.scaling = alpha / rank

    def forward(self, x):
        return self.base(x) + (x @ self.A @ self.B) * self.scaling


torch.manual_seed(0)
layer = nn.Linear(8, 6)
mine = MyLoRALinear(layer, rank=2, alpha=4)
xs = torch.randn(3, 8)
print("starts equal to the base layer:", torch.equal(mine(xs), layer(xs)))
with torch.no_grad():
    mine.B.normal_()  # pretend training moved B
theirs = LoRALinear(layer, rank=2, alpha=4)
with torch.no_grad():
    theirs.A.copy_(mine.A)
    theirs.B.copy_(mine.B)
print("same as gpt2_core's LoRALinear:", torch.allclose(mine(xs), theirs(xs), atol=1e-6))

# %% [markdown]
# `inject_lora` wraps the chosen linear layers of every block and freezes everything else —
# embeddings, layer norms and the (tied) output layer included. With the compact prompt the frozen
# embeddings are not a problem: every marker is made of tokens the model already knows. (With Alpaca's `###`
# markers, letting their embedding rows train alongside LoRA would be the fix; we measured the cheaper
# route of a prompt the model can already read.)

# %%
lora_model = fresh_copy()
before = count_trainable(lora_model)
after = inject_lora(lora_model, rank=LORA_RANK, alpha=2 * LORA_RANK, targets=LORA_TARGETS)
print(f"trainable: full fine-tuning {before:,}; LoRA r={LORA_RANK} on {', '.join(LORA_TARGETS)}: "
      f"{after:,} ({after / before:.1%})")
probe = torch.tensor([tokenizer.encode_ordinary(format_prompt(example))], device=device)
with torch.no_grad():
    print("LoRA model equals the base model before training:",
          torch.allclose(lora_model(probe), base_model(probe), atol=1e-5))

# %% [markdown]
# LoRA moves few numbers, and each moves the output less, so it wants a larger learning rate than full
# fine-tuning. The low-rank matrices are not decayed (weight decay would pull the update towards zero,
# i.e. back to the base model).

# %%
lora_history = run(lora_model, LORA_LR, "LoRA", weight_decay=0.0)

# %% [markdown]
# After training, $W' = W + \frac{\alpha}{r}(AB)^\top$ is an ordinary weight matrix: `merge_lora` folds
# every adapter in and puts plain `nn.Linear` layers back, so the merged model is a normal `GPTModel`,
# with no extra cost when it answers, and the same outputs.

# %%
with torch.no_grad():
    lora_logits = lora_model(probe)
merge_lora(lora_model)
with torch.no_grad():
    merged_logits = lora_model(probe)
print("LoRA layers left after merging:", sum(isinstance(m, LoRALinear) for m in lora_model.modules()))
print("same outputs before and after merging:", torch.allclose(merged_logits, lora_logits, atol=1e-4))

# %% [markdown]
# ## 8. How the recipe was chosen
#
# Measured with this notebook's code on the reference model (one CPU thread while another job used the
# second core, so the seconds per step are pessimistic; exact match on every other held-out question,
# mean over the seven supported families):
#
# | run (600 steps, batch 32, warmup + cosine) | trainable | supported | knowledge | format | s/step |
# | --- | ---: | ---: | ---: | ---: | ---: |
# | full fine-tuning, lr 1e-3 | 5,289,472 | **75.5%** | 9.4% | 100% | 0.27 |
# | LoRA r=16, qkv + out_proj + fc + proj, lr 3e-3 | 262,144 | **65.9%** | 17.7% | 99.8% | 0.21 |
# | LoRA r=16, attention only (qkv + out_proj), lr 3e-3 | 98,304 | 52.5% | 3.1% | 100% | 0.18 |
# | LoRA r=4, qkv + out_proj + fc + proj, lr 3e-3 | 65,536 | 44.6% | 3.1% | 99.8% | 0.26 |
# | LoRA r=16, all four, lr 1e-2 | 262,144 | 26.0% | 0.0% | 100% | 0.23 |
# | random init, full fine-tuning, lr 1e-3 | 5,289,472 | 14.5% | 0.0% | 98.5% | 0.24 |
#
# So: full fine-tuning at lr 1e-3; LoRA on all four linear layers of every block (the feed-forward
# layers matter: attention-only LoRA loses 13 points), rank 16 (rank 4 loses 21 points), at lr 3e-3 (1e-2 is too high: training
# ends in a much worse solution). The notebook trains each run for 1,000 steps, longer than these
# measurements, which helps LoRA most.
#
# The third baseline: **random weights, same recipe** (same steps, learning rate and data as full
# fine-tuning). Whatever the pretrained model scores above it is what pretraining contributed.

# %%
random_model = fresh_copy()
random_model.reset_parameters()
random_history = run(random_model, FULL_LR, "random init, same recipe")

# %% [markdown]
# ## 9. Scores on the held-out questions
#
# Every model answers every test question; the table gives exact match per family.

# %%
t0 = time.time()
answers = {"full fine-tuning": generate_answers(full_model, tokenizer, test_records, MAX_NEW),
           "LoRA": generate_answers(lora_model, tokenizer, test_records, MAX_NEW),
           "random init": generate_answers(random_model, tokenizer, test_records, MAX_NEW)}
print(f"{3 * len(test_records)} answers in {time.time() - t0:.1f}s")
tables = {"most common answer": majority_table, "base model": base_table,
          **{name: score_answers(test_records, a) for name, a in answers.items()}}
scores = pd.DataFrame({name: t["exact_match"] for name, t in tables.items()})
scores.insert(0, "group", base_table["group"])
scores.insert(1, "n", base_table["n"])
summary = pd.DataFrame({name: summarise(t) for name, t in tables.items()}).T
(100 * summary).round(1).rename(columns=lambda c: f"{c} (%)")

# %%
(100 * scores.set_index(["group", "n"], append=True)).round(1)

# %%
fig, ax = plt.subplots(figsize=(11, 4))
scores.drop(columns=["group", "n"]).plot.bar(ax=ax, width=0.82)
ax.axvline(len([f for f in scores.index if f in SUPPORTED]) - 0.5, color="black", linestyle="--", linewidth=1)
ax.set_ylabel("exact match on held-out questions")
ax.set_xlabel("task family (left of the dashed line: supported by the text; right: needs knowledge)")
ax.set_ylim(0, 1.05)
ax.set_title(f"Figure 3: exact match per family ({len(test_records)} held-out questions)")
ax.legend(loc="upper right", ncols=5, fontsize=8)
plt.xticks(rotation=30, ha="right")
plt.tight_layout()
plt.show()

# %% [markdown]
# And how exact match grew during training, on the fixed slice of test questions scored every
# `EVAL_EVERY` steps, beside the training loss:

# %%
fig, (ax_em, ax_loss) = plt.subplots(1, 2, figsize=(11, 3.6))
runs = {"full fine-tuning": full_history, "LoRA": lora_history, "random init": random_history}
for name, h in runs.items():
    ax_em.plot(h.eval_steps, [e["supported"] for e in h.evals], marker="o", label=name)
    smooth = pd.Series(h.losses).rolling(25, min_periods=1).mean()
    ax_loss.plot(h.steps, smooth, label=name)
ax_em.set_xlabel("training step")
ax_em.set_ylabel("exact match, supported families")
ax_em.set_ylim(0, 1.02)
ax_em.set_title("Exact match against steps")
ax_em.legend()
ax_loss.set_xlabel("training step")
ax_loss.set_ylabel("loss on answer tokens (mean of 25 steps)")
ax_loss.set_yscale("log")
ax_loss.set_title("Training loss")
ax_loss.legend()
fig.suptitle("Figure 4: the three runs of this chapter, step by step")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 10. New items, same tasks
#
# Does the model follow the *instructions*, or did it memorise the training items? The fresh records
# (another seed; none of their questions is in the instruction file) are scored beside the test
# questions of the same families.

# %%
chapter_name = "full fine-tuning" if summary.loc["full fine-tuning", "supported"] >= summary.loc["LoRA", "supported"] \
    else "LoRA"
chapter_model = full_model if chapter_name == "full fine-tuning" else lora_model
fresh_table = score_answers(fresh_set, generate_answers(chapter_model, tokenizer, fresh_set, MAX_NEW))
min_fresh = pick(tiny=1, default=20)  # families with at least this many fresh records are compared
fresh_families = [f for f in fresh_table.index if f in SUPPORTED and fresh_table.loc[f, "n"] >= min_fresh]
fresh_score = float(fresh_table.loc[fresh_families, "exact_match"].mean())
test_same = float(tables[chapter_name].loc[fresh_families, "exact_match"].mean())
print(f"chapter model: {chapter_name}")
print(f"supported families with fresh records: {', '.join(fresh_families)}")
print(f"exact match: fresh records {fresh_score:.1%}, test records of the same families {test_same:.1%}")

# %% [markdown]
# A few answers of the chapter's model, one per family:

# %%
shown = [next(i for i, r in enumerate(test_records) if r["family"] == f) for f in FAMILIES
         if any(r["family"] == f for r in test_records)]
pd.DataFrame({"family": [test_records[i]["family"] for i in shown],
              "question": [format_prompt(test_records[i]) for i in shown],
              "expected": [test_records[i]["output"] for i in shown],
              chapter_name: [answers[chapter_name][i].text for i in shown]})

# %% [markdown]
# The chapter's aims, checked against this run's numbers:

# %%
best, lora_s = summary.loc[chapter_name], summary.loc["LoRA", "supported"]
aims = [("exact match on supported families >= 75%", best["supported"] >= 0.75),
        ("format compliance >= 95%", best["format_compliance"] >= 0.95),
        ("LoRA within 10 points of full fine-tuning",
         summary.loc["full fine-tuning", "supported"] - lora_s <= 0.10),
        ("fresh records within 5 points of the test set", abs(fresh_score - test_same) <= 0.05),
        ("at least twice the random-init score", best["supported"] >= 2 * summary.loc["random init", "supported"])]
for aim, met in aims:
    print(f"{'met   ' if met else 'missed'}  {aim}")

# %% [markdown]
# Reading the results. On the families the text supports, the pretrained model learns procedures:
# copying the first or last word, reversing and counting come out far above the most common answer
# and above the same recipe on random weights — pretraining taught the network what words are and how
# to attend to them. Sorting and small sums are the hardest of the group: they must be computed, not
# copied, and a sum of two numbers never seen together in training cannot be looked up. The knowledge
# families stay low for every model: no amount of format learning tells a small model who spoke in
# 1837 or how to spell a word in capitals it has rarely seen. LoRA, training a twentieth of the
# numbers, gets most of the way to full fine-tuning for the same steps; its gap is largest on the
# computing families (sorting, sums), which need the most change inside the network. Fresh records
# scoring like the test set means the model learned tasks, not items.

# %%
from gpt2_core.results import write_results  # noqa: E402

ch07 = {
    "seconds": round(time.time() - notebook_start, 1),
    "chapter_model": chapter_name,
    "base_model": base_name,
    "exact_match_supported": summary.loc[chapter_name, "supported"],
    "exact_match_knowledge": summary.loc[chapter_name, "knowledge"],
    "exact_match_overall": summary.loc[chapter_name, "overall"],
    "format_compliance": summary.loc[chapter_name, "format_compliance"],
    "full_exact_match_supported": summary.loc["full fine-tuning", "supported"],
    "lora_exact_match_supported": summary.loc["LoRA", "supported"],
    "fresh_seed_exact_match_supported": fresh_score,
    "majority_baseline_supported": summary.loc["most common answer", "supported"],
    "base_model_exact_match_supported": summary.loc["base model", "supported"],
    "random_init_exact_match_supported": summary.loc["random init", "supported"],
}
# a group with no question in a tiny run has no score (NaN): write None for it
ch07 = {k: ((round(float(v), 4) if v == v else None) if isinstance(v, float) else v) for k, v in ch07.items()}
print(write_results(7, ch07).relative_to(data_dir().parent))
print(f"profile {profile_name()}: notebook ran for {ch07['seconds'] / 60:.1f} min")

# %% [markdown]
# 1. **A prompt format of your own.** Section 3 set Alpaca's format beside the compact one. Design a third:
#    write `my_prompt_format(record)`. The checker asks only what the chapter's pipeline needs: the whole
#    instruction and input appear word for word; two different records never give the same prompt (where
#    does the instruction end and the input begin?); every prompt ends with the same cue, and not with
#    whitespace (the answer is appended as `" " + output`); no `<|endoftext|>`; and the longest question
#    still fits the model's 128 tokens with its answer. On success it prints how many tokens your prompts
#    take beside the two formats of section 3.
#
#    **Predict first:** will your format score above or below the compact one after the same LoRA run, and
#    why? Then measure (a few minutes at the default profile):
#
#    ```python
#    own_ds = InstructionDataset(train_records, tokenizer, CTX, prompt_format=my_prompt_format)
#    own_model = fresh_copy()
#    inject_lora(own_model, rank=LORA_RANK, alpha=2 * LORA_RANK, targets=LORA_TARGETS)
#    finetune(own_model, instruction_loader(own_ds, BATCH_SIZE, seed=123, device=device), lm_loss,
#             FinetuneConfig(steps=STEPS, lr=LORA_LR, warmup_steps=max(1, STEPS // 20), weight_decay=0.0,
#                            desc="LoRA, my format"))
#    own_answers = generate_answers(own_model, tokenizer, test_records, MAX_NEW, prompt_format=my_prompt_format)
#    summarise(score_answers(test_records, own_answers)), summary.loc["LoRA"]
#    ```

# %%
def my_prompt_format(record: dict) -> str:
    raise NotImplementedError  # your code here


_ = check_exercise("ch07.own_prompt_format", my_prompt_format)

# %% [markdown]
# 2. **Held-out words that leak.** The test questions of section 2 are questions the model never saw, but
#    are their *words* new? A word can reach the model through any part of a training record: its
#    instruction, its input or its answer, in any letter case. Write `my_leaked_words(train_records,
#    held_out)`: the words of `held_out` (given in lower case) that occur in some training record as whole
#    words. A word is a run of letters, so `began.` holds `began`, `forty-two` holds `forty` and `two`, and
#    `warrant` does not hold `war`.
#
#    **Predict first:** of the distinct words in the inputs of the test questions, what share also occurs in
#    a training record? Then measure:
#
#    ```python
#    import re
#    held_out = {w for r in test_records for w in re.findall(r"[a-z]+", r["input"].lower())}
#    leaked = my_leaked_words(train_records, held_out)
#    print(f"{len(leaked)} of {len(held_out)} words of the test inputs occur in training records")
#    ```
#
#    What does the answer say about what this chapter's test set measures: following an instruction on new
#    words, or on words it was trained on? How would you build a test that asks the first?

# %%
def my_leaked_words(train_records: list[dict], held_out: set[str]) -> set[str]:
    raise NotImplementedError  # your code here


_ = check_exercise("ch07.leaked_words", my_leaked_words)

# %% [markdown]
# 3. **A new task family.** Write the generator of a family "What is the second word?": given a
#    `random.Random`, return a record (`instruction`, `input`, `output`) with 3–5 words drawn from
#    `gpt2_core.finetuning.instruction_data.corpus_words()` and the second one as the answer. The checker asks
#    that the same seed gives the same record, that inputs vary in words and length, and that the answer
#    is right. Then think: is this family *supported by the text*? Add 500 of its records to the
#    training set and score it — is it closer to `first_word` or to `last_word`, and why?

# %%
def exercise_second_word(rng: random.Random) -> dict:
    raise NotImplementedError  # your code here


_ = check_exercise("ch07.second_word", exercise_second_word)

# %% [markdown]
# 4. **Count LoRA's parameters.** For a `GPTConfig` and a rank, how many trainable numbers does
#    `inject_lora` leave with its default targets (qkv, out_proj, fc and proj in every block)? Check your
#    formula against the count printed in section 7.

# %%
def exercise_lora_count(cfg, rank: int) -> int:
    raise NotImplementedError  # your code here


_ = check_exercise("ch07.lora_count", exercise_lora_count)

# %% [markdown]
# 5. *(open)* Train with `format_alpaca` instead of `format_prompt` (pass `prompt_format=format_alpaca`
#    to `InstructionDataset` and `generate_answers`). How much lower is exact match, and how much slower
#    is each step? Which of the two changes — the markers, or the space before the answer — matters more?
