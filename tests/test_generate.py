"""Tests for gpt2_core.model.generation (greedy/sampling, KV cache parity, eos, helpers) and its command line,
gpt2_core.course.generate (each model read with its own tokenizer; usage errors in one line, exit status 2)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import tiktoken
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2_core.course.generate import main
from gpt2_core.course.reference import load_reference
from gpt2_core.model.config import GPTConfig
from gpt2_core.model.generation import (
    generate,
    generate_text,
    ids_to_text,
    sample_next_token,
    text_to_ids,
    top_k_filter,
    top_p_filter,
)
from gpt2_core.model.gpt import GPTModel
from gpt2_core.model.hf_weights import save_hf
from gpt2_core.pretraining.checkpoint import save_checkpoint
from gpt2_core.text.ranks import ENDOFTEXT, ENDOFTEXT_ID, GPT2_PATTERN, gpt2_encoding, gpt2_ranks

CTX = 16
VOCAB = 97


@pytest.fixture(scope="module")
def model() -> GPTModel:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=VOCAB, context_length=CTX, emb_dim=32, n_heads=2, n_layers=2, drop_rate=0.1)
    m = GPTModel(cfg)
    # larger-than-GPT-2 init so logits are spread out and greedy choices are far from ties
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(10.0)
    return m


class ByteTokenizer:
    """A stand-in tokenizer with tiktoken's interface: one id per UTF-8 byte (ids 0..255), no special tokens."""

    n_vocab = 256
    special_tokens_set: set[str] = set()

    def encode_ordinary(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    encode = encode_ordinary  # it knows no special tokens

    def decode(self, ids: list[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


def _prompt(batch: int, length: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (batch, length), generator=g)


# --- cache parity ------------------------------------------------------------------------------

@pytest.mark.parametrize("batch", [1, 2])
def test_greedy_cache_equals_recompute_within_context(model, batch):
    for length in range(1, CTX):
        idx = _prompt(batch, length, seed=length)
        new = CTX - length  # fills the window exactly, never slides
        cached = generate(model, idx, new, use_cache=True)
        recomputed = generate(model, idx, new, use_cache=False)
        assert cached.shape == (batch, length + new)
        assert torch.equal(cached, recomputed), f"prompt length {length}"
        assert torch.equal(cached[:, :length], idx)


@pytest.mark.parametrize("batch", [1, 2])
def test_greedy_cache_equals_recompute_past_context(model, batch):
    # prompts shorter than, equal to and longer than the window; generation runs well past it
    for length in (1, 5, CTX - 1, CTX, CTX + 7):
        idx = _prompt(batch, length, seed=100 + length)
        cached = generate(model, idx, 2 * CTX, use_cache=True)
        recomputed = generate(model, idx, 2 * CTX, use_cache=False)
        assert cached.shape == (batch, length + 2 * CTX)
        assert torch.equal(cached, recomputed), f"prompt length {length}"


def test_sampling_cache_equals_recompute(model):
    idx = _prompt(2, 3, seed=7)
    a = generate(model, idx, 2 * CTX, temperature=1.0, top_k=20, use_cache=True,
                 generator=torch.Generator().manual_seed(5))
    b = generate(model, idx, 2 * CTX, temperature=1.0, top_k=20, use_cache=False,
                 generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_greedy_matches_step_by_step_argmax(model):
    # independent reference: the textbook loop, written out here
    idx = _prompt(1, 4, seed=3)
    expected = idx.clone()
    model.eval()
    with torch.no_grad():
        for _ in range(CTX + 3):
            logits = model(expected[:, -CTX:])[:, -1]
            expected = torch.cat([expected, logits.argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(generate(model, idx, CTX + 3), expected)


# --- sampling ----------------------------------------------------------------------------------

def test_seeded_sampling_is_reproducible_and_seed_dependent(model):
    idx = _prompt(2, 4, seed=11)

    def run(seed: int) -> torch.Tensor:
        return generate(model, idx, 12, temperature=1.5, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_top_k_one_and_tiny_top_p_equal_greedy(model):
    idx = _prompt(2, 5, seed=13)
    greedy = generate(model, idx, 10)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(generate(model, idx, 10, temperature=2.0, top_k=1, generator=g), greedy)
    assert torch.equal(generate(model, idx, 10, temperature=2.0, top_p=1e-6, generator=g), greedy)


def test_top_k_filter_keeps_k_largest():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0]])
    out = top_k_filter(logits, 2)
    assert torch.isinf(out).tolist() == [[True, False, True, False, True]]
    assert torch.equal(top_k_filter(logits, 99), logits)  # k beyond the vocabulary keeps everything


def test_top_p_filter_keeps_smallest_nucleus():
    probs = torch.tensor([[0.1, 0.5, 0.25, 0.15]])
    logits = probs.log()
    # mass before each (sorted 0.5, 0.25, 0.15, 0.1): 0, 0.5, 0.75, 0.9
    kept = lambda p: (~torch.isinf(top_p_filter(logits, p))).tolist()[0]  # noqa: E731
    assert kept(0.5) == [False, True, False, False]
    assert kept(0.6) == [False, True, True, False]
    assert kept(0.8) == [False, True, True, True]
    assert kept(1.0) == [True, True, True, True]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), p=st.floats(0.01, 0.99), vocab=st.integers(2, 40))
def test_top_p_nucleus_is_smallest_set_reaching_p(seed, p, vocab):
    logits = torch.randn(1, vocab, generator=torch.Generator().manual_seed(seed)).double() * 3
    probs = torch.softmax(logits, -1)[0]
    kept = ~torch.isinf(top_p_filter(logits, p))[0]
    mass = probs[kept].sum()
    # (the filter works in float32, hence the tolerance)
    assert mass >= p - 1e-5  # enough probability...
    assert mass - probs[kept].min() < p + 1e-5  # ...and dropping its least likely token would not be
    if (~kept).any():  # the kept tokens are the most likely ones
        assert probs[kept].min() >= probs[~kept].max()


def test_samples_only_from_kept_tokens():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    allowed = ~torch.isinf(top_k_filter(logits, 3))
    g = torch.Generator().manual_seed(1)
    for _ in range(50):
        tok = sample_next_token(logits, temperature=5.0, top_k=3, generator=g)
        assert allowed[torch.arange(4), tok].all()


def test_temperature_zero_is_argmax_and_ignores_generator():
    logits = torch.randn(3, 20, generator=torch.Generator().manual_seed(4))
    assert torch.equal(sample_next_token(logits), logits.argmax(-1))


# --- eos, modes, edge cases --------------------------------------------------------------------

def test_eos_stops_and_pads(model):
    idx = _prompt(2, 3, seed=17)
    free = generate(model, idx, 10)
    eos = int(free[0, 3 + 2])  # row 0 emits this token at its 3rd new step
    out = generate(model, idx, 10, eos_id=eos)
    new = out[:, 3:]
    for row in range(2):
        hits = (new[row] == eos).nonzero()
        if len(hits):  # once eos appears, the row is eos to the end
            first = int(hits[0])
            assert (new[row, first:] == eos).all()
            assert torch.equal(new[row, :first], free[row, 3:3 + first])
    # generation stops when every row is done: all rows end with eos, or it ran the full length
    assert out.shape[1] == 13 or (out[:, -1] == eos).all()
    # a single row that hits eos stops right there
    single = generate(model, idx[:1], 10, eos_id=eos)
    assert single.shape[1] <= 3 + 3 and single[0, -1] == eos


def test_eos_stops_early_when_all_rows_finish(model):
    idx = _prompt(1, 4, seed=19)
    first = int(generate(model, idx, 1)[0, -1])
    out = generate(model, idx, 20, eos_id=first)
    assert out.shape == (1, 5) and out[0, -1] == first


def test_restores_training_mode_and_leaves_no_grad(model):
    model.train()
    out = generate(model, _prompt(1, 2, seed=1), 3)
    assert model.training
    model.eval()
    generate(model, _prompt(1, 2, seed=1), 3)
    assert not model.training
    assert not out.requires_grad and out.dtype == torch.long


def test_zero_new_tokens_returns_prompt(model):
    idx = _prompt(2, 4, seed=23)
    out = generate(model, idx, 0)
    assert torch.equal(out, idx) and out is not idx


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(temperature=-0.1), ValueError, "temperature"),
    (dict(temperature=float("nan")), ValueError, "temperature"),
    (dict(top_k=0), ValueError, "top_k"),
    (dict(top_k=2.5), TypeError, "top_k"),
    (dict(top_p=0.0), ValueError, "top_p"),
    (dict(top_p=1.5), ValueError, "top_p"),
    (dict(max_new_tokens=-1), ValueError, "max_new_tokens"),
    (dict(max_new_tokens=2.0), TypeError, "max_new_tokens"),
    (dict(eos_id=VOCAB), ValueError, "eos_id"),
    (dict(idx=torch.tensor([[1.0, 2.0]])), TypeError, "LongTensor"),
    (dict(idx=[[1, 2]]), TypeError, "LongTensor"),
    (dict(idx=torch.tensor([1, 2])), ValueError, "batch, tokens"),
    (dict(idx=torch.zeros(1, 0, dtype=torch.long)), ValueError, "empty"),
])
def test_argument_errors(model, kwargs, error, match):
    args = dict(idx=torch.tensor([[1, 2]]), max_new_tokens=3)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        generate(model, **args)


# --- text helpers ------------------------------------------------------------------------------

def test_text_helpers_round_trip_with_gpt2_encoding():
    enc = tiktoken.Encoding(name="gpt2-test", pat_str=GPT2_PATTERN, mergeable_ranks=gpt2_ranks(),
                            special_tokens={ENDOFTEXT: ENDOFTEXT_ID})
    text = f"Hello, world!{ENDOFTEXT} Again"
    ids = text_to_ids(text, enc)
    assert ids.dtype == torch.long and ids.shape == (1, len(enc.encode(text, allowed_special="all")))
    assert ENDOFTEXT_ID in ids[0].tolist()
    assert ids_to_text(ids, enc) == text
    assert ids_to_text(ids[0], enc) == text
    assert ids_to_text(ids[0].tolist(), enc) == text


def test_text_helper_errors():
    tok = ByteTokenizer()
    with pytest.raises(TypeError, match="str"):
        text_to_ids(b"bytes", tok)
    with pytest.raises(ValueError, match="one sequence"):
        ids_to_text(torch.zeros(2, 3, dtype=torch.long), tok)
    with pytest.raises(ValueError, match=r"id -100 .*loss ignores"):  # not an OverflowError deep in decode
        ids_to_text([5, -100], gpt2_encoding())
    with pytest.raises(ValueError, match="id 256 is not a token"):
        ids_to_text([256], tok)


def test_generate_text(model):
    tok = ByteTokenizer()  # the model knows ids 0..96, so the prompt and output are low ASCII bytes
    prompt = "\x01\x02\x03"
    text = generate_text(model, tok, prompt, 5)
    assert text.startswith(prompt)
    ids = text_to_ids(text, tok)
    assert torch.equal(ids, generate(model, text_to_ids(prompt, tok), 5))
    with pytest.raises(ValueError, match="empty"):
        generate_text(model, tok, "", 5)


# --- CLI ---------------------------------------------------------------------------------------

def test_cli_help_exits_zero(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--checkpoint", "--hf", "--pretrained", "--prompt", "--max-new-tokens", "--temperature",
                 "--top-k", "--top-p", "--seed", "--no-cache"):
        assert flag in out


def test_cli_help_as_module():
    result = subprocess.run([sys.executable, "-m", "gpt2_core.course.generate", "--help"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and "--checkpoint" in result.stdout


def test_cli_without_model_source_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--prompt", "hi"])
    assert exit_info.value.code == 2
    assert "no model given" in capsys.readouterr().err


def test_cli_bad_sampling_setting(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", "x", "--temperature", "-1"])
    assert exit_info.value.code == 2
    assert "temperature" in capsys.readouterr().err


def test_cli_reads_a_checkpoint_with_the_tokenizer_it_was_trained_with(tmp_path, capsys):
    """The reference model with its own 8,192-token tokenizer: decoding it with GPT-2's gave gibberish."""
    model, tok = load_reference("cpu")
    save_checkpoint(tmp_path / "ckpt", model, tokenizer=tok)
    assert main(["--checkpoint", str(tmp_path / "ckpt"), "--prompt", "The Congress of the United States",
                 "--max-new-tokens", "8"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == generate_text(model, tok, "The Congress of the United States", 8)
    assert out != generate_text(model, gpt2_encoding(), "The Congress", 8)  # what the old tool printed


def test_cli_reads_a_gpt2_tokenizer_checkpoint(tmp_path, capsys):
    torch.manual_seed(0)
    model = GPTModel(GPTConfig(context_length=16, emb_dim=16, n_heads=2, n_layers=1))
    save_checkpoint(tmp_path / "ckpt", model, tokenizer=gpt2_encoding())
    code = main(["--checkpoint", str(tmp_path / "ckpt"), "--prompt", "Hello", "--max-new-tokens", "4",
                 "--temperature", "1.0", "--top-k", "5"])
    assert code == 0
    assert capsys.readouterr().out.startswith("Hello")


def test_cli_refuses_a_checkpoint_that_records_no_tokenizer(tmp_path, capsys):
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "ckpt", GPTModel(GPTConfig(context_length=16, emb_dim=16, n_heads=2, n_layers=1)))
    assert main(["--checkpoint", str(tmp_path / "ckpt")]) == 1
    err = capsys.readouterr().err
    assert "does not record its tokenizer" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv, env, match", [
    (["--reference", "--max-new-tokens", "-1"], {}, "--max-new-tokens: must be >= 0"),
    (["--reference", "--prompt", ""], {}, "--prompt is empty"),
    (["--reference", "--top-p", "2"], {}, "--top-p: must be"),
    (["--reference"], {"GPT2_COURSE_PROFILE": "huge"}, "GPT2_COURSE_PROFILE='huge' is not a profile"),
    (["--reference"], {"GPT2_COURSE_DEVICE": "cuda"}, "CUDA is not available"),
])
def test_cli_usage_errors_are_one_line_and_exit_2(argv, env, match, capsys, monkeypatch):
    if env.get("GPT2_COURSE_DEVICE") == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and match in err[-1] and not any("Traceback" in line for line in err)


def test_cli_missing_checkpoint(tmp_path, capsys):
    code = main(["--checkpoint", str(tmp_path / "nope")])
    assert code == 1
    assert "no checkpoint" in capsys.readouterr().err


def test_cli_generates_from_hf_directory(tmp_path, capsys):
    torch.manual_seed(0)
    model = GPTModel(GPTConfig(context_length=16, emb_dim=16, n_heads=2, n_layers=1))
    save_hf(model, tmp_path / "hf")
    code = main(["--hf", str(tmp_path / "hf"), "--prompt", "Hello", "--max-new-tokens", "3", "--no-cache"])
    assert code == 0
    out = capsys.readouterr().out.strip()
    expected = generate_text(model, gpt2_encoding(), "Hello", 3)  # greedy: same text as the CLI
    assert out == expected


def test_cli_refuses_a_hf_model_whose_vocabulary_is_not_gpt2s(tmp_path, capsys):
    save_hf(GPTModel(GPTConfig(vocab_size=300, context_length=16, emb_dim=16, n_heads=2, n_layers=1)), tmp_path)
    assert main(["--hf", str(tmp_path)]) == 1
    assert "not GPT-2's" in capsys.readouterr().err


def test_cli_prompt_file_is_read_as_utf8_text(tmp_path, capsys):
    """A long, multi-line or non-ASCII prompt from a file: the same text as --prompt, less the editor's final
    line break (and a byte-order mark some Windows editors write)."""
    model, tok = load_reference("cpu")
    prompt = "Mr. Speaker, Mr. Vice President,\nMembers of Congress — señores y señoras:"
    (tmp_path / "prompt.txt").write_bytes(b"\xef\xbb\xbf" + (prompt + "\n").encode("utf-8"))
    assert main(["--reference", "--prompt-file", str(tmp_path / "prompt.txt"), "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.strip() == generate_text(model, tok, prompt, 4)


@pytest.mark.parametrize("content, match", [
    (None, "no such file"),
    (b"", "is empty"),
    (b" \n\n\t", "is empty"),
    (b"caf\xe9 latin-1", "is not UTF-8 text \\(byte 3 is 0xe9\\); save it as UTF-8"),
    ("folder", "is a folder"),
])
def test_cli_bad_prompt_files_are_one_line_usage_errors(tmp_path, capsys, content, match):
    path = tmp_path / "prompt.txt"
    if content == "folder":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(SystemExit) as exit_info:
        main(["--reference", "--prompt-file", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and re.search(match, err[-1]) and str(path) in err[-1]
    assert not any("Traceback" in line for line in err)


def test_cli_prompt_and_prompt_file_are_one_or_the_other(tmp_path, capsys):
    (tmp_path / "p.txt").write_text("Hello")
    with pytest.raises(SystemExit) as exit_info:
        main(["--reference", "--prompt", "Hi", "--prompt-file", str(tmp_path / "p.txt")])
    assert exit_info.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
