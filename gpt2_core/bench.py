"""Benchmarks: ``python -m gpt2_core.bench`` prints speed ratios measured side by side, in one process.

Every row compares the course's code with a reference run on the same machine, in the same
process, on the same inputs (and, for the model, the same weights): Hugging Face ``transformers``
for training and generation, ``tiktoken`` for BPE encoding, a naive recount-every-merge trainer for
BPE training. Timings are medians of several repeats after warm-up. Nothing here is a test: tests
check correctness, this reports speed.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import GPTConfig
from .model import GPTModel


@dataclass
class Row:
    task: str
    ours: str
    reference: str
    ratio: float  # ours / reference throughput (> 1 means ours is faster)
    note: str = ""


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs, after ``warmup`` untimed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Measured fp32 matmul throughput of this machine (GFLOP/s): the ceiling for training."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    seconds = median_time(lambda: a @ b, repeats, warmup=2)
    return 2 * n**3 / seconds / 1e9


def training_flops_per_token(cfg: GPTConfig, n_tokens: int, n_params: int) -> float:
    """6N for the weight matmuls (forward + backward) plus the attention score/value matmuls."""
    attention = 12 * cfg.n_layers * cfg.emb_dim * n_tokens  # 2 matmuls x 3 (fwd+bwd) x 2 flops, causal not exploited
    return 6 * n_params + attention


def twin_models(cfg: GPTConfig, tmp: Path):
    """Our GPTModel and transformers' GPT2LMHeadModel holding identical weights (via the HF export)."""
    from transformers import GPT2LMHeadModel

    torch.manual_seed(0)
    ours = GPTModel(cfg)
    ours.save_hf(tmp)
    theirs = GPT2LMHeadModel.from_pretrained(tmp)
    return ours, theirs


def bench_training(cfg: GPTConfig, batch: int, n_tokens: int, repeats: int, peak: float) -> Row:
    with tempfile.TemporaryDirectory() as tmp:
        ours, theirs = twin_models(cfg, Path(tmp))
    idx = torch.randint(0, cfg.vocab_size, (batch, n_tokens))
    targets = torch.randint(0, cfg.vocab_size, (batch, n_tokens))

    def step_fn(model, forward):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        model.train()

        def step():
            opt.zero_grad(set_to_none=True)
            forward(model).backward()
            opt.step()

        return step

    loss_fn = torch.nn.functional.cross_entropy
    ours_step = step_fn(ours, lambda m: loss_fn(m(idx).flatten(0, 1), targets.flatten()))
    theirs_step = step_fn(theirs, lambda m: loss_fn(m(input_ids=idx).logits.flatten(0, 1), targets.flatten()))
    t_ours = median_time(ours_step, repeats)
    t_theirs = median_time(theirs_step, repeats)
    tokens = batch * n_tokens
    flops = training_flops_per_token(cfg, n_tokens, ours.num_parameters()) * tokens
    name = f"train step L{cfg.n_layers}/d{cfg.emb_dim}/T{n_tokens}/B{batch}"
    return Row(name, f"{tokens / t_ours:,.0f} tok/s", f"{tokens / t_theirs:,.0f} tok/s (transformers)",
               t_theirs / t_ours,
               f"ours {flops / t_ours / 1e9:.0f} GFLOP/s = {flops / t_ours / 1e9 / peak:.0%} of matmul peak; "
               f"transformers {flops / t_theirs / 1e9 / peak:.0%}")


def bench_generation(cfg: GPTConfig, prompt_len: int, new_tokens: int, repeats: int) -> list[Row]:
    from .generate import generate

    with tempfile.TemporaryDirectory() as tmp:
        ours, theirs = twin_models(cfg, Path(tmp))
    ours.eval()
    theirs.eval()
    idx = torch.randint(0, cfg.vocab_size, (1, prompt_len))
    # no eos: every run produces exactly new_tokens tokens
    theirs.generation_config.pad_token_id = 0
    theirs.generation_config.eos_token_id = None

    def hf():
        with torch.inference_mode():
            return theirs.generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=new_tokens,
                                   min_new_tokens=new_tokens, do_sample=False, use_cache=True)

    same = torch.equal(generate(ours, idx, new_tokens), hf())
    t_cache = median_time(lambda: generate(ours, idx, new_tokens, use_cache=True), repeats)
    t_recompute = median_time(lambda: generate(ours, idx, new_tokens, use_cache=False), repeats)
    t_hf = median_time(hf, repeats)
    label = f"greedy generation L{cfg.n_layers}/d{cfg.emb_dim}, {prompt_len}+{new_tokens} tokens"
    return [
        Row(label, f"{new_tokens / t_cache:,.0f} tok/s (KV cache)", f"{new_tokens / t_hf:,.0f} tok/s "
            "(transformers.generate)", t_hf / t_cache, f"identical tokens: {same}"),
        Row(label, f"{new_tokens / t_cache:,.0f} tok/s (KV cache)",
            f"{new_tokens / t_recompute:,.0f} tok/s (our recomputation)", t_recompute / t_cache),
    ]


def bench_bpe(n_chars: int, vocab_size: int, naive_chars: int, repeats: int) -> list[Row]:
    from .corpus import sample_text
    from .tokenizer import BPETokenizer, gpt2_encoding, train_naive

    text = sample_text(n_chars)
    ours, theirs = BPETokenizer.from_gpt2(), gpt2_encoding()

    def encode_ours():
        ours.clear_cache()
        return ours.encode(text)

    same = encode_ours() == theirs.encode(text, disallowed_special=())
    t_ours = median_time(encode_ours, repeats)
    t_tik = median_time(lambda: theirs.encode(text, disallowed_special=()), repeats)
    mb = len(text.encode("utf-8")) / 1e6
    rows = [Row(f"BPE encode {mb:.1f} MB (cold cache)", f"{mb / t_ours:.2f} MB/s", f"{mb / t_tik:.2f} MB/s (tiktoken)",
                t_tik / t_ours, f"identical ids: {same}")]
    t_train = median_time(lambda: BPETokenizer.train(text, vocab_size), 1, warmup=0)
    small = text[:naive_chars]
    small_vocab = 256 + 200
    t_fast_small = median_time(lambda: BPETokenizer.train(small, small_vocab), 1, warmup=0)
    t_naive_small = median_time(lambda: train_naive(small, small_vocab), 1, warmup=0)
    rows.append(Row(f"BPE train {vocab_size} vocab on {mb:.1f} MB", f"{t_train:.1f} s", "target <= 10 s",
                    10.0 / t_train))
    rows.append(Row(f"BPE train {small_vocab} vocab on {len(small) // 1000} kB", f"{t_fast_small:.2f} s",
                    f"{t_naive_small:.2f} s (naive recount per merge)", t_naive_small / t_fast_small))
    return rows


def bench_notebooks() -> Row:
    """Wall time of the whole course under nbval at the tiny profile (what CI runs)."""
    root = Path(__file__).resolve().parent.parent
    notebooks = sorted(str(p) for p in (root / "notebooks").glob("[0-9]*.ipynb"))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                           "--nbval-sanitize-with", str(root / "notebooks" / "nbval_sanitize.cfg"), *notebooks],
                          cwd=root, env={**__import__("os").environ, "GPT2_COURSE_PROFILE": "tiny"},
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    return Row(f"all {len(notebooks)} notebooks, nbval, tiny profile", f"{seconds:.0f} s", "target <= 300 s",
               300 / seconds, "passed" if done.returncode == 0 else "FAILED: " + done.stdout[-300:])


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__}, python {platform.python_version()}")


def print_table(rows: list[Row]) -> None:
    print("| task | ours | reference | ratio (ours/ref speed) | note |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r.task} | {r.ours} | {r.reference} | {r.ratio:.2f}x | {r.note} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpt2_core.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["train", "generate", "bpe", "notebooks"], action="append",
                        help="run only these parts (repeatable); default: all")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement (median)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args(argv)
    parts = args.only or ["train", "generate", "bpe", "notebooks"]
    torch.manual_seed(0)
    peak = matmul_peak_gflops()
    print(f"machine: {machine()}; measured fp32 matmul peak {peak:.0f} GFLOP/s; "
          f"date {time.strftime('%Y-%m-%d')}; medians of {args.repeats} runs")
    rows: list[Row] = []
    small = GPTConfig(context_length=128, emb_dim=256, n_heads=4, n_layers=4, drop_rate=0.0)
    gpt2 = GPTConfig.preset("gpt2", drop_rate=0.0)
    if "train" in parts:
        rows.append(bench_training(small, 8, 128, args.repeats, peak))
        if not args.quick:
            rows.append(bench_training(gpt2, 2, 256, args.repeats, peak))
    if "generate" in parts:
        rows += bench_generation(small if args.quick else gpt2, 16, 32 if args.quick else 64, args.repeats)
    if "bpe" in parts:
        rows += bench_bpe(200_000 if args.quick else 1_000_000, 5000, 20_000, max(1, args.repeats // 2))
    if "notebooks" in parts:
        rows.append(bench_notebooks())
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
