"""Baselines for chapter 6: the majority class and a multinomial Naive Bayes over the model's own tokens.

A number means little alone. Beside the fine-tuned GPT the chapter prints what the simplest
classifiers score on the *same* tokens (the first ``max_length`` ids of each e-mail):

- the **majority class** of the training labels, predicted for every e-mail;
- **multinomial Naive Bayes** (the classic spam filter, e.g. Sahami et al., 1998): each class is a bag
  of tokens, ``log P(class) + sum over tokens of log P(token | class)``, with Laplace (add-``alpha``)
  smoothing so that a token never seen with a class does not make its probability zero.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch

from ..checks import check_int, check_number


def majority_class(labels: Sequence[int]) -> int:
    """The most common label (the smallest one on a tie)."""
    labels = [int(y) for y in labels]
    if not labels:
        raise ValueError("no labels given; the majority class needs at least one training label")
    counts = Counter(labels)
    return min(counts, key=lambda y: (-counts[y], y))


def _check_docs(docs: object, vocab_size: int) -> list[list[int]]:
    if isinstance(docs, (str, bytes)) or not isinstance(docs, Sequence):
        raise TypeError(f"give a list of token-id lists (one per text), got {type(docs).__name__}")
    out = [[int(t) for t in doc] for doc in docs]
    bad = [t for doc in out for t in doc if not 0 <= t < vocab_size]
    if bad:
        raise ValueError(f"token id {bad[0]} is outside the vocabulary [0, {vocab_size}); "
                         "was another tokenizer used?")
    return out


class NaiveBayes:
    """Multinomial Naive Bayes over token ids with Laplace smoothing: ``NaiveBayes(vocab_size).fit(docs, labels)``."""

    def __init__(self, vocab_size: int, alpha: float = 1.0) -> None:
        check_int(vocab_size, "vocab_size (e.g. tokenizer.n_vocab)", low=1)
        check_number(alpha, "alpha (the Laplace smoothing count)", positive=True)
        self.vocab_size, self.alpha = vocab_size, float(alpha)
        self.log_prior: torch.Tensor | None = None
        self.log_likelihood: torch.Tensor | None = None  # (classes, vocab): log P(token | class)

    def fit(self, docs: Sequence[Sequence[int]], labels: Sequence[int]) -> NaiveBayes:
        """Count tokens per class; returns self."""
        docs, labels = _check_docs(docs, self.vocab_size), [int(y) for y in labels]
        if len(docs) != len(labels) or not docs:
            raise ValueError(f"got {len(docs)} texts and {len(labels)} labels; give one label per text (at least one)")
        if min(labels) < 0:
            raise ValueError(f"labels must be class indices 0, 1, ...; got {min(labels)}")
        n_classes = max(max(labels) + 1, 2)
        counts = torch.zeros(n_classes, self.vocab_size, dtype=torch.float64)
        for doc, y in zip(docs, labels, strict=True):
            counts[y] += torch.bincount(torch.tensor(doc, dtype=torch.long), minlength=self.vocab_size)
        smoothed = counts + self.alpha
        self.log_likelihood = smoothed.log() - smoothed.sum(1, keepdim=True).log()
        prior = torch.bincount(torch.tensor(labels), minlength=n_classes).double()
        self.log_prior = (prior + 1e-12).log() - prior.sum().log()  # a class with no example: ~ -inf, not nan
        return self

    def scores(self, docs: Sequence[Sequence[int]]) -> torch.Tensor:
        """``log P(class) + sum log P(token | class)`` for each text: a (texts, classes) tensor."""
        if self.log_likelihood is None or self.log_prior is None:
            raise RuntimeError("this NaiveBayes is not fitted yet; call .fit(docs, labels) first")
        docs = _check_docs(docs, self.vocab_size)
        bags = torch.stack([torch.bincount(torch.tensor(d, dtype=torch.long), minlength=self.vocab_size).double()
                            for d in docs]) if docs else torch.zeros(0, self.vocab_size, dtype=torch.float64)
        return self.log_prior + bags @ self.log_likelihood.T

    def predict(self, docs: Sequence[Sequence[int]]) -> list[int]:
        """The most likely class of each text."""
        return self.scores(docs).argmax(-1).tolist()
