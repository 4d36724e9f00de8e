"""Baselines of chapter 6: the majority class and multinomial Naive Bayes with Laplace smoothing."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2_core.finetuning.baselines import NaiveBayes, majority_class


def test_majority_class_and_ties():
    assert majority_class([0, 1, 1, 2, 1]) == 1
    assert majority_class([1, 0]) == 0  # a tie goes to the smallest label
    with pytest.raises(ValueError, match="at least one"):
        majority_class([])


def test_naive_bayes_by_hand():
    # class 0: tokens 0,0,1 ; class 1: tokens 2,2,2,1 ; vocabulary of 3, alpha 1
    nb = NaiveBayes(3).fit([[0, 0, 1], [2, 2], [2, 1]], [0, 1, 1])
    p0 = torch.tensor([3, 2, 1]) / 6  # counts + 1 over 3 + 3
    p1 = torch.tensor([1, 2, 4]) / 7  # counts + 1 over 4 + 3
    torch.testing.assert_close(nb.log_likelihood, torch.stack([p0, p1]).log().double())
    torch.testing.assert_close(nb.log_prior, torch.tensor([1 / 3, 2 / 3]).log().double())
    score = nb.scores([[0, 2]])[0]
    assert score[0].item() == pytest.approx(math.log(1 / 3) + math.log(3 / 6) + math.log(1 / 6))
    assert score[1].item() == pytest.approx(math.log(2 / 3) + math.log(1 / 7) + math.log(4 / 7))
    assert nb.predict([[0, 0], [2, 2, 2], []]) == [0, 1, 1]  # an empty text gets the prior's answer


def test_smoothing_keeps_unseen_tokens_finite():
    nb = NaiveBayes(5, alpha=0.5).fit([[0], [1]], [0, 1])
    assert torch.isfinite(nb.scores([[4, 4, 3]])).all()


@settings(max_examples=20, deadline=None)
@given(st.lists(st.tuples(st.lists(st.integers(0, 9), max_size=6), st.integers(0, 2)), min_size=1, max_size=12),
       st.floats(0.1, 3.0))
def test_likelihoods_are_distributions_over_the_vocabulary(data, alpha):
    docs, labels = [d for d, _ in data], [y for _, y in data]
    nb = NaiveBayes(10, alpha).fit(docs, labels)
    torch.testing.assert_close(nb.log_likelihood.exp().sum(1), torch.ones(nb.log_likelihood.shape[0],
                                                                          dtype=torch.float64))
    assert len(nb.predict(docs)) == len(docs)


def test_naive_bayes_errors():
    for bad in (0, -3, 2.5, True):
        with pytest.raises((TypeError, ValueError), match="vocab_size"):
            NaiveBayes(bad)
    for bad in (0, -1.0, True):
        with pytest.raises((TypeError, ValueError), match="alpha"):
            NaiveBayes(5, alpha=bad)
    with pytest.raises(RuntimeError, match="fit"):
        NaiveBayes(5).predict([[1]])
    nb = NaiveBayes(5)
    with pytest.raises(ValueError, match="one label per text"):
        nb.fit([[1], [2]], [0])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        nb.fit([[1, 7]], [0])
    with pytest.raises(ValueError, match="class indices"):
        nb.fit([[1]], [-1])
    with pytest.raises(TypeError, match="token-id lists"):
        nb.fit("hello", [0])
