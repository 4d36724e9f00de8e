"""Tests for gpt2_core.data: sliding windows, the dataloader, and their errors."""

from __future__ import annotations

import numpy as np
import pytest
import tiktoken
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from gpt2_core.exercises import check_exercise
from gpt2_core.text.bpe import BPETokenizer
from gpt2_core.text.ranks import ENDOFTEXT, ENDOFTEXT_ID, GPT2_PATTERN, gpt2_encoding
from gpt2_core.text.ranks import gpt2_ranks as load_ranks
from gpt2_core.text.windows import GPTDataset, create_dataloader, encode_text, num_windows


@pytest.fixture(scope="module")
def enc() -> tiktoken.Encoding:
    return tiktoken.Encoding(name="gpt2_test", pat_str=GPT2_PATTERN, mergeable_ranks=load_ranks(),
                             special_tokens={ENDOFTEXT: ENDOFTEXT_ID})


def brute_force_windows(ids: list[int], c: int, s: int) -> list[tuple[list[int], list[int]]]:
    out = []
    start = 0
    while start + c + 1 <= len(ids):
        out.append((ids[start : start + c], ids[start + 1 : start + c + 1]))
        start += s
    return out


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 60), c=st.integers(1, 12), s=st.integers(1, 15))
def test_num_windows_matches_brute_force(n: int, c: int, s: int) -> None:
    assert num_windows(n, c, s) == len(brute_force_windows(list(range(n)), c, s))


@settings(max_examples=40, deadline=None)
@given(ids=st.lists(st.integers(0, 50_000), min_size=2, max_size=60), c=st.integers(1, 12),
       s=st.integers(1, 15))
def test_windows_match_brute_force(ids: list[int], c: int, s: int) -> None:
    if len(ids) < c + 1:
        with pytest.raises(ValueError, match="context_length"):
            GPTDataset(ids, c, s)
        return
    ds = GPTDataset(ids, c, s)
    got = [(x.tolist(), y.tolist()) for x, y in (ds[i] for i in range(len(ds)))]
    assert got == brute_force_windows(ids, c, s)
    for x, y in (ds[i] for i in range(len(ds))):
        assert x.dtype == y.dtype == torch.long
        assert torch.equal(x[1:], y[:-1])  # the target is the input shifted by one


def test_stride_defaults_to_context_length() -> None:
    ds = GPTDataset(list(range(10)), 3)
    assert ds.stride == 3
    assert [ds[i][0].tolist() for i in range(len(ds))] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


@pytest.mark.parametrize("make", [list, tuple, torch.tensor, np.array,
                                  lambda v: torch.tensor(v, dtype=torch.int32)])
def test_accepts_id_containers(make) -> None:
    ids = list(range(5, 30))
    ds = GPTDataset(make(ids), 4, 2)
    assert ds.token_ids.dtype == torch.long
    assert ds.token_ids.tolist() == ids
    assert ds.num_tokens == len(ids)
    assert ds[1][0].tolist() == ids[2:6]


def test_ids_stored_once_and_items_are_copies() -> None:
    ids = torch.arange(1000)
    ds = GPTDataset(ids, 8, 1)
    # One tensor holds every id; windows are sliced on demand (no per-window storage).
    assert [k for k, v in vars(ds).items() if isinstance(v, torch.Tensor)] == ["token_ids"]
    x, _ = ds[3]
    x[0] = 999_999
    assert ds[3][0][0].item() == 3  # editing a returned window does not change the dataset


def test_negative_and_out_of_range_index() -> None:
    ds = GPTDataset(list(range(20)), 4, 4)
    assert ds[-1][0].tolist() == ds[len(ds) - 1][0].tolist()
    assert ds[torch.tensor(1)][0].tolist() == ds[1][0].tolist()
    assert ds[np.int64(2)][0].tolist() == ds[2][0].tolist()
    with pytest.raises(IndexError, match="windows"):
        ds[len(ds)]
    with pytest.raises(IndexError):
        ds[-len(ds) - 1]
    with pytest.raises(TypeError, match="index"):
        ds[1.0]


def test_text_with_tiktoken_allows_endoftext(enc: tiktoken.Encoding) -> None:
    text = "First document.<|endoftext|>Second document, a little longer than the first."
    ds = GPTDataset(text, 4, 1, tokenizer=enc)
    assert ds.token_ids.tolist() == enc.encode(text, allowed_special={ENDOFTEXT})
    assert ENDOFTEXT_ID in ds.token_ids.tolist()
    assert encode_text(text, enc) == ds.token_ids.tolist()


def test_text_with_course_tokenizers(enc: tiktoken.Encoding) -> None:
    text = "The Congress shall have power.<|endoftext|>We the people"
    want = enc.encode(text, allowed_special={ENDOFTEXT})
    assert GPTDataset(text, 4, 2, tokenizer=gpt2_encoding()).token_ids.tolist() == want
    assert GPTDataset(text, 4, 2, tokenizer=BPETokenizer.from_gpt2()).token_ids.tolist() == want


def test_tokenizer_without_endoftext_encodes_it_as_text() -> None:
    trained = BPETokenizer.train("to be or not to be, that is the question " * 5, 270, special_tokens=())
    text = "to be<|endoftext|>or not"
    assert encode_text(text, trained) == trained.encode(text)
    assert GPTDataset(text, 3, tokenizer=trained).num_tokens == len(trained.encode(text))


def test_too_short_error_says_count_and_fix(enc: tiktoken.Encoding) -> None:
    with pytest.raises(ValueError, match=r"only 3 tokens.*context_length \+ 1 = 9.*context_length <= 2"):
        GPTDataset([1, 2, 3], 8)
    n = len(enc.encode("Hello there"))
    with pytest.raises(ValueError, match=rf"only {n} tokens.*more text"):
        GPTDataset("Hello there", 16, tokenizer=enc)
    with pytest.raises(ValueError, match="only 0 tokens.*use more text"):
        GPTDataset("", 4, tokenizer=enc)


@pytest.mark.parametrize("kwargs, error, pattern", [
    (dict(context_length=0), ValueError, "context_length must be >= 1"),
    (dict(context_length=-2), ValueError, "context_length must be >= 1"),
    (dict(context_length=4, stride=0), ValueError, "stride must be >= 1"),
    (dict(context_length=4.0), TypeError, "context_length must be an int"),
    (dict(context_length=True), TypeError, "context_length must be an int"),
    (dict(context_length=4, stride="2"), TypeError, "stride must be an int"),
])
def test_bad_sizes(kwargs, error, pattern) -> None:
    with pytest.raises(error, match=pattern):
        GPTDataset(list(range(50)), **kwargs)


def test_bad_sources(enc: tiktoken.Encoding) -> None:
    with pytest.raises(TypeError, match="no tokenizer"):
        GPTDataset("some text", 2)
    with pytest.raises(TypeError, match="drop tokenizer"):
        GPTDataset([1, 2, 3, 4], 2, tokenizer=enc)
    with pytest.raises(TypeError, match="tiktoken's interface"):
        GPTDataset("some text", 2, tokenizer=object())
    with pytest.raises(TypeError, match="integers"):
        GPTDataset([0.5, 1.5, 2.5], 1)
    with pytest.raises(TypeError, match="integers"):
        GPTDataset(torch.tensor([True, False, True]), 1)
    with pytest.raises(TypeError, match="ints"):
        GPTDataset(["a", "b", "c"], 1)
    with pytest.raises(TypeError, match="list or 1-D tensor"):
        GPTDataset(42, 1)
    with pytest.raises(ValueError, match="1-D"):
        GPTDataset(torch.zeros(3, 4, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="non-negative"):
        GPTDataset([1, -2, 3, 4], 2)
    with pytest.raises(ValueError, match="num_tokens"):
        num_windows(-1, 2, 2)
    with pytest.raises(TypeError, match="text must be a str"):
        encode_text(b"bytes", enc)


def test_dataloader_shapes_and_targets(enc: tiktoken.Encoding) -> None:
    text = " ".join(f"word{i}" for i in range(300))
    loader = create_dataloader(text, enc, batch_size=4, context_length=16, stride=8, seed=0)
    assert isinstance(loader, DataLoader)
    n_windows = len(loader.dataset)
    assert len(loader) == n_windows // 4
    batches = list(loader)
    assert len(batches) == n_windows // 4
    for x, y in batches:
        assert x.shape == y.shape == (4, 16)
        assert torch.equal(x[:, 1:], y[:, :-1])


def test_dataloader_seed_reproducible() -> None:
    ids = list(range(500))

    def first_column(seed: int | None) -> list[int]:
        loader = create_dataloader(ids, batch_size=5, context_length=4, seed=seed)
        return torch.cat([x[:, 0] for x, _ in loader]).tolist()

    assert first_column(7) == first_column(7)
    assert first_column(7) != first_column(8)
    # The shuffle is a permutation of the window starts (drop_last may cut the tail).
    starts = set(range(0, 496, 4))
    assert set(first_column(7)) <= starts and len(set(first_column(7))) == len(first_column(7))


def test_dataloader_no_shuffle_keeps_order_and_keeps_last() -> None:
    loader = create_dataloader(torch.arange(23), batch_size=2, context_length=4, shuffle=False,
                               drop_last=False)
    starts = torch.cat([x[:, 0] for x, _ in loader]).tolist()
    assert starts == [0, 4, 8, 12, 16]
    assert [len(x) for x, _ in loader] == [2, 2, 1]


def test_dataloader_with_worker() -> None:
    loader = create_dataloader(list(range(64)), batch_size=2, context_length=4, shuffle=False,
                               num_workers=1)
    # 15 windows in batches of 2: the odd last one is dropped
    assert torch.cat([x[:, 0] for x, _ in loader]).tolist() == list(range(0, 56, 4))


def test_works_with_distributed_sampler() -> None:
    ds = GPTDataset(list(range(200)), 8, 8)
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=3)
        loader = DataLoader(ds, batch_size=3, sampler=sampler)
        seen.append(torch.cat([x[:, 0] for x, _ in loader]).tolist())
    assert not set(seen[0]) & set(seen[1])  # the two ranks see different windows
    assert sorted(seen[0] + seen[1]) == list(range(0, 8 * len(ds), 8))


@pytest.mark.parametrize("kwargs, error, pattern", [
    (dict(batch_size=0), ValueError, "batch_size must be >= 1"),
    (dict(batch_size=2.0), TypeError, "batch_size must be an int"),
    (dict(num_workers=-1), ValueError, "num_workers"),
    (dict(num_workers="2"), TypeError, "num_workers"),
    (dict(shuffle="yes"), TypeError, "shuffle"),
    (dict(drop_last=1), TypeError, "drop_last"),
    (dict(seed=1.5), TypeError, "seed"),
    (dict(batch_size=100), ValueError, r"only 12 windows.*batch_size=100"),
    (dict(stride=-1), ValueError, "stride"),
])
def test_dataloader_errors(kwargs, error, pattern) -> None:
    args = dict(context_length=4, batch_size=2) | kwargs
    with pytest.raises(error, match=pattern):
        create_dataloader(list(range(50)), **args)


def test_dataloader_small_batch_without_drop_last_is_fine() -> None:
    loader = create_dataloader(list(range(50)), batch_size=100, context_length=4, drop_last=False)
    assert [x.shape for x, _ in loader] == [(12, 4)]


# ---- chapter 2 exercise checkers: right answers pass, wrong ones fail, stubs read "not attempted"


def good_count(n: int, c: int, s: int) -> int:
    return max(0, (n - c - 1) // s + 1) if n > c else 0


def stub(*_args):
    raise NotImplementedError


@pytest.mark.parametrize("name, good, bad", [
    ("ch02.count_windows", good_count, lambda n, c, s: max(0, (n - c) // s)),
])
def test_exercise_checkers(name, good, bad, capsys) -> None:
    assert check_exercise(name, good) is True
    assert check_exercise(name, bad) is False
    assert check_exercise(name, stub) is False
    out = capsys.readouterr().out
    assert "correct" in out and "not quite" in out and "not attempted" in out
