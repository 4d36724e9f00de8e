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
#     display_name: Python 3 (ipykernel)
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
# 1. generate instructions whose answers can be **checked exactly**, in 11 task families: six the text
#    of the question supports (copy, reorder, count, extract) and five that need knowledge the question
#    does not give (a sum, who spoke in a year, numbers in words, capitals, plurals); and hold out a fifth
#    of the words, numbers and years from every training record, so that we can ask whether the model
#    learned **procedures** that work on words it never saw, or answers for the words it did;
# 2. teach the procedure with **records no model can memorise** (made-up words, random letters, every
#    word-like token of the tokenizer), choose how many on a validation split, and test on **new words**
#    that no word list of the course contains;
# 3. meet the Alpaca prompt format (Taori et al., 2023) and see why a small model wants a **compact**
#    one, with the answer after a space;
# 4. batch examples with a **loss mask**, so only the answer and its end-of-text are learned;
# 5. fine-tune the pretrained course model two ways: **all weights but the token embedding**, and
#    **LoRA** (Hu et al., 2021, *LoRA: Low-Rank Adaptation of Large Language Models*), which trains a few
#    percent of the numbers;
# 6. score everything by exact match on held-out questions, held-out words, fresh records and new words, beside
#    three baselines (the most common answer, the model before fine-tuning, and the same recipe on random
#    weights) and beside the spread between seeds.
#
# Everything below is computed in this run, or read from a measuring command that the cell names.

# %%
import copy
import random
import re
import time
from collections import Counter

import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import Markdown, display
from torch import nn

from gpt2_core.exercises import check_exercise
from gpt2_core.figures import lora_diagram, loss_mask_diagram, plot_family_scores
from gpt2_core.course import instruction_runs as runs
from gpt2_core.finetuning.compare import compare, mcnemar_counts
from gpt2_core.finetuning.instruction_data import (FAMILIES, INSTRUCTIONS_SHA256, SUPPORTED, dump_records,
                                                   make_instruction_data, vocabulary_split, word_list)
from gpt2_core.finetuning.instruction_eval import (answer_question, generate_answers, is_correct, majority_answers,
                                                   score_answers, summarise)
from gpt2_core.finetuning.instruction_sets import PROCEDURE_FAMILIES, new_words, unseen_words
from gpt2_core.finetuning.instruction_prompts import (InstructionDataset, format_alpaca, format_prompt,
                                                      instruction_collate, instruction_loader)  # noqa: F401 (exercises)
from gpt2_core.finetuning.loop import FinetuneConfig, finetune  # noqa: F401 - the exercises use them
from gpt2_core.finetuning.lora import LoRALinear, inject_lora, merge_lora
from gpt2_core.files import sha256
from gpt2_core.pretraining.step import lm_loss
from gpt2_core.profile import describe, get_device, pick, profile_name, seed_everything
from gpt2_core.course.reference import BASE_MODEL_ENV, load_base_model, reference_info
from gpt2_core.course.results import committed_results_dir, read_measurement, write_results

notebook_start = time.time()
print(describe())
seed_everything(123)
device = get_device()
pd.set_option("display.precision", 3)

# Every size comes from the profile: seconds in CI (tiny), minutes on a laptop CPU (default).
RECIPE = runs.profile_recipe()  # steps, batch size, learning rates, LoRA rank: printed below
CURVE_RECORDS = pick(tiny=24, default=220)  # test records scored during training, for the curves
EVAL_EVERY = pick(tiny=6, default=200)
SEED = 123
print(RECIPE)

# %% [markdown]
# ## 1. The model we start from
#
# Chapters 6 to 8 start from the **reference course model**: the chapter-5 recipe run for longer, 4
# layers, 256 wide, with its own 8,192-token tokenizer; its `config.json` records how it was trained
# (printed below). Setting the environment variable `GPT2_COURSE_BASE_MODEL=gpt2` before starting Jupyter
# switches this chapter to OpenAI's GPT-2 124M and GPT-2's tokenizer, when its weights can be downloaded
# (it falls back to the reference model, with a message, when they cannot); `GPT2_COURSE_BASE_MODEL=chapter5`
# starts from the model you trained in chapter 5. The model and its tokenizer always travel together:
# every end-of-text id below comes from `tokenizer.eot_token`.

# %%
base_model, tokenizer, base_name = load_base_model(device)
EOT = tokenizer.eot_token
CTX = base_model.cfg.context_length
trained = reference_info()["trained"]
print(f"base model: {base_name} ({base_model.num_parameters():,} parameters, context {CTX}); "
      f"switch with {BASE_MODEL_ENV}=gpt2|chapter5")
print(f"the reference model was trained for {trained['steps']:,} steps on {trained['tokens']:,} tokens, "
      f"{trained['seconds']:,.0f} s on {trained['device']} (its config.json)")
print(f"end-of-text is token {EOT} of {tokenizer.n_vocab}")


def fresh_copy():
    """A new copy of the pretrained model to fine-tune (the original stays untouched)."""
    return copy.deepcopy(base_model)


# %% [markdown]
# ## 2. An instruction set we can grade, with words held out
#
# Open-ended instructions ("write a poem about…") need a human or another model to judge. To measure
# progress *objectively* every instruction here has one right answer. The families come in two groups,
# reported separately, because they ask different things of a model:
#
# * **supported by the text**: the answer is in the question — the first or last word, the words
#   reversed, how many words, the numbers sorted, the year a clause from the speeches mentions. A model
#   can learn the *procedure* from examples and apply it to new words.
# * **needing knowledge**: a small sum, who gave the address of a given year, a number in words, a word in
#   capital letters, a plural. Their held-out questions ask about years, numbers and words never seen in
#   fine-tuning, so only what was stored can answer them. Capitals are knowledge too: `army` and `ARMY`
#   share no token, and capitals are rare in the speeches. So is a sum, for this tokenizer: the cell
#   below counts the sums of two small numbers whose result is a single token (nearly all of them), so
#   `7 + 5` is answered by recalling the token ` 12`, which the question does not contain; nothing can
#   be copied. (An earlier
#   version of this chapter counted sums as supported; the chapter model scored 0% on them, below the
#   most-common-answer baseline. Section 9 shows where they land now.)
#
# "Apply it to new words" is a claim we can test only if some words are really new. So the words come
# from a list of 2,400 words of the speeches (frequent and rare ones, many split into several tokens by
# the course tokenizer), and a seeded fifth of them, two numbers of every decade and a fifth of the years
# are **held out**: no training record mentions one, anywhere. The generator is seeded and reads only the
# corpus, so it rebuilds the same records byte for byte (their sha256 is pinned in the package, and checked
# here). Each record has the Alpaca fields `instruction`, `input`, `output`, plus a `family` and a `split`.

# %%
# NBVAL_CHECK_OUTPUT
split = vocabulary_split()
words = word_list()
pieces = [len(tokenizer.encode_ordinary(" " + w)) for w in words] if base_name == "reference" else []
print(f"{len(words):,} words, {len(split.heldout_words)} held out; numbers held out: {sorted(split.heldout_numbers)}")
print(f"{len(split.heldout_years)} of {len(split.train.years) + len(split.heldout.years)} years held out")
print("regenerating gives the pinned records:", sha256(dump_records(make_instruction_data()).encode()) ==
      INSTRUCTIONS_SHA256)

# %%
if base_name == "reference":
    sums = [f"{a} + {b}" for a in range(21) for b in range(21)]
    one_token = sum(len(tokenizer.encode_ordinary(f" {eval(q)}")) == 1 for q in sums)  # noqa: S307 - our own sums
    pieces_of = lambda text: [tokenizer.decode([t]) for t in tokenizer.encode_ordinary(text)]  # noqa: E731
    print(f"sums of two numbers 0-20 whose result is one token: {one_token} of {len(sums)}; "
          f"'7 + 5' is the tokens {pieces_of('7 + 5')} and the answer ' 12' is {pieces_of(' 12')}")

# %%
if pieces:
    print("tokens per word (course tokenizer, with its leading space):",
          dict(sorted(pd.Series(pieces).value_counts().items())))
sets = runs.instruction_sets(RECIPE)
frame = pd.DataFrame(sets["test"] + sets["heldout"])
frame["group"] = ["supported" if f in SUPPORTED else "knowledge" for f in frame["family"]]
frame.groupby(["split", "family"], sort=False).head(1).sort_values("family", key=lambda f: f.map(list(FAMILIES).index))[
    ["split", "group", "family", "instruction", "input", "output"]]

# %% [markdown]
# ### Records that teach the procedure, and words no list contains
#
# A model trained only on questions about 2,400 corpus words can pass a test on those words by learning
# *answers*: it has written ` army` as an answer hundreds of times, and a question about `army` comes out
# right whether or not it learned to copy. An earlier version of this chapter measured exactly that: 69% on
# test questions but 49% on held-out words, and nearly nothing on everyday words outside the corpus.
#
# So part of the training set is made of **procedure records**: the same word families and sorting, over
# inputs that cannot be memorised, a third each of
#
# - **made-up words** built from syllables (`soohai`, `chokuzund`),
# - **random letter strings** (`tctwjjn`), cut by the tokenizer into short pieces,
# - **single tokens of the tokenizer**: every token that is a space and letters, so that nearly every
#   word-like token is some answer's token at least once;
#
# and numbers from 100 to 999 for sorting. None of them is a held-out word. How large a share of the extra
# training records they should be is chosen in section 8, on a validation split.
#
# A fourth evaluation set then asks the question a new user asks: **new words**, that the course's word
# list never contains, half made up with another seed and half everyday English (`telescope`, `giraffe`,
# `marmalade`). No training record contains any of them (a test below checks it).

# %%
full_sets = runs.instruction_sets(runs.InstructionRecipe())  # every profile shows the full sets' examples
procedure_examples = [r for r in full_sets["train"] if r.get("source") == "procedure"]
new_examples = full_sets["new"]
pd.DataFrame([next(r for r in procedure_examples if r["family"] == f) for f in PROCEDURE_FAMILIES]
             + [next(r for r in new_examples if r["words"] == w) for w in ("made-up", "English")])[
    ["split", "family", "instruction", "input", "output"]]

# %% [markdown]
# Seven sets come out of it:
#
# - **train**: the generated file's training records, plus 20,000 more: a share of them procedure records,
#   the rest drawn from the training words (the set is built for *variety*, many distinct questions
#   rather than many passes over the same ones), with the families that have few possible questions repeated, up
#   to five times, so that they are not drowned;
# - **test**: in-vocabulary questions never trained on, an eighth of every family;
# - **held-out words**: questions built only from held-out words, numbers and years;
# - **fresh**: questions from another seed that mix training and held-out words, none asked before;
# - **new words**: the word families over words of no list of the course, made up or everyday English;
# - **validation** and **validation, made-up words**: never trained on either, and the only sets the
#   recipe is chosen on (section 8), so the four sets above are scored once, at the end.

# %%
# NBVAL_CHECK_OUTPUT
full_sets = runs.instruction_sets(runs.InstructionRecipe())
counts = pd.DataFrame({name: pd.Series([r["family"] for r in records]).value_counts()
                       for name, records in full_sets.items()}).fillna(0).astype(int).T[list(FAMILIES)]
counts

# %%
train_records, test_records = sets["train"], sets["test"]
heldout_records, fresh_records_, new_records = sets["heldout"], sets["fresh"], sets["new"]
curve_records = test_records[:: max(1, len(test_records) // CURVE_RECORDS)][:CURVE_RECORDS]
print(f"using {len(train_records):,} training, {len(test_records)} test, {len(heldout_records)} held-out-word, "
      f"{len(fresh_records_)} fresh and {len(new_records)} new-word records; {len(curve_records)} test records "
      "scored during training")
trained_letters = {w for r in train_records for w in re.findall(r"[a-z]+", " ".join(r.values()).lower())}
made_up_words, english_words = new_words()
print(f"training records that contain a held-out, new or validation word: {len(trained_letters & unseen_words())}; "
      f"new words: {len(made_up_words)} made up, {len(english_words)} English")
records = train_records  # the examples of sections 3 and 4

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
# answer are — sized for a small model. (Whether the full Alpaca format costs this model anything is not
# measured here: exercise 5 measures it.)

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
train_ds = InstructionDataset(train_records, tokenizer, CTX)  # what runs.fine_tune builds below
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
MAX_NEW = runs.max_new_tokens(tokenizer, [r for records_ in sets.values() for r in records_])
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
# ## 6. Full fine-tuning, with the token embedding frozen
#
# `finetune` (from `gpt2_core.finetuning.loop`) runs AdamW over every parameter that requires a gradient,
# with a short linear **warmup** and then a **cosine** decay of the learning rate (warmup lets Adam's
# running averages settle before large steps; the decay lets the weights settle at the end). Every
# `EVAL_EVERY` steps it calls the `metrics_fn` we give it (`curve_eval`, below), which answers a fixed slice
# of the test questions, so we can watch exact match rise.
#
# "Full" fine-tuning here trains every weight **but the token embedding**. The reason is the held-out
# words. The embedding is *tied* to the output layer (chapter 4): the logit of a token is its embedding
# row times the last hidden vector. Every training step pushes down, through the softmax, the logits of
# all tokens that are not the answer, and the tokens of held-out words are *never* an answer in training;
# weight decay shrinks their rows further. Trained this way, the model learns to answer with training
# words only. Section 8 measures the difference; `runs.freeze_token_embedding` is one line.
#
# *The next cell is the chapter's first long one: about three minutes at the default profile on 2 CPU cores
# (the LoRA and random-init runs below take as long). It shows a progress bar and prints its time.*

# %%
def curve_eval(model):
    return summarise(score_answers(curve_records, generate_answers(model, tokenizer, curve_records, MAX_NEW)))


full_model = fresh_copy()
full_trainable = runs.freeze_token_embedding(full_model)
print(f"trainable: {full_trainable:,} of {full_model.num_parameters():,} "
      f"(the token embedding, {full_model.tok_emb.weight.numel():,} numbers, is frozen; the output layer with it)")
full_history = runs.fine_tune(full_model, tokenizer, train_records, RECIPE, SEED, metrics_fn=curve_eval,
                              eval_every=EVAL_EVERY, desc="full fine-tuning")
print(f"{RECIPE.steps} steps of {RECIPE.batch_size} in {full_history.seconds:.0f}s, final loss "
      f"{full_history.losses[-1]:.3f}, curve slice {full_history.evals[-1]['supported']:.1%} on supported families")

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
fig = lora_diagram(d, 3 * d, RECIPE.lora_rank,
                   title=f"Figure 2: LoRA on the qkv layer, x Wᵀ + (alpha / r) x A B, r = {RECIPE.lora_rank}")
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
# embeddings, layer norms and the (tied) output layer included, so LoRA leaves the token embedding alone
# just as our full fine-tuning does. With the compact prompt the frozen embeddings are not a problem:
# every marker is made of tokens the model already knows.

# %%
lora_model = fresh_copy()
after = inject_lora(lora_model, rank=RECIPE.lora_rank, alpha=2 * RECIPE.lora_rank, targets=RECIPE.lora_targets)
print(f"trainable: full fine-tuning (embedding frozen) {full_trainable:,}; LoRA r={RECIPE.lora_rank} on "
      f"{', '.join(RECIPE.lora_targets)}: {after:,} ({after / full_trainable:.1%})")
probe = torch.tensor([tokenizer.encode_ordinary(format_prompt(example))], device=device)
with torch.no_grad():
    print("LoRA model equals the base model before training:",
          torch.allclose(lora_model(probe), base_model(probe), atol=1e-5))

# %% [markdown]
# LoRA moves few numbers, and each moves the output less, so it wants a larger learning rate than full
# fine-tuning. The low-rank matrices are not decayed (weight decay would pull the update towards zero,
# i.e. back to the base model). *About three minutes at the default profile; it prints its time.*

# %%
lora_history = runs.fine_tune(lora_model, tokenizer, train_records, RECIPE, SEED, lr=RECIPE.lora_lr, weight_decay=0.0,
                              metrics_fn=curve_eval, eval_every=EVAL_EVERY, desc="LoRA")
print(f"LoRA: {RECIPE.steps} steps in {lora_history.seconds:.0f}s")

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
# ## 8. How the mix was chosen, and how much a seed moves it
#
# One setting of the recipe is chosen here in the open: the **share of procedure records** among the
# 20,000 extra training records. A command in the repository fine-tunes the chapter's recipe once per share
# and scores each model on the two validation sets only (questions on training words never trained on, and
# questions on made-up validation words); the test, the held-out words and the new words play no part in
# the choice. This cell reads what the command wrote. The other settings (the learning rates, 1,000 steps
# of 32, LoRA's rank and layers) are the course's earlier choices and are not re-measured here.

# %%
mix = read_measurement(committed_results_dir() / "ch07-mix-search.json")
mix_table = pd.DataFrame({float(share): {"validation, corpus words": r["validation"]["supported"],
                                         "validation, made-up words": r["validation_new"]["supported"]}
                          for share, r in mix["runs"].items()}).T.rename_axis("procedure share")
mix_table["mean of the two"] = mix_table.mean(axis=1)
best_share = float(mix_table["mean of the two"].idxmax())
display(Markdown(
    f"Measured on {mix['measured']} ({mix['base_model']} model, seed {mix['seed']}, {mix['seconds'] / 60:.0f} "
    f"minutes); reproduce with `{mix['command']}`. Exact match on the supported families of each validation set "
    f"({mix['runs'][str(mix['shares'][0])]['validation']['n']} and "
    f"{mix['runs'][str(mix['shares'][0])]['validation_new']['n']} questions). The best mean is at share "
    f"{best_share:g}" + (" (the largest share tried: larger ones were not measured)" if best_share == max(mix["shares"]) else "")
    + f"; the recipe uses {RECIPE.procedure_share:g}"
    + ("." if best_share == RECIPE.procedure_share else ", which is NOT the best: re-run the command and update "
       "`InstructionRecipe.procedure_share`.")))
(100 * mix_table).round(1)

# %%
def paired(share_a, share_b, name_a, name_b):
    a = mix["runs"][str(share_a)]["validation"]["correct"] + mix["runs"][str(share_a)]["validation_new"]["correct"]
    b = mix["runs"][str(share_b)]["validation"]["correct"] + mix["runs"][str(share_b)]["validation_new"]["correct"]
    return mcnemar_counts(sum(x and not y for x, y in zip(a, b, strict=True)),
                          sum(y and not x for x, y in zip(a, b, strict=True)), len(a), name_a=name_a, name_b=name_b,
                          what="validation questions")


mix_conclusion = paired(best_share, 0.0, f"procedure share {best_share:g}", "no procedure records")
display(Markdown(f"Paired on the same questions, {mix_conclusion.phrase}."))

# %% [markdown]
# Why do made-up words help a test on *real* words? Figure 5 sorts the validation questions by how often
# the rarest token of their expected answer is itself an answer token in the training records, and shows
# exact match for each group, for the model trained without procedure records and with the chosen share.
# Without them, an answer whose token was rarely or never a training answer is rarely given: the model
# answers with what it has written before. With them, nearly every word-like token has been an answer.

# %%
def answer_token_counts(records):
    counts = Counter()
    for r in records:
        counts.update(tokenizer.encode_ordinary(" " + r["output"]))
    return counts


def rarest_answer_token(records, counts):
    return [min(counts[t] for t in tokenizer.encode_ordinary(" " + r["output"])) for r in records]


bins = [-1, 0, 9, 99, 999, float("inf")]
bin_names = ["never", "1-9", "10-99", "100-999", "1,000+"]
val_records = full_sets["validation"] + full_sets["validation_new"]
token_rows = []
for share in (0.0, best_share):
    counts = answer_token_counts(runs.instruction_sets(runs.InstructionRecipe(procedure_share=share))["train"])
    run = mix["runs"][str(share)]
    token_rows.append(pd.DataFrame({"share": f"procedure share {share:g}",
                                    "seen": pd.cut(rarest_answer_token(val_records, counts), bins, labels=bin_names),
                                    "correct": run["validation"]["correct"] + run["validation_new"]["correct"]}))
by_token = pd.concat(token_rows).groupby(["share", "seen"], observed=False)["correct"].agg(["mean", "size"])
fig, ax = plt.subplots(figsize=(8, 3.6))
width = 0.38
for i, (share, rows) in enumerate(by_token.groupby(level=0)):
    xs = [j + (i - 0.5) * width for j in range(len(bin_names))]
    ax.bar(xs, rows["mean"].fillna(0), width, label=share)
    for x, (m, n) in zip(xs, rows[["mean", "size"]].itertuples(index=False), strict=True):
        ax.annotate(f"n={n}", (x, (0 if m != m else m) + 0.02), ha="center", fontsize=7)
ax.set(xticks=range(len(bin_names)), xticklabels=bin_names, ylim=(0, 1.1), ylabel="exact match",
       xlabel="how often the answer's rarest token is a training answer's token",
       title="Figure 5: answers the model was never trained to write, before and after procedure records")
ax.legend(loc="upper left")
plt.tight_layout()
plt.show()

# %% [markdown]
# One run is one seed: the seed decides the order of the batches and LoRA's random $A$, and it moves exact
# match by a point or a few. So a second command fine-tunes each method with several seeds and scores each
# set; this cell reads what it wrote, and says when and how to reproduce it.

# %%
spread = read_measurement(committed_results_dir() / "ch07-seed-spread.json")
display(Markdown(
    f"Measured separately on {spread['measured']} ({spread['base_model']} model, seeds "
    f"{', '.join(map(str, spread['seeds']))}, {spread['seconds'] / 60:.0f} minutes"
    + (f" in all, as {' and '.join(spread['measured_in'])}" if "measured_in" in spread else "")
    + f"); reproduce with `{spread['command']}`. Exact match on the supported families, mean ± standard "
    "deviation over the seeds:"))
set_names = {"test": "test", "heldout": "held-out words", "fresh": "fresh records", "new": "new words"}
pd.DataFrame({method: {label: f"{m[key]['mean']:.1%} ± {m[key]['std']:.1%}" for key, label in set_names.items()}
              for method, m in spread["methods"].items()}).T

# %%
sm = spread["methods"]
# the examples behind each score: its sampling error adds to the seeds' spread (gpt2_core.finetuning.compare)
n_of = {key: sum(r["family"] in SUPPORTED for r in full_sets[key]) for key in set_names}


def seeds_compare(method_a, method_b, key, name_a, name_b):
    return compare(sm[method_a][key]["values"], sm[method_b][key]["values"], name_a=name_a, name_b=name_b,
                   n_a=n_of[key], n_b=n_of[key], what=f"{set_names[key]} questions")


conclusions = [
    seeds_compare("full fine-tuning", "full fine-tuning, embedding trained", "heldout",
                  "the frozen token embedding", "the trained one"),
    seeds_compare("full fine-tuning", "full fine-tuning, embedding trained", "new",
                  "the frozen token embedding", "the trained one"),
    seeds_compare("full fine-tuning", "LoRA", "test", "full fine-tuning", "LoRA"),
]
display(Markdown(
    f"On held-out words, {conclusions[0].phrase}. On new words, {conclusions[1].phrase}. On the test, "
    f"{conclusions[2].phrase}. A lead counts here only beyond twice the standard error from the seeds and from "
    "the sampling of the questions. The chapter model is full fine-tuning with the embedding frozen."))

# %% [markdown]
# The third baseline: **random weights, same recipe** (same steps, learning rate and data as full
# fine-tuning). Whatever the pretrained model scores above it is what pretraining contributed.
# *About three minutes at the default profile; it prints its time.*

# %%
random_model = fresh_copy()
random_model.reset_parameters()
runs.freeze_token_embedding(random_model)
random_history = runs.fine_tune(random_model, tokenizer, train_records, RECIPE, SEED, metrics_fn=curve_eval,
                                eval_every=EVAL_EVERY, desc="random init, same recipe")
print(f"random init: {RECIPE.steps} steps in {random_history.seconds:.0f}s")

# %% [markdown]
# ## 9. Scores: held-out questions, held-out words, fresh records, new words
#
# Every model answers every question of the four evaluation sets; the first table gives the means over the
# supported families (for new words, the four word families), the second exact match per family on the test.

# %%
t0 = time.time()
models = {"full fine-tuning": full_model, "LoRA": lora_model, "random init": random_model}
scored = {name: runs.score_sets(m, tokenizer, sets, max_new=MAX_NEW) for name, m in models.items()}
print(f"{len(models) * sum(len(sets[s]) for s in runs.SETS):,} answers in {time.time() - t0:.1f}s")
tables = {"most common answer": majority_table, "base model": base_table,
          **{name: s["test"]["table"] for name, s in scored.items()}}
summary = pd.DataFrame({name: summarise(t) for name, t in tables.items()}).T
for name, s in scored.items():
    summary.loc[name, "held-out words (supported)"] = s["heldout"]["supported"]
    summary.loc[name, "fresh (supported)"] = s["fresh"]["supported"]
    summary.loc[name, "new words (supported)"] = s["new"]["supported"]
(100 * summary).round(1).rename(columns=lambda c: f"{c} (%)")

# %%
scores = pd.DataFrame({name: t["exact_match"] for name, t in tables.items()})
scores.insert(0, "group", base_table["group"])
scores.insert(1, "n", base_table["n"])
(100 * scores.set_index(["group", "n"], append=True)).round(1)

# %%
families = [f for f in FAMILIES if f in scores.index]
supported_here = [f for f in families if f in SUPPORTED]
fig = plot_family_scores({name: scores[name].to_dict() for name in tables}, families,
                         divider_after=supported_here[-1] if len(supported_here) < len(families) else None,
                         ylabel="exact match on test questions",
                         title=f"Figure 3: exact match per family ({len(test_records)} test questions; "
                               "left of the dashed line: supported by the text)")
plt.show()

# %% [markdown]
# And how exact match grew during training, on the fixed slice of test questions scored every
# `EVAL_EVERY` steps, beside the training loss:

# %%
fig, (ax_em, ax_loss) = plt.subplots(1, 2, figsize=(11, 3.6))
histories = {"full fine-tuning": full_history, "LoRA": lora_history, "random init": random_history}
for name, h in histories.items():
    ax_em.plot(h.eval_steps, [e["supported"] for e in h.evals], marker="o", label=name)
    ax_loss.plot(h.steps, pd.Series(h.losses).rolling(25, min_periods=1).mean(), label=name)
ax_em.set(xlabel="training step", ylabel="exact match, supported families", ylim=(0, 1.02),
          title="Exact match against steps")
ax_loss.set(xlabel="training step", ylabel="loss on answer tokens (mean of 25 steps)", yscale="log",
            title="Training loss")
for ax in (ax_em, ax_loss):
    ax.legend()
fig.suptitle("Figure 4: the three runs of this chapter, step by step")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 10. New words: procedure, or lookup?
#
# The held-out-word questions ask the same tasks about words, numbers and years that no training record
# contains, and the new-word questions about words of no list of the course. Per family, for the chapter
# model:

# %%
chapter_name = "full fine-tuning"
chapter_model = full_model
words_table = pd.DataFrame({"test": scored[chapter_name]["test"]["table"]["exact_match"],
                            "held-out words": scored[chapter_name]["heldout"]["table"]["exact_match"],
                            "fresh": scored[chapter_name]["fresh"]["table"]["exact_match"],
                            "new words": scored[chapter_name]["new"]["table"]["exact_match"]})
supported_rows = words_table.loc[[f for f in words_table.index if f in SUPPORTED]]
supported_rows

# %% [markdown]
# And the new words split by where they come from: made up, or everyday English (`telescope`, `velvet`).

# %%
new_correct = pd.DataFrame({"words": [r["words"] for r in new_records], "family": [r["family"] for r in new_records],
                            "correct": scored[chapter_name]["new"]["correct"]})
new_by_kind = new_correct.pivot_table(index="family", columns="words", values="correct", aggfunc="mean")
new_by_kind.loc["all four"] = new_correct.groupby("words")["correct"].mean()
(100 * new_by_kind).round(1)

# %%
heldout_answers = generate_answers(chapter_model, tokenizer, heldout_records, MAX_NEW)
misses = [(r, a.text) for r, a in zip(heldout_records, heldout_answers, strict=True)
          if r["family"] in SUPPORTED and a.text.strip() != r["output"]]
train_words = {w for r in train_records for w in re.findall(r"[a-z]+", (r["input"] + " " + r["output"]).lower())}
from_training = sum(bool(set(re.findall(r"[a-z]+", text.lower())) & train_words - set(re.findall(
    r"[a-z]+", r["input"].lower()))) for r, text in misses)
print(f"{len(misses)} wrong answers on held-out-word questions; in {from_training} of them the model wrote a "
      "training word the question does not contain. A few:")
for r, text in misses[:6]:
    print(f"  {format_prompt(r)!r} -> {text!r} (expected {r['output']!r})")

# %%
test_s = scored[chapter_name]["test"]["supported"]
held_s = scored[chapter_name]["heldout"]["supported"]
fresh_s = scored[chapter_name]["fresh"]["supported"]
new_s = scored[chapter_name]["new"]["supported"]
full_spread = sm["full fine-tuning"]
learned = supported_rows[supported_rows["test"] >= 0.2].dropna()  # a family near zero on the test has nothing to keep
kept = learned["held-out words"] / learned["test"]  # the share of its test score a family keeps on new words
gap_conclusion = compare(full_spread["test"]["values"], full_spread["heldout"]["values"], name_a="test questions",
                         name_b="held-out words", n_a=n_of["test"], n_b=n_of["heldout"], what="questions")
conclusions.append(gap_conclusion)
display(Markdown(
    f"On the supported families the chapter model scores {test_s:.1%} on test questions and {held_s:.1%} on "
    f"held-out words (fresh records: {fresh_s:.1%}; new words: {new_s:.1%}). Over the seeds of section 8, "
    f"{gap_conclusion.phrase}: "
    + ("what it learned on the training words carries to words it never saw only in part. "
       if gap_conclusion.verdict == "beats" else "what it learned carries to words it never saw. ")
    + (f"Per family (the table above), among the {len(kept)} families it learned (at least 20% on the test), "
       f"held-out words keep the largest share of the test score in *{kept.idxmax()}* "
       f"({learned.loc[kept.idxmax(), 'held-out words']:.0%} against {learned.loc[kept.idxmax(), 'test']:.0%}) "
       f"and the smallest in *{kept.idxmin()}* ({learned.loc[kept.idxmin(), 'held-out words']:.0%} against "
       f"{learned.loc[kept.idxmin(), 'test']:.0%})." if len(kept) > 1 else "")))

# %% [markdown]
# A few answers of the chapter's model, one per family:

# %%
test_answers = generate_answers(chapter_model, tokenizer, test_records, MAX_NEW)
shown = [next(i for i, r in enumerate(test_records) if r["family"] == f) for f in FAMILIES
         if any(r["family"] == f for r in test_records)]
pd.DataFrame({"family": [test_records[i]["family"] for i in shown],
              "question": [format_prompt(test_records[i]) for i in shown],
              "expected": [test_records[i]["output"] for i in shown],
              chapter_name: [test_answers[i].text for i in shown]})

# %% [markdown]
# The chapter's aims, checked against this run's numbers:

# %%
best = summary.loc[chapter_name]
aims = [(f"exact match on supported families >= 70% ({best['supported']:.1%})", best["supported"] >= 0.70),
        (f"held-out words >= 65% ({held_s:.1%})", held_s >= 0.65),
        (f"held-out words within 10 points of the test ({held_s:.1%} vs {test_s:.1%})", test_s - held_s <= 0.10),
        (f"new words >= 50% ({new_s:.1%})", new_s >= 0.50),
        (f"format compliance >= 95% ({best['format_compliance']:.1%})", best["format_compliance"] >= 0.95),
        (f"at least twice the random-init score ({summary.loc['random init', 'supported']:.1%})",
         best["supported"] >= 2 * summary.loc["random init", "supported"])]
for aim, met in aims:
    print(f"{'met   ' if met else 'missed'}  {aim}")

# %% [markdown]
# ## 11. Try it
#
# `ask` puts any instruction, with an optional input, in the chapter's prompt format and prints the chapter
# model's greedy answer (`answer_question` checks what you typed first: an empty instruction, or one too long
# for the model's context, gets a one-line message instead of an answer). Below, four questions of trained
# families over everyday words that no training record contains, each checked against the right answer,
# then an instruction the model never saw. Try words of your own: what does it do with them?

# %%
def ask(instruction: str, input_text: str = "", max_new_tokens: int = 16) -> str:
    try:
        answer = answer_question(chapter_model, tokenizer, instruction, input_text, max_new_tokens)
    except (TypeError, ValueError) as err:
        print(f"not asked: {err}")
        return ""
    record = {"instruction": " ".join(instruction.split()), "input": " ".join(input_text.split())}
    notes = ("" if answer.stopped else "  [did not stop]") + (
        "" if (instruction + input_text).isascii() else "  [non-ASCII: characters the model rarely saw]")
    print(f"{format_prompt(record)} {answer.text}{notes}")
    return answer.text


tries = [("What is the last word?", "telescope harbor velvet", "velvet"),
         ("Reverse the order of the words.", "quantum giraffe marmalade", "marmalade giraffe quantum"),
         ("What is the first word?", "banana kettle umbrella", "banana"),
         ("How many words are there?", "pancake robot comet kitten", "4")]
right = [is_correct(ask(instruction, input_text), expected) for instruction, input_text, expected in tries]
display(Markdown(f"{sum(right)} of {len(tries)} right on new words: "
                 + ", ".join(f"*{t[0]}* {'right' if ok else 'wrong'}" for t, ok in zip(tries, right, strict=True))
                 + ". The next question's instruction was never trained on, so its answer is a guess:"))
_ = ask("What is the second word?", "alpha beta gamma")
_ = ask("")  # what you see when the instruction is empty
# %% [markdown]
# And a small chat box for the curious (in JupyterLab; it needs `ipywidgets`, installed with the course):
# type an instruction and an input, press the button, read the answer.

# %%
import ipywidgets as widgets  # noqa: E402

instruction_box = widgets.Text(value="How many words are there?", description="instruction", layout={"width": "60%"})
input_box = widgets.Text(value="one two three four", description="input", layout={"width": "60%"})
answer_box = widgets.Output()
button = widgets.Button(description="ask")


def on_click(_):
    with answer_box:
        answer_box.clear_output()
        ask(instruction_box.value, input_box.value)  # ask() prints a one-line message for a question it cannot take


button.on_click(on_click)
widgets.VBox([instruction_box, input_box, button, answer_box])

# %% [markdown]
# ## 12. The numbers of this run, and the model for chapter 8
#
# Chapter 8 starts from this chapter's model: it is saved under `data/outputs/` (checkpoint format, with its
# tokenizer and the recipe that made it), and chapter 8 re-makes it with the same function if it is missing.
# The headline numbers go to `results/ch07.json`.

# %%
saved = runs.save_chapter_model(chapter_model, tokenizer, RECIPE, base_name,
                                {"test": test_s, "heldout": held_s, "fresh": fresh_s, "new": new_s})
print(f"saved the chapter model to {saved}")
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
    "heldout_words_exact_match_supported": held_s,
    "fresh_seed_exact_match_supported": fresh_s,
    "new_words_exact_match_supported": new_s,
    "new_words_made_up_exact_match": new_by_kind.loc["all four"].get("made-up", float("nan")),
    "new_words_english_exact_match": new_by_kind.loc["all four"].get("English", float("nan")),
    "procedure_share": RECIPE.procedure_share,
    "seed_spread_exact_match_supported": {"seeds": spread["seeds"], "measured": spread["measured"],
                                          "command": spread["command"],
                                          **{m: {k: {"mean": v[k]["mean"], "std": v[k]["std"]} for k in set_names}
                                             for m, v in sm.items()}},
    "majority_baseline_supported": summary.loc["most common answer", "supported"],
    "base_model_exact_match_supported": summary.loc["base model", "supported"],
    "random_init_exact_match_supported": summary.loc["random init", "supported"],
    "conclusions": [c.record() for c in [*conclusions, mix_conclusion]],
}
# a group with no question in a tiny run has no score (NaN): write None for it
ch07 = {k: ((round(float(v), 4) if v == v else None) if isinstance(v, float) else v) for k, v in ch07.items()}
print(write_results(7, ch07))
print(f"profile {profile_name()}: notebook ran for {ch07['seconds'] / 60:.1f} min"
      + (f" ({'met' if ch07['seconds'] <= 12 * 60 else 'missed'}: the aim is 12 min or less)"
         if profile_name() == "default" else ""))

# %% [markdown]
# ## Summary: what you built
#
# - Instructions with **checkable answers** make instruction tuning measurable: exact match per family,
#   against the most common answer, the base model and random weights.
# - A test on **held-out words** and **new words** asks what a test on held-out questions cannot: whether a
#   procedure was learned, or answers for the words seen. **Procedure records** over made-up words, random
#   letters and every word-like token make nearly every token some answer's token, and the share of them was
#   chosen on a validation split. Freezing the tied token embedding keeps the model from unlearning the
#   words it never sees as answers.
# - The **prompt format** and the **loss mask** are where supervised fine-tuning meets the tokenizer.
# - **LoRA** trains a low-rank update, a few percent of the numbers, and merges into an ordinary model.
# - One run is one seed: a difference smaller than the **seed spread** is not a finding.
#
# **What comes next.** Chapter 8 starts from this model and learns from **rewards** instead of answers:
# the tasks' answers are checked by a program, so the model can try, be scored, and improve.
#
# ## Exercises
#
# Each exercise checks itself against the package; reference solutions are in
# `gpt2_core/exercises/solutions/ch07.py`, for after you have tried.
#
# 1. **A prompt format of your own.** Section 3 set Alpaca's format beside the compact one. Design a third:
#    write `my_prompt_format(record)`. The checker asks only what the chapter's pipeline needs: the whole
#    instruction and input appear word for word; two different records never give the same prompt (where
#    does the instruction end and the input begin?); every prompt ends with the same cue, and not with
#    whitespace (the answer is appended as `" " + output`); no `<|endoftext|>`; and the longest question
#    still fits the model's 128 tokens with its answer. On success it prints how many tokens your prompts
#    take beside the two formats of section 3.
#
#    **Predict first:** will your format score above or below the compact one after the same run, and
#    why? Then measure (a few minutes at the default profile):
#
#    ```python
#    own_ds = InstructionDataset(train_records, tokenizer, CTX, prompt_format=my_prompt_format)
#    own_model = fresh_copy()
#    runs.freeze_token_embedding(own_model)
#    finetune(own_model, instruction_loader(own_ds, RECIPE.batch_size, seed=123, device=device), lm_loss,
#             FinetuneConfig(steps=RECIPE.steps, lr=RECIPE.lr, warmup_steps=max(1, RECIPE.steps // 20),
#                            desc="full fine-tuning, my format"))
#    own_answers = generate_answers(own_model, tokenizer, test_records, MAX_NEW, prompt_format=my_prompt_format)
#    summarise(score_answers(test_records, own_answers)), summary.loc["full fine-tuning"]
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
#    **Predict first:** of the distinct words in the inputs of the *test* questions, what share also occurs
#    in a training record? And of the *held-out* questions' inputs? Then measure:
#
#    ```python
#    import re
#    for name, records_ in [("test", test_records), ("held-out words", heldout_records)]:
#        words = {w for r in records_ for w in re.findall(r"[a-z]+", r["input"].lower())}
#        leaked = my_leaked_words(train_records, words)
#        print(f"{name}: {len(leaked)} of {len(words)} input words occur in training records")
#    ```
#
#    Which of the two sets measures following an instruction on new words? Which words of the held-out set
#    leak, and why is that allowed (look at `extract_year`'s sentences)?

# %%
def my_leaked_words(train_records: list[dict], held_out: set[str]) -> set[str]:
    raise NotImplementedError  # your code here


_ = check_exercise("ch07.leaked_words", my_leaked_words)

# %% [markdown]
# 3. **A new task family.** Write the generator of a family "What is the second word?": given a
#    `random.Random`, return a record (`instruction`, `input`, `output`) with 3–5 words drawn from
#    `vocabulary_split().train.words` (from `gpt2_core.finetuning.instruction_data`) and the second one as the
#    answer. The checker asks
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
