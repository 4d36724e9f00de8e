# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
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
# A pretrained GPT continues text. Ask it *"Convert the word to upper case: nation"* and it will happily
# write more State-of-the-Union prose. **Instruction tuning** teaches the same network a new habit: read
# an instruction, answer it, stop. It is supervised fine-tuning on (instruction, response) pairs, the
# first step that turned GPT-3 into InstructGPT (Ouyang et al., 2022, *Training language models to follow
# instructions with human feedback*) and that FLAN showed generalises across tasks (Wei et al., 2022,
# *Finetuned Language Models Are Zero-Shot Learners*). We use the prompt format of Stanford Alpaca
# (Taori et al., 2023).
#
# In this chapter we
#
# 1. generate an instruction set whose answers can be **checked exactly** (12 task families),
# 2. format it as Alpaca prompts and batch it: padding, targets shifted by one, and masks (`-100`),
# 3. fine-tune the course's pretrained model two ways — **all weights**, and **LoRA** (Hu et al., 2021,
#    *LoRA: Low-Rank Adaptation of Large Language Models*), which trains a few percent of the numbers,
# 4. merge LoRA back into plain weights, export to the Hugging Face format and load it back,
# 5. score the base model, the full fine-tune and LoRA by exact match on held-out questions.
#
# Everything below is computed in this run; the profile decides how much.

# %%
import copy
import time

import matplotlib.pyplot as plt
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from gpt2_core.exercises import check_exercise
from gpt2_core.instructions import (
    FAMILIES,
    InstructionDataset,
    dump_records,
    evaluate_exact_match,
    extract_response,
    format_prompt,
    generate_responses,
    instruction_collate,
    instruction_loss,
    load_instruction_data,
    make_instruction_data,
    split_records,
)
from gpt2_core.lora import LoRALinear, count_trainable, inject_lora, merge_lora
from gpt2_core.model import GPTModel
from gpt2_core.pretrained import course_model
from gpt2_core.profile import data_dir, describe, get_device, pick, seed_everything
from gpt2_core.tokenizer import gpt2_encoding

print(describe())
seed_everything(123)
device = get_device()
enc = gpt2_encoding()
pd.set_option("display.max_colwidth", 60)

# %% [markdown]
# ## 1. An instruction set we can grade
#
# Open-ended instructions ("write a poem about…") need a human or another model to judge. To measure
# progress *objectively* we generate instructions with one right answer each: change case, reverse or
# sort a list, small sums, counting words, pulling the year out of a sentence from the corpus, naming the
# president who gave the State of the Union address in a given year (read from the corpus metadata; the
# two years with two addresses are skipped), first/last word, numbers in words, plurals. Answers are a few
# tokens long, so a small model can learn them.
#
# The generator is seeded and reads only the corpus, so it rebuilds `data/instructions.json` byte for
# byte. Each record has the Alpaca fields `instruction`, `input`, `output`, plus a `family`.

# %%
# NBVAL_CHECK_OUTPUT
records = load_instruction_data()
print(len(records), "records,", len(FAMILIES), "families")
print("regenerating gives the committed file:",
      dump_records(make_instruction_data()) == (data_dir() / "instructions.json").read_text(encoding="utf-8"))

# %%
frame = pd.DataFrame(records)
examples = frame.groupby("family", sort=False).head(2)[["family", "instruction", "input", "output"]]
examples

# %%
# NBVAL_CHECK_OUTPUT
frame["family"].value_counts().rename("records").to_frame().T

# %% [markdown]
# A fixed, **stratified** held-out split: every family gives the same fraction of its records to the test
# set, so per-family accuracy is measured on questions the model never saw. (For `sotu_president` that
# means unseen *years*: the model can only answer from what pretraining put into it, or by guessing a
# neighbouring year's president.)

# %%
# NBVAL_CHECK_OUTPUT
train_all, test_all = split_records(records, test_fraction=0.2, seed=7)
print(f"train {len(train_all)}  test {len(test_all)}")

# %% [markdown]
# ## 2. The Alpaca prompt format
#
# Every example becomes one text: a fixed header, the instruction, the input (left out when empty), and
# the response marker after which the model writes. The model learns that what follows
# `### Response:` is the answer and that an end-of-text token ends it. We write the format here, then
# check it against the package.

# %%
def my_format_prompt(record: dict) -> str:
    header = ("Below is an instruction that describes a task. "
              "Write a response that appropriately completes the request.")
    text = f"{header}\n\n### Instruction:\n{record['instruction']}"
    if record.get("input"):
        text += f"\n\n### Input:\n{record['input']}"
    return text + "\n\n### Response:\n"


print(my_format_prompt(records[0]) + records[0]["output"])

# %%
# NBVAL_CHECK_OUTPUT
print("same as gpt2_core:", all(my_format_prompt(r) == format_prompt(r) for r in records))

# %% [markdown]
# The model has a fixed context window, so every prompt + response + end-of-text must fit in it.

# %%
def load_model():
    """A fresh copy of the course's pretrained model for this profile (eval mode, course device)."""
    return copy.deepcopy(course_model())


base_model = load_model()
ctx = base_model.cfg.context_length
lengths = InstructionDataset(records, enc).lengths()
print(f"context {ctx}; tokens per example: max {max(lengths)}, mean {sum(lengths) / len(lengths):.1f}")
# Only examples that fit (with their end-of-text) are used; under the default profile that is all of them.
fits = lambda rs: [r for r in rs if len(enc.encode(format_prompt(r) + r["output"])) < ctx]
train_fit, test_fit = fits(train_all), fits(test_all)
train_records = train_fit[: pick(tiny=64, default=len(train_fit))]
test_records = test_fit[: pick(tiny=30, default=len(test_fit))]
print(f"using {len(train_records)} training and {len(test_records)} test records")

# %% [markdown]
# ## 3. Batches: padding, shifted targets, and `-100`
#
# Examples have different lengths, so a batch is padded to its longest example. We pad with the
# end-of-text id 50256 — after appending one real end-of-text to every example. Targets are the inputs
# shifted left by one token, as in pretraining. Then two kinds of target are replaced by `-100`, the index
# `F.cross_entropy` ignores:
#
# * **padding after the first end-of-text** — the model must learn to emit *one* end-of-text (to stop),
#   but predicting padding is meaningless and would swamp the loss for short examples;
# * optionally **the prompt** — so the loss measures only the response. The header is the same in every
#   example; learning to recite it teaches nothing.
#
# Here is the collate function written out, on token ids small enough to read.

# %%
def my_collate(batch, pad_id=50256, ignore_index=-100, mask_prompt=False):
    width = max(len(ids) for ids, _ in batch) + 1
    inputs, targets = [], []
    for ids, prompt_len in batch:
        seq = ids + [50256] + [pad_id] * (width - len(ids) - 1)
        x, y = seq[:-1], seq[1:]
        y[len(ids):] = [ignore_index] * (len(y) - len(ids))  # keep the first end-of-text, drop padding
        if mask_prompt:
            y[: prompt_len - 1] = [ignore_index] * (prompt_len - 1)  # targets that predict the prompt
        inputs.append(x)
        targets.append(y)
    return torch.tensor(inputs), torch.tensor(targets)


toy = [([11, 12, 13, 14, 15], 3), ([21, 22, 23], 2)]  # (token ids, prompt length)
for mask in (False, True):
    x, y = my_collate(toy, mask_prompt=mask)
    print(f"mask_prompt={mask}\ninputs\n{x}\ntargets\n{y}\n")

# %%
# NBVAL_CHECK_OUTPUT
same = []
for m in (False, True):
    (x1, y1), (x2, y2) = my_collate(toy, mask_prompt=m), instruction_collate(toy, mask_prompt=m)
    same.append(torch.equal(x1, x2) and torch.equal(y1, y2))
print("same as gpt2_core:", all(same))

# %% [markdown]
# Why it matters, on a real batch of four examples and the pretrained model: the loss with nothing
# masked counts every padding position (and the long, repetitive header), the loss with padding masked
# counts each example's text once, and the loss with the prompt masked counts only the answers — the
# number that fine-tuning has to bring down.

# %%
train_ds = InstructionDataset(train_records, enc)
toy_batch = [train_ds[i] for i in range(4)]
x, y_pad = instruction_collate(toy_batch)
_, y_prompt = instruction_collate(toy_batch, mask_prompt=True)
y_none = torch.cat([x[:, 1:], torch.full((x.shape[0], 1), 50256)], dim=1)  # shifted, nothing masked
with torch.no_grad():
    logits = base_model(x.to(device)).cpu()
rows = []
for name, y in [("nothing masked", y_none), ("padding masked", y_pad), ("padding + prompt masked", y_prompt)]:
    loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-100)
    rows.append({"targets": name, "counted tokens": int((y != -100).sum()), "loss": round(loss.item(), 3)})
pd.DataFrame(rows)

# %% [markdown]
# Masking the prompt has a second benefit on a CPU: the output layer (a 50,257-way matmul, the most
# expensive layer of a small model) only needs to run where a target counts. `instruction_loss` does
# exactly that, and gives the same number as the plain cross-entropy.

# %%
# NBVAL_CHECK_OUTPUT
with torch.no_grad():
    plain = F.cross_entropy(logits.flatten(0, 1), y_prompt.flatten(), ignore_index=-100)
    fast = instruction_loss(base_model, x.to(device), y_prompt.to(device)).cpu()
print("instruction_loss equals cross_entropy:", torch.allclose(plain, fast, atol=1e-4))

# %% [markdown]
# ## 4. The base model, before any fine-tuning
#
# Greedy decoding (`gpt2_core.generate.generate`, stopping at end-of-text), then `extract_response` keeps
# the text after `### Response:`. Prompts of the same token length are batched together, which needs no
# padding. The pretrained model has never seen an instruction, so expect prose, not answers.

# %%
max_new = 12
t0 = time.time()
base_preds = generate_responses(base_model, enc, test_records, max_new_tokens=max_new, progress=True)
print(f"{len(test_records)} answers in {time.time() - t0:.1f}s")
pd.DataFrame({"instruction": [r["instruction"] for r in test_records[:6]],
              "input": [r["input"] for r in test_records[:6]],
              "base model says": base_preds[:6]})

# %% [markdown]
# ## 5. Full fine-tuning
#
# One training function for both methods: AdamW over whatever still requires a gradient, batches from
# `instruction_collate` (with the prompt masked), the loss from `instruction_loss`, a progress bar and the
# loss of every step. Full fine-tuning updates all the model's weights.

# %%
epochs = pick(tiny=1, default=3)
batch_size = pick(tiny=8, default=16)


def finetune(model, records, lr, epochs=epochs, mask_prompt=True, desc="training"):
    seed_everything(123)
    loader = torch.utils.data.DataLoader(
        InstructionDataset(records, enc), batch_size=batch_size, shuffle=True,
        collate_fn=lambda b: instruction_collate(b, mask_prompt=mask_prompt, max_length=ctx, device=device))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.train()
    losses, t0 = [], time.time()
    with tqdm(total=epochs * len(loader), desc=desc) as bar:
        for _ in range(epochs):
            for x, y in loader:
                loss = instruction_loss(model, x, y)
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                losses.append(loss.item())
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    print(f"{desc}: {len(losses)} steps in {time.time() - t0:.1f}s, last loss {losses[-1]:.3f}")
    return losses


full_model = load_model()
full_losses = finetune(full_model, train_records, lr=pick(tiny=1e-3, default=1e-3), desc="full fine-tuning")

# %% [markdown]
# ## 6. LoRA: train a low-rank update instead
#
# Fine-tuning all weights needs optimizer state for every one of them and a full copy of the model per
# task. LoRA (Hu et al., 2021) freezes the pretrained weight $W$ (out × in) of a linear layer and learns a
# low-rank change to it:
#
# $$ y = xW^\top + b + \tfrac{\alpha}{r}\, x A B, \qquad A \in \mathbb{R}^{\text{in}\times r},\;
#    B \in \mathbb{R}^{r\times \text{out}}. $$
#
# $A$ starts random and $B$ starts at **zero**, so the adapted layer starts out exactly equal to the
# pretrained one; only $r(\text{in}+\text{out})$ numbers are trained instead of $\text{in}\cdot\text{out}$.
# The scale $\alpha/r$ keeps the size of the update roughly independent of the rank. Here is a whole
# LoRA layer:

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
print("trainable:", sum(p.numel() for p in mine.parameters() if p.requires_grad), "instead of", 8 * 6 + 6)

# %% [markdown]
# `inject_lora` wraps the attention projections (`att.qkv`, `att.out_proj`) and the feed-forward layers
# (`ff.fc`, `ff.proj`) of every block and freezes everything else — embeddings, layer norms and the
# (tied) output head included.

# %%
lora_rank, lora_alpha = 16, 32
lora_model = load_model()
before = count_trainable(lora_model)
after = inject_lora(lora_model, rank=lora_rank, alpha=lora_alpha)
pd.DataFrame([
    {"model": "full fine-tuning", "trainable parameters": before, "share": "100%"},
    {"model": f"LoRA (r={lora_rank}, alpha={lora_alpha})", "trainable parameters": after,
     "share": f"{100 * after / before:.2f}%"},
])

# %% [markdown]
# Because $B = 0$, injecting LoRA changes nothing yet:

# %%
# NBVAL_CHECK_OUTPUT
probe = torch.tensor([enc.encode(format_prompt(test_records[0]))], device=device)
with torch.no_grad():
    print("LoRA model equals the base model before training:",
          torch.allclose(lora_model(probe), base_model(probe), atol=1e-5))

# %% [markdown]
# LoRA moves a small number of parameters, so it usually wants a larger learning rate than full
# fine-tuning.

# %%
lora_losses = finetune(lora_model, train_records, lr=pick(tiny=5e-3, default=5e-3), desc="LoRA")

# %%
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(full_losses, label="full fine-tuning", alpha=0.8)
ax.plot(lora_losses, label=f"LoRA r={lora_rank}", alpha=0.8)
ax.set_xlabel("step")
ax.set_ylabel("loss on the response tokens")
ax.set_yscale("log")
ax.set_title("Instruction tuning: training loss")
ax.legend()
plt.show()

# %% [markdown]
# ## 7. Merging LoRA back into the weights
#
# After training, $W' = W + \frac{\alpha}{r}(AB)^\top$ is an ordinary weight matrix. `merge_lora` folds
# every adapter in and puts plain `nn.Linear` layers back, so the merged model is a normal `GPTModel` —
# no extra cost at inference — and gives the same outputs.

# %%
with torch.no_grad():
    lora_logits = lora_model(probe)
merge_lora(lora_model)
with torch.no_grad():
    merged_logits = lora_model(probe)
print("LoRA layers left:", sum(isinstance(m, LoRALinear) for m in lora_model.modules()))
print("largest difference:", (merged_logits - lora_logits).abs().max().item())

# %%
# NBVAL_CHECK_OUTPUT
print("outputs equal before and after merging:", torch.allclose(merged_logits, lora_logits, atol=1e-4))

# %% [markdown]
# ## 8. Generating answers
#
# Same greedy decoding as for the base model, now from the two fine-tuned models.

# %%
t0 = time.time()
full_preds = generate_responses(full_model, enc, test_records, max_new_tokens=max_new, progress=True)
lora_preds = generate_responses(lora_model, enc, test_records, max_new_tokens=max_new, progress=True)
print(f"{2 * len(test_records)} answers in {time.time() - t0:.1f}s")
shown = [test_records.index(next(r for r in test_records if r["family"] == f)) for f in FAMILIES
         if any(r["family"] == f for r in test_records)]
pd.DataFrame({"family": [test_records[i]["family"] for i in shown],
              "input": [test_records[i]["input"] or test_records[i]["instruction"] for i in shown],
              "expected": [test_records[i]["output"] for i in shown],
              "full FT": [full_preds[i] for i in shown],
              "LoRA": [lora_preds[i] for i in shown]})

# %% [markdown]
# `extract_response` is what turns a whole generated text back into the answer: it keeps what follows
# the last `### Response:` and stops at end-of-text or at a new `###` section.

# %%
# NBVAL_CHECK_OUTPUT
print(repr(extract_response(format_prompt(records[0]) + "PART<|endoftext|>### Instruction:\nmore")))

# %% [markdown]
# ## 9. Exact-match accuracy on held-out questions
#
# An answer counts when it equals the expected output after collapsing whitespace and dropping a trailing
# period — nothing more lenient (case matters: it is part of two tasks).

# %%
scores = {}
for name, preds in [("base", base_preds), ("full FT", full_preds), ("LoRA", lora_preds)]:
    table = evaluate_exact_match(None, enc, test_records, predictions=preds)
    scores[name] = table.set_index("family")["accuracy"]
results = pd.DataFrame(scores)
print("exact match (%) on the held-out questions")
pd.concat([table.set_index("family")["n"], (100 * results).round(1)], axis=1)

# %%
ax = results.plot.bar(figsize=(10, 3.8), width=0.8)
ax.set_ylabel("exact match")
ax.set_ylim(0, 1.05)
ax.set_title(f"Held-out exact match by task family ({len(test_records)} questions)")
ax.legend(loc="upper left", ncols=3)
plt.xticks(rotation=35, ha="right")
plt.tight_layout()
plt.show()

# %% [markdown]
# Reading the chart: the base model scores nothing — it has never seen the format and just continues
# with corpus prose. How far fine-tuning gets depends on the profile: the course model of the `default`
# profile is small (4 layers) and only briefly pretrained (chapter 5), and a few epochs over ~1,000
# examples is little training, so expect modest numbers there; more epochs, a larger LoRA rank or the
# `gpt2` profile raise them. Some families are hard for any small model: the president of an *unseen*
# year is a fact it may not have, and upper case is awkward in tokens (`nation` and `NATION` share none).

# %% [markdown]
# ## 10. Save the fine-tuned model in the Hugging Face format and load it back
#
# The merged LoRA model is a plain `GPTModel`, so the chapter-4 export applies: `save_hf` writes a
# checkpoint that `transformers` (and `GPTModel.from_hf`) can load.

# %%
out_dir = data_dir() / "outputs" / "ch07_merged_hf"
saved = lora_model.save_hf(out_dir)
print("saved to", saved.relative_to(data_dir().parent))
reloaded = GPTModel.from_hf(out_dir).to(device).eval()
with torch.no_grad():
    reloaded_logits = reloaded(probe)

# %%
# NBVAL_CHECK_OUTPUT
print("reloaded model gives the same outputs:", torch.allclose(reloaded_logits, merged_logits, atol=1e-4))
print("and the same answers:",
      generate_responses(reloaded, enc, test_records[:8], max_new) == lora_preds[:8])

# %% [markdown]
# ## Summary
#
# * Instruction tuning is next-token training on prompt + response text in a fixed format (Alpaca's
#   here); the model learns where the answer goes and to stop with end-of-text.
# * Batches pad with end-of-text, shift targets by one and set ignored targets to `-100`: padding after
#   the first end-of-text always, the prompt optionally (here: always — and it also makes training
#   cheaper, because the output layer only runs where a target counts).
# * LoRA trains a few percent of the parameters, starts exactly at the pretrained model, and merges back
#   into ordinary weights with no change in outputs.
# * Exact-match scoring on held-out, checkable tasks gives an honest number for each method.
#
# ## Exercises
#
# Fill in each function and run its cell; the checker compares it with the package on a few inputs.
#
# 1. **Format a prompt.** Write the Alpaca prompt for a record (`### Input:` only when there is input).

# %%
def exercise_format_prompt(record: dict) -> str:
    raise NotImplementedError  # your code here


check_exercise("ch07.format_prompt", exercise_format_prompt)

# %% [markdown]
# 2. **Mask the padding.** Given one row of targets padded with end-of-text (50256), keep the first
#    end-of-text and replace every later one by `ignore_index`.

# %%
def exercise_mask_padding(targets: list[int], pad_id: int = 50256, ignore_index: int = -100) -> list[int]:
    raise NotImplementedError  # your code here


check_exercise("ch07.mask_padding", exercise_mask_padding)

# %% [markdown]
# 3. **Count LoRA's parameters.** For a `GPTConfig` and a rank, how many trainable numbers does
#    `inject_lora` leave (qkv, out_proj, fc and proj in every block)? Check your formula against the
#    table in section 6.

# %%
def exercise_lora_count(cfg, rank: int) -> int:
    raise NotImplementedError  # your code here


check_exercise("ch07.lora_count", exercise_lora_count)

# %% [markdown]
# 4. *(open)* Train LoRA with `mask_prompt=False` and compare the held-out accuracy and the time per
#    step with the run above. Then try ranks 2 and 64: where does accuracy stop improving?
