"""Command line: continue a prompt with a GPT-2 model.

    python -m gpt2_core.course.generate --checkpoint runs/sotu --prompt "The Congress of the United States"
    python -m gpt2_core.course.generate --reference --temperature 0.8 --top-k 40
    python -m gpt2_core.course.generate --pretrained gpt2            # OpenAI's weights (downloads once)
    python -m gpt2_core.course.generate --reference --prompt-file my_prompt.txt   # a long prompt, from a UTF-8 file

Every model is read with its own tokenizer: a course checkpoint records the one it was trained with (and
one that records none is refused), the reference model ships with its own, and GPT-2's weights use
GPT-2's. Mistakes in the arguments or the environment are usage errors: one line, exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from ..model.generation import generate_text
from ..model.hf_weights import WeightsDownloadError, from_hf, from_pretrained
from ..pretraining.checkpoint import load_checkpoint
from ..profile import get_device, profile_name, seed_everything
from ..text.ranks import gpt2_encoding
from .cli import number
from .reference import ReferenceModelError, load_reference


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gpt2_core.course.generate", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", metavar="DIR", help="a course checkpoint directory (with its tokenizer)")
    source.add_argument("--reference", action="store_true", help="the shipped reference course model")
    source.add_argument("--hf", metavar="DIR", help="a Hugging Face GPT-2 directory (config.json + weights)")
    source.add_argument("--pretrained", metavar="NAME", help="OpenAI weights by name, e.g. gpt2 (downloads once)")
    prompt = parser.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", default="The Congress of the United States", help="text to continue")
    prompt.add_argument("--prompt-file", metavar="PATH",
                        help="read the text to continue from a UTF-8 text file (for long or multi-line prompts)")
    parser.add_argument("--max-new-tokens", type=number(int, 0), default=50, help="how many tokens to add")
    parser.add_argument("--temperature", type=number(float, 0), default=0.0,
                        help="0 = greedy (default); > 0 samples, higher is more random")
    parser.add_argument("--top-k", type=number(int, 1), default=None, help="sample only from the k most likely tokens")
    parser.add_argument("--top-p", type=number(float, 0, 1, above=True), default=None,
                        help="nucleus sampling: the smallest set of tokens with this much probability")
    parser.add_argument("--seed", type=int, default=123, help="random seed for sampling (default 123)")
    parser.add_argument("--no-cache", action="store_true", help="recompute every step instead of a KV cache")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the one-token step (slow first call; CUDA graphs on a GPU)")
    return parser


def _read_prompt_file(path: str) -> str:
    """The text of the prompt file at ``path``, less the one line break an editor adds at its end; ValueError,
    in one line, for a file that is missing, a folder, unreadable, not UTF-8 text or empty."""
    file = Path(path)
    if not file.exists():
        raise ValueError(f"--prompt-file {path}: no such file; check the path")
    if file.is_dir():
        raise ValueError(f"--prompt-file {path} is a folder; give a text file")
    try:
        data = file.read_bytes()
    except OSError as err:
        raise ValueError(f"--prompt-file {path} cannot be read ({err.strerror})") from None
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark (some Windows editors write one) is not prompt text
    except UnicodeDecodeError as err:
        raise ValueError(f"--prompt-file {path} is not UTF-8 text (byte {err.start} is {data[err.start]:#04x}); "
                         "save it as UTF-8 and try again") from None
    if not text.strip():
        raise ValueError(f"--prompt-file {path} is empty; write the text to continue in it")
    return text.removesuffix("\n").removesuffix("\r")


def _load(args: argparse.Namespace, device: torch.device):  # noqa: ANN202 - (model, tokenizer)
    if args.checkpoint:
        loaded = load_checkpoint(args.checkpoint, restore_rng=False, map_location=device)
        if loaded["tokenizer"] is None:
            raise ValueError(f"{args.checkpoint} does not record its tokenizer (it was saved by an older "
                             "gpt2_core, or without tokenizer=), so its token ids cannot be read; save it again "
                             "with save_checkpoint(..., tokenizer=the tokenizer it was trained with)")
        return loaded["model"], loaded["tokenizer"]
    if args.reference:
        return load_reference(device)
    model = from_hf(args.hf) if args.hf else from_pretrained(args.pretrained)
    if model.cfg.vocab_size != gpt2_encoding().n_vocab:
        raise ValueError(f"this model has a vocabulary of {model.cfg.vocab_size:,} tokens, not GPT-2's "
                         f"{gpt2_encoding().n_vocab:,}, and Hugging Face directories carry no tokenizer here; "
                         "use a course checkpoint (--checkpoint), which records its tokenizer")
    return model.to(device), gpt2_encoding()


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (args.checkpoint or args.reference or args.hf or args.pretrained):
        parser.error("no model given: pass --checkpoint DIR (a course checkpoint), --reference (the course's "
                     "model), --hf DIR (a Hugging Face GPT-2 directory) or --pretrained gpt2 (downloads)")
    if args.prompt_file is not None:
        try:
            args.prompt = _read_prompt_file(args.prompt_file)
        except ValueError as err:
            parser.error(str(err))
    if not args.prompt:
        parser.error("--prompt is empty; give some text to continue (or '<|endoftext|>' to start from nothing)")
    if args.compile and args.no_cache:
        parser.error("--compile compiles the cached one-token step; it cannot be combined with --no-cache")
    try:
        profile_name()  # a bad GPT2_COURSE_PROFILE is a usage error, even though nothing here reads the profile
        device = get_device()
    except ValueError as err:
        parser.error(str(err))
    seed_everything(args.seed)
    try:
        model, tokenizer = _load(args, device)
    except (FileNotFoundError, ValueError, OSError, ReferenceModelError, WeightsDownloadError) as err:
        print(f"error: could not load the model: {err}", file=sys.stderr)
        return 1
    generator = torch.Generator(device=model.device).manual_seed(args.seed)
    try:
        text = generate_text(model, tokenizer, args.prompt, args.max_new_tokens, temperature=args.temperature,
                             top_k=args.top_k, top_p=args.top_p, use_cache=not args.no_cache, generator=generator,
                             compile=args.compile)
    except ValueError as err:  # e.g. a prompt longer than the model's context
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
