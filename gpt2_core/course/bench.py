"""Benchmarks: ``python -m gpt2_core.course.bench`` prints speed ratios measured side by side, in one process.

Every row compares the course's code with a reference run on the same machine, in the same
process, on the same inputs (and, for the model, the same weights): Hugging Face ``transformers``
for training and generation, ``tiktoken`` for BPE encoding, a naive recount-every-merge trainer for
BPE training. Timings are medians of several repeats after warm-up, and the runs being compared are
interleaved (ours, theirs, ours, theirs, ...) so that a busy machine slows both alike. Each row also
gives the ratio of process CPU time, which a machine shared with other jobs disturbs less than wall
time. Nothing here is a test: tests check correctness, this reports speed.

Training runs both models through the very step every course run takes
(:func:`gpt2_core.pretraining.step.train_step`: forward, backward, gradient clipping at 1.0, the fused
AdamW of :func:`gpt2_core.pretraining.optim.make_optimizer`), so the only difference is the model and its
loss: ours computes ``model(idx, targets=targets)`` (the LM head fused with the cross-entropy, see
``gpt2_core.model.fused_loss``), transformers' model gets the usual ``F.cross_entropy`` on its logits.
Generation compares :func:`gpt2_core.model.generation.generate` with ``transformers``' ``generate``
(greedy, with its KV cache) on identical weights, and checks that the tokens are identical.

``--device cpu`` (the default) measures in float32 without compiling. ``--device cuda`` measures what a
GPU run uses: the training step of GPT-2 124M at T=1024 under bf16 autocast and ``torch.compile`` for
both models, with MFU against the card's dense bf16 peak (:mod:`gpt2_core.pretraining.flops`; ``--peak-tflops``
overrides it); our generation with its compiled one-token step (CUDA graphs; float32, so that the
tokens can be compared); and the steady-state throughput of ``python -m gpt2_core.course.train --profile gpt2``.
Both devices run the same functions with these settings switched.

``--write results/bench-cpu.json`` (or ``results/bench-cuda.json``) also writes the rows, the machine and
the command to that file; ``python -m gpt2_core.course.results`` renders the README's performance table from it,
so the README's speed numbers are generated like its results table.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import re
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

from ..files import write_json
from ..model.config import GPTConfig
from ..model.generation import generate
from ..model.gpt import GPTModel
from ..model.hf_weights import save_hf
from ..pretraining.flops import peak_flops, synchronizer, training_flops_per_token
from ..pretraining.optim import make_optimizer
from ..pretraining.step import lm_loss, train_step
from ..text.bpe import BPETokenizer
from ..text.corpus import sample_text
from ..text.ranks import gpt2_encoding
from .results import bench_rows_table


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


def _median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
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


def _twin_models(cfg: GPTConfig, tmp: Path, device: torch.device | str = "cpu"):
    """Our GPTModel and transformers' GPT2LMHeadModel holding identical weights (via the HF export)."""
    # imported here: transformers is a test-time reference, installed by `make test`/`make bench` only
    from transformers import GPT2LMHeadModel

    torch.manual_seed(0)
    ours = GPTModel(cfg)
    save_hf(ours, tmp)
    theirs = GPT2LMHeadModel.from_pretrained(tmp, attn_implementation="sdpa")
    return ours.to(device), theirs.to(device)


def _bench_training(cfg: GPTConfig, batch: int, n_tokens: int, repeats: int, peak: float, peak_name: str,
                   device: torch.device, bf16: bool = False, compile: bool = False) -> Row:
    """Tokens/s of one training step (:func:`~gpt2_core.pretraining.step.train_step`), ours against transformers."""
    with tempfile.TemporaryDirectory() as tmp:
        ours, theirs = _twin_models(cfg, Path(tmp), device)
    idx = torch.randint(0, cfg.vocab_size, (batch, n_tokens), device=device)
    targets = torch.randint(0, cfg.vocab_size, (batch, n_tokens), device=device)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    def theirs_loss(m, batch):  # noqa: ANN001, ANN202
        x, y = batch
        return F.cross_entropy(m(input_ids=x).logits.flatten(0, 1).float(), y.flatten())

    # same weights and inputs, so the same loss (dropout is 0; float32, eager): a check that the speed
    # is not bought with a different computation
    with torch.no_grad():
        loss_gap = abs(lm_loss(ours, (idx, targets)).item() - theirs_loss(theirs, (idx, targets)).item())

    def stepper(model: torch.nn.Module, loss_fn) -> Callable[[], float]:  # noqa: ANN001
        optimizer = make_optimizer(model, lr=1e-4)
        run = torch.compile(model) if compile else model
        model.train()
        return lambda: train_step(run, optimizer, [(idx, targets)], autocast=autocast, grad_clip=1.0,
                                  loss_fn=loss_fn)  # reads the loss: a sync, so the GPU's work is timed

    # compiling happens in the warm-up runs (the second one catches any recompile)
    t = interleaved({"ours": stepper(ours, lm_loss), "theirs": stepper(theirs, theirs_loss)}, repeats,
                    warmup=2 if compile else 1)
    t_ours, t_theirs = t["ours"].wall, t["theirs"].wall
    tokens = batch * n_tokens
    flops = training_flops_per_token(cfg, n_tokens, ours.num_parameters()) * tokens
    settings = ", ".join([*(["bf16 autocast"] if bf16 else []), *(["compiled"] if compile else []),
                          "grad clip 1.0, fused AdamW"])
    name = f"train step L{cfg.n_layers}/d{cfg.emb_dim}/T{n_tokens}/B{batch}"
    return Row(name, f"{tokens / t_ours:,.0f} tok/s", f"{tokens / t_theirs:,.0f} tok/s (transformers)",
               t_theirs / t_ours,
               f"CPU-time ratio {t['theirs'].cpu / t['ours'].cpu:.2f}x; first loss differs by {loss_gap:.1e}; "
               f"{settings} for both, through pretraining.step.train_step; ours fused LM head + loss; MFU ours "
               f"{flops / t_ours / peak:.1%}, transformers {flops / t_theirs / peak:.1%} of the {peak_name}")


def _bench_generation(cfg: GPTConfig, prompt_len: int, new_tokens: int, repeats: int,
                     device: torch.device, batch: int = 1, compile: bool = False,
                     recompute: bool = False) -> list[Row]:
    """Greedy generation, ours (KV cache; ``compile``: compiled one-token step) against transformers.generate."""
    with tempfile.TemporaryDirectory() as tmp:
        ours, theirs = _twin_models(cfg, Path(tmp), device)
    ours.eval()
    theirs.eval()
    sync = synchronizer(device)
    idx = torch.randint(0, cfg.vocab_size, (batch, prompt_len), device=device)
    # no eos: every run produces exactly new_tokens tokens
    theirs.generation_config.pad_token_id = 0
    theirs.generation_config.eos_token_id = None

    def hf():  # noqa: ANN202
        with torch.inference_mode():
            out = theirs.generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=new_tokens,
                                  min_new_tokens=new_tokens, do_sample=False, use_cache=True)
        sync()
        return out

    def ours_fn(use_cache: bool = True):  # noqa: ANN202
        out = generate(ours, idx, new_tokens, use_cache=use_cache, compile=compile and use_cache)
        sync()
        return out

    same = torch.equal(ours_fn(), hf())  # also the first (compiling) call
    fns = {"cache": ours_fn, "hf": hf}
    if recompute:
        fns["recompute"] = lambda: ours_fn(use_cache=False)
    t = interleaved(fns, repeats)
    t_cache, t_hf = t["cache"].wall, t["hf"].wall
    n = new_tokens * batch
    label = f"greedy generation L{cfg.n_layers}/d{cfg.emb_dim}, batch {batch}, {prompt_len}+{new_tokens} tokens"
    how = "KV cache, compiled step" if compile else "KV cache"
    rows = [Row(label, f"{n / t_cache:,.0f} tok/s ({how})", f"{n / t_hf:,.0f} tok/s "
                "(transformers.generate, cache)", t_hf / t_cache,
                f"identical tokens: {same}; CPU-time ratio {t['hf'].cpu / t['cache'].cpu:.2f}x; per step "
                f"{t_cache / new_tokens * 1e3:.1f} ms vs {t_hf / new_tokens * 1e3:.1f} ms")]
    if recompute:
        t_re = t["recompute"].wall
        rows.append(Row(label, f"{n / t_cache:,.0f} tok/s ({how})", f"{n / t_re:,.0f} tok/s (our recomputation)",
                        t_re / t_cache, f"CPU-time ratio {t['recompute'].cpu / t['cache'].cpu:.2f}x"))
    return rows


def _bench_cli(device: torch.device, profile: str, steps: int) -> Row:
    """``python -m gpt2_core.course.train`` as a learner runs it: its own steady-state tokens/s and MFU report."""
    root = Path(__file__).resolve().parents[2]  # the repository
    cmd = [sys.executable, "-m", "gpt2_core.course.train", "--profile", profile, "--max-steps", str(steps),
           "--warmup", "0", "--eval-every", "0", "--eval-batches", "2", "--no-progress"]
    env = {**os.environ, "GPT2_COURSE_DEVICE": device.type, "GPT2_COURSE_PROFILE": profile}
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    task = f"training CLI --profile {profile}, {steps} steps"
    steady = re.search(r"steady state: ([\d,]+) tokens/s.*MFU ([\d.]+%) of the (.*)$", done.stdout, re.M)
    overall = re.search(r"\(([\d,]+) tokens/s\); val loss", done.stdout)
    if done.returncode != 0 or not steady or not overall:
        return Row(task, "FAILED", "", float("nan"), (done.stderr or done.stdout)[-300:].replace("\n", " "))
    rate, whole = float(steady[1].replace(",", "")), float(overall[1].replace(",", ""))
    return Row(task, f"{steady[1]} tok/s steady, MFU {steady[2]}", f"{overall[1]} tok/s over the whole run",
               rate / whole, f"ratio = steady / whole run (compile warm-up, evaluation, start-up included: "
               f"{seconds:.0f} s in all); MFU of the {steady[3]}")


def _bench_bpe(n_chars: int, vocab_size: int, naive_chars: int, repeats: int) -> list[Row]:
    text = sample_text(n_chars)
    gpt2, theirs = BPETokenizer.from_gpt2(), gpt2_encoding()
    # a fresh tokenizer for every timed encode: its chunk cache starts empty (a cold cache), as tiktoken's does
    fresh = [BPETokenizer(gpt2.ranks, gpt2.special_tokens) for _ in range(repeats + 2)]
    same = fresh.pop().encode_ordinary(text) == theirs.encode(text, disallowed_special=())
    t = interleaved({"ours": lambda: fresh.pop().encode_ordinary(text),
                     "tiktoken": lambda: theirs.encode(text, disallowed_special=())}, repeats)
    t_ours, t_tik = t["ours"].wall, t["tiktoken"].wall
    mb = len(text.encode("utf-8")) / 1e6
    rows = [Row(f"BPE encode {mb:.1f} MB (cold cache)", f"{mb / t_ours:.2f} MB/s", f"{mb / t_tik:.2f} MB/s (tiktoken)",
                t_tik / t_ours, f"identical ids: {same}; CPU-time ratio {t['tiktoken'].cpu / t['ours'].cpu:.2f}x")]
    t_train = _median_time(lambda: BPETokenizer.train(text, vocab_size), 1, warmup=0)
    small = text[:naive_chars]
    small_vocab = 256 + 200
    t = interleaved({"fast": lambda: BPETokenizer.train(small, small_vocab),
                     "naive": lambda: BPETokenizer.train(small, small_vocab, naive=True)}, 1, warmup=0)
    naive_merges = BPETokenizer.train(small, small_vocab, naive=True).merges
    same_merges = BPETokenizer.train(small, small_vocab).merges == naive_merges
    rows.append(Row(f"BPE train {vocab_size} vocab on {mb:.1f} MB", f"{t_train:.1f} s", "target <= 10 s",
                    10.0 / t_train))
    rows.append(Row(f"BPE train {small_vocab} vocab on {len(small) // 1000} kB", f"{t['fast'].wall:.2f} s",
                    f"{t['naive'].wall:.2f} s (naive recount per merge)", t["naive"].wall / t["fast"].wall,
                    f"identical merges: {same_merges}"))
    return rows


def _bench_notebooks() -> Row:
    """Wall time of the whole course under nbval at the tiny profile (what CI runs)."""
    root = Path(__file__).resolve().parents[2]  # the repository
    notebooks = sorted(str(p) for p in (root / "notebooks").glob("[0-9]*.ipynb"))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                           "--nbval-sanitize-with", str(root / "tests" / "nbval_sanitize.cfg"), *notebooks],
                          cwd=root, env={**os.environ, "GPT2_COURSE_PROFILE": "tiny"},
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    return Row(f"all {len(notebooks)} notebooks, nbval, tiny profile", f"{seconds:.0f} s", "target <= 300 s",
               300 / seconds, "passed" if done.returncode == 0 else "FAILED: " + done.stdout[-300:])


def machine(device: torch.device | None = None) -> str:
    card = f"{torch.cuda.get_device_name(device)}, " if device is not None and device.type == "cuda" else ""
    return (f"{card}{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} "
            f"torch threads, torch {torch.__version__}, python {platform.python_version()}")


def load() -> float | None:
    """The 1-minute load average (None where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):  # not available on this platform
        return None


def _load_average(value: float | None = None) -> str:
    """The 1-minute load average against the core count: above the core count, the machine is shared."""
    value = load() if value is None else value
    return "load average unknown" if value is None else f"load average {value:.1f} on {os.cpu_count()} cores"


def _print_table(rows: list[Row]) -> None:
    print(bench_rows_table([vars(r) for r in rows]))


def write_bench(path: Path, rows: list[Row], **run: object) -> Path:
    """Write the rows and how they were measured (``run``: command, date, machine, peak, repeats, ...) to
    ``path`` as JSON, from which ``python -m gpt2_core.course.results`` renders the README's benchmark table."""
    data = {**run, "rows": [{**vars(r), "ratio": r.ratio if math.isfinite(r.ratio) else None} for r in rows]}
    return write_json(path, data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpt2_core.course.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["train", "generate", "cli", "bpe", "notebooks"], action="append",
                        help="run only these parts (repeatable); default: all (on cuda: train, generate, cli)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where to run (default cpu)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement (median)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the peak for MFU, in TFLOP/s (default: the card's data sheet, or measured)")
    parser.add_argument("--write", type=Path, default=None, metavar="JSON",
                        help="also write the rows and the machine to this file (results/bench-cpu.json or "
                             "results/bench-cuda.json: `python -m gpt2_core.course.results` renders the "
                             "README's table)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    command = " ".join(["python -m gpt2_core.course.bench", *(sys.argv[1:] if argv is None else argv)])
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.peak_tflops is not None and not args.peak_tflops > 0:
        parser.error(f"--peak-tflops must be > 0, got {args.peak_tflops}")
    if args.write is not None and (args.write.suffix != ".json" or not args.write.resolve().parent.is_dir()):
        parser.error(f"--write must name a .json file in an existing folder, got {args.write}")
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda, but CUDA is not available here")
    parts = args.only or (["train", "generate", "cli"] if cuda else ["train", "generate", "cli", "bpe", "notebooks"])
    torch.manual_seed(0)
    if args.peak_tflops is not None:
        peak, peak_name = args.peak_tflops * 1e12, f"given peak {args.peak_tflops:g} TFLOP/s"
    else:
        peak, peak_name = peak_flops(device, torch.bfloat16 if cuda else torch.float32)
    load_start, date = load(), time.strftime("%Y-%m-%d")
    print(f"machine: {machine(device)}; {peak_name}; date {date}; medians of "
          f"{args.repeats} interleaved runs; {_load_average(load_start)}", flush=True)
    rows: list[Row] = []
    small = GPTConfig(context_length=128, emb_dim=256, n_heads=4, n_layers=4, drop_rate=0.0)
    gpt2 = GPTConfig.preset("gpt2", drop_rate=0.0)
    if "train" in parts:
        if cuda:  # GPT-2 124M at its full context, as the targets are stated
            cfg, b, t = (small, 8, 128) if args.quick else (gpt2, 16, 1024)
            rows.append(_bench_training(cfg, b, t, args.repeats, peak, peak_name, device, bf16=True, compile=True))
        else:
            rows.append(_bench_training(small, 8, 128, args.repeats, peak, peak_name, device))
            if not args.quick:
                rows.append(_bench_training(gpt2, 2, 256, args.repeats, peak, peak_name, device))
    if "generate" in parts:
        cfg = small if args.quick else gpt2
        new = (32 if args.quick else 64) if not cuda else (64 if args.quick else 256)
        for batch in (1, 8):
            rows += _bench_generation(cfg, 16, new, args.repeats, device, batch, compile=cuda,
                                     recompute=batch == 1 and not cuda)
    if "cli" in parts:
        profile = "gpt2" if cuda else ("tiny" if args.quick else "default")
        rows.append(_bench_cli(device, profile, 20 if args.quick else (100 if cuda else 20)))
    if "bpe" in parts:
        rows += _bench_bpe(200_000 if args.quick else 1_000_000, 5000, 20_000, max(1, args.repeats // 2))
    if "notebooks" in parts:
        rows.append(_bench_notebooks())
    _print_table(rows)
    load_end = load()
    print(f"at the end: {_load_average(load_end)}")
    if args.write is not None:
        written = write_bench(args.write, rows, command=command, date=date, device=device.type,
                              machine=machine(device), peak=peak_name, repeats=args.repeats, quick=args.quick,
                              parts=args.only or [], load_start=load_start, load_end=load_end)
        print(f"wrote {written}; `python -m gpt2_core.course.results` renders it into the README")
    return 0


if __name__ == "__main__":
    sys.exit(main())
