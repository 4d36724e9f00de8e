"""Benchmarks: ``python -m gpt2_core.bench`` prints speed ratios measured side by side, in one process.

Every row compares the course's code with a reference run on the same machine, in the same
process, on the same inputs (and, for the model, the same weights): Hugging Face ``transformers``
for training and generation, ``tiktoken`` for BPE encoding, a naive recount-every-merge trainer for
BPE training. Timings are medians of several repeats after warm-up, and the runs being compared are
interleaved (ours, theirs, ours, theirs, ...) so that a busy machine slows both alike. Each row also
gives the ratio of process CPU time, which a machine shared with other jobs disturbs less than wall
time. Nothing here is a test: tests check correctness, this reports speed.

Training uses the same optimizer for both models: AdamW with ``fused=True`` (one kernel for all the
parameters; on a CPU it is several times faster than the default per-parameter loop). Our model computes
its loss with ``model(idx, targets=targets)`` (the LM head fused with the cross-entropy, see
``gpt2_core.fused_loss``) when its forward takes ``targets``; transformers' model gets the usual
``F.cross_entropy`` on its logits.
"""

from __future__ import annotations

import argparse
import inspect
import os
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
import torch.nn.functional as F

from .config import GPTConfig
from .model import GPTModel


@dataclass
class Row:
    task: str
    ours: str
    reference: str
    ratio: float  # ours / reference throughput (> 1 means ours is faster)
    note: str = ""


@dataclass
class Timing:
    wall: float  # median wall-clock seconds
    cpu: float  # median process CPU seconds (all threads)


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs, after ``warmup`` untimed runs."""
    return interleaved({"fn": fn}, repeats, warmup)["fn"].wall


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, Timing]:
    """Median wall and CPU time of each function, timed in turns (a, b, a, b, ...) after warm-up.

    Taking turns means that a slowdown from other jobs on the machine hits every function alike,
    so the ratios stay meaningful even when the absolute times do not.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {name: Timing(statistics.median(wall[name]), statistics.median(cpu[name])) for name in fns}


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best measured fp32 matmul throughput of this machine (GFLOP/s): the ceiling for training."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        seconds.append(time.perf_counter() - start)
    return 2 * n**3 / min(seconds) / 1e9  # the fastest run: a peak, not a typical speed


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


def takes_targets(model: torch.nn.Module) -> bool:
    """Whether ``model(idx, targets=...)`` returns the loss (our fused LM head + cross-entropy)."""
    return "targets" in inspect.signature(model.forward).parameters


def make_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    """AdamW, fused into one kernel where this torch supports it; the same for both models."""
    try:
        return torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    except (RuntimeError, TypeError):  # an old torch, or a device without the fused kernel
        return torch.optim.AdamW(model.parameters(), lr=1e-4)


def bench_training(cfg: GPTConfig, batch: int, n_tokens: int, repeats: int, peak: float) -> Row:
    with tempfile.TemporaryDirectory() as tmp:
        ours, theirs = twin_models(cfg, Path(tmp))
    idx = torch.randint(0, cfg.vocab_size, (batch, n_tokens))
    targets = torch.randint(0, cfg.vocab_size, (batch, n_tokens))

    def step_fn(model, loss_fn):
        opt = make_optimizer(model)
        model.train()

        def step():
            opt.zero_grad(set_to_none=True)
            loss_fn(model).backward()
            opt.step()

        return step

    fused = takes_targets(ours)
    if fused:
        ours_loss = lambda m: m(idx, targets=targets)  # noqa: E731
    else:
        ours_loss = lambda m: F.cross_entropy(m(idx).flatten(0, 1), targets.flatten())  # noqa: E731
    theirs_loss = lambda m: F.cross_entropy(m(input_ids=idx).logits.flatten(0, 1), targets.flatten())  # noqa: E731
    # same weights and inputs, so the same loss (dropout is 0): a check that the speed is not bought
    # with a different computation
    loss_gap = abs(ours_loss(ours).item() - theirs_loss(theirs).item())
    t = interleaved({"ours": step_fn(ours, ours_loss), "theirs": step_fn(theirs, theirs_loss)}, repeats)
    t_ours, t_theirs = t["ours"].wall, t["theirs"].wall
    tokens = batch * n_tokens
    flops = training_flops_per_token(cfg, n_tokens, ours.num_parameters()) * tokens
    name = f"train step L{cfg.n_layers}/d{cfg.emb_dim}/T{n_tokens}/B{batch}"
    opt_name = "fused AdamW" if make_optimizer(torch.nn.Linear(1, 1)).defaults.get("fused") else "AdamW"
    return Row(name, f"{tokens / t_ours:,.0f} tok/s", f"{tokens / t_theirs:,.0f} tok/s (transformers)",
               t_theirs / t_ours,
               f"CPU-time ratio {t['theirs'].cpu / t['ours'].cpu:.2f}x; first loss differs by {loss_gap:.1e}; "
               f"{opt_name} for both; ours "
               f"{'fused LM head + loss' if fused else 'logits + F.cross_entropy'}; ours "
               f"{flops / t_ours / 1e9:.0f} GFLOP/s = {flops / t_ours / 1e9 / peak:.0%} of matmul peak, "
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
    t = interleaved({"cache": lambda: generate(ours, idx, new_tokens, use_cache=True),
                     "recompute": lambda: generate(ours, idx, new_tokens, use_cache=False),
                     "hf": hf}, repeats)
    t_cache, t_recompute, t_hf = t["cache"].wall, t["recompute"].wall, t["hf"].wall
    label = f"greedy generation L{cfg.n_layers}/d{cfg.emb_dim}, {prompt_len}+{new_tokens} tokens"
    return [
        Row(label, f"{new_tokens / t_cache:,.0f} tok/s (KV cache)", f"{new_tokens / t_hf:,.0f} tok/s "
            "(transformers.generate, cache)", t_hf / t_cache,
            f"identical tokens: {same}; CPU-time ratio {t['hf'].cpu / t['cache'].cpu:.2f}x; per token "
            f"{t_cache / new_tokens * 1e3:.1f} ms vs {t_hf / new_tokens * 1e3:.1f} ms"),
        Row(label, f"{new_tokens / t_cache:,.0f} tok/s (KV cache)",
            f"{new_tokens / t_recompute:,.0f} tok/s (our recomputation)", t_recompute / t_cache,
            f"CPU-time ratio {t['recompute'].cpu / t['cache'].cpu:.2f}x"),
    ]


def bench_bpe(n_chars: int, vocab_size: int, naive_chars: int, repeats: int) -> list[Row]:
    from .corpus import sample_text
    from .tokenizer import BPETokenizer, gpt2_encoding

    text = sample_text(n_chars)
    gpt2, theirs = BPETokenizer.from_gpt2(), gpt2_encoding()
    # a fresh tokenizer for every timed encode: its chunk cache starts empty (a cold cache), as tiktoken's does
    fresh = [BPETokenizer(gpt2.ranks, gpt2.special_tokens) for _ in range(repeats + 2)]
    same = fresh.pop().encode(text) == theirs.encode(text, disallowed_special=())
    t = interleaved({"ours": lambda: fresh.pop().encode(text),
                     "tiktoken": lambda: theirs.encode(text, disallowed_special=())}, repeats)
    t_ours, t_tik = t["ours"].wall, t["tiktoken"].wall
    mb = len(text.encode("utf-8")) / 1e6
    rows = [Row(f"BPE encode {mb:.1f} MB (cold cache)", f"{mb / t_ours:.2f} MB/s", f"{mb / t_tik:.2f} MB/s (tiktoken)",
                t_tik / t_ours, f"identical ids: {same}; CPU-time ratio {t['tiktoken'].cpu / t['ours'].cpu:.2f}x")]
    t_train = median_time(lambda: BPETokenizer.train(text, vocab_size), 1, warmup=0)
    small = text[:naive_chars]
    small_vocab = 256 + 200
    t = interleaved({"fast": lambda: BPETokenizer.train(small, small_vocab),
                     "naive": lambda: BPETokenizer.train_naive(small, small_vocab)}, 1, warmup=0)
    same_merges = BPETokenizer.train(small, small_vocab).merges == BPETokenizer.train_naive(small, small_vocab).merges
    rows.append(Row(f"BPE train {vocab_size} vocab on {mb:.1f} MB", f"{t_train:.1f} s", "target <= 10 s",
                    10.0 / t_train))
    rows.append(Row(f"BPE train {small_vocab} vocab on {len(small) // 1000} kB", f"{t['fast'].wall:.2f} s",
                    f"{t['naive'].wall:.2f} s (naive recount per merge)", t["naive"].wall / t["fast"].wall,
                    f"identical merges: {same_merges}"))
    return rows


def bench_notebooks() -> Row:
    """Wall time of the whole course under nbval at the tiny profile (what CI runs)."""
    root = Path(__file__).resolve().parent.parent
    notebooks = sorted(str(p) for p in (root / "notebooks").glob("[0-9]*.ipynb"))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                           "--nbval-sanitize-with", str(root / "tests" / "nbval_sanitize.cfg"), *notebooks],
                          cwd=root, env={**os.environ, "GPT2_COURSE_PROFILE": "tiny"},
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    return Row(f"all {len(notebooks)} notebooks, nbval, tiny profile", f"{seconds:.0f} s", "target <= 300 s",
               300 / seconds, "passed" if done.returncode == 0 else "FAILED: " + done.stdout[-300:])


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} "
            f"torch threads, torch {torch.__version__}, python {platform.python_version()}")


def load_average() -> str:
    """The 1-minute load average against the core count: above the core count, the machine is shared."""
    try:
        return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    except OSError:  # not available on this platform
        return "load average unknown"


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
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    parts = args.only or ["train", "generate", "bpe", "notebooks"]
    torch.manual_seed(0)
    peak = matmul_peak_gflops()
    print(f"machine: {machine()}; measured fp32 matmul peak {peak:.0f} GFLOP/s; "
          f"date {time.strftime('%Y-%m-%d')}; medians of {args.repeats} interleaved runs; {load_average()}",
          flush=True)
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
    print(f"at the end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
