"""Instruction tuning data: a checkable instruction set, the Alpaca prompt format, masked batches, scoring.

The data are generated, not downloaded: every record is an instruction whose answer can be checked
exactly (change case, sort numbers, add small numbers, name the president who gave a State of the
Union address in a year, ...), so that fine-tuning can be scored objectively by exact match. Records
follow the Alpaca JSON shape (Taori et al., 2023): ``{"instruction", "input", "output"}``, plus a
``"family"`` naming the task. Words and sentences come from the State of the Union corpus
(``gpt2_core.corpus``), read deterministically, so the same seed always gives the same file.

Batches follow the usual recipe for supervised fine-tuning: prompt + response + one end-of-text token,
padded with end-of-text, targets shifted by one, padding after the first end-of-text ignored by the
loss (``-100``), and optionally the prompt tokens ignored too, so that only the response is learned.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from .bpe_ranks import ENDOFTEXT, ENDOFTEXT_ID

PROMPT_HEADER = ("Below is an instruction that describes a task. "
                 "Write a response that appropriately completes the request.")
RESPONSE_MARKER = "### Response:"
DATA_FILE = "instructions.json"
DEFAULT_N = 1200
DEFAULT_SEED = 7

# A few short English words that carry no content; the word lists skip them so tasks use real words.
_STOP_WORDS = frozenset(
    "that this with have been from will which their they there these those would should could "
    "more than other were such into upon them only also made under must every year years being "
    "what when where while shall most very some your about after before each make many much "
    "over same well great".split()
)
# Regular nouns for the plural task (plural by rule: +s, +es after s/x/z/ch/sh, consonant+y -> ies).
_NOUNS = (
    "nation state army bridge canal church city claim coast colony court duty farm fleet force "
    "harbor law market mine navy office port railway river road school ship tariff tax treaty "
    "union vessel war agency bank box branch bus class coach crash dispatch fox gas loss match "
    "process speech tax wish witch address ally body company county economy enemy "
    "factory family industry policy territory treasury victory"
).split()
_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


# --------------------------------------------------------------------------- corpus-derived pieces
@lru_cache(maxsize=1)
def corpus_words(n: int = 300) -> tuple[str, ...]:
    """The ``n`` most frequent lowercase words of 4-8 letters in the corpus (ties broken alphabetically)."""
    from .corpus import load_addresses

    counts: Counter[str] = Counter()
    for address in load_addresses():
        counts.update(w for w in re.findall(r"[a-z]+", address.text.lower()) if 4 <= len(w) <= 8)
    ranked = sorted((w for w in counts if w not in _STOP_WORDS), key=lambda w: (-counts[w], w))
    return tuple(ranked[:n])


@lru_cache(maxsize=1)
def year_sentences() -> tuple[tuple[str, int], ...]:
    """Short corpus sentences (6-14 words) that mention exactly one year (1700-2029), with that year."""
    from .corpus import load_addresses

    found: dict[str, int] = {}
    for address in load_addresses():
        for sentence in re.split(r"(?<=[.!?])\s+", " ".join(address.text.split())):
            years = re.findall(r"\b(1[7-9]\d\d|20[0-2]\d)\b", sentence)
            if len(years) == 1 and 6 <= len(sentence.split()) <= 14 and sentence.isascii():
                found.setdefault(sentence, int(years[0]))
    return tuple(sorted(found.items()))


@lru_cache(maxsize=1)
def president_by_year() -> dict[int, str]:
    """Year -> president for every year with exactly one address (years with two are ambiguous)."""
    from .corpus import load_addresses

    per_year: dict[int, list[str]] = {}
    for address in load_addresses():
        per_year.setdefault(address.year, []).append(address.president)
    return {year: names[0] for year, names in sorted(per_year.items()) if len(names) == 1}


# --------------------------------------------------------------------------- answers
def number_to_words(n: int) -> str:
    """0-99 in English words, e.g. 42 -> ``forty-two``."""
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 99:
        raise ValueError(f"number_to_words handles ints 0-99, got {n!r}")
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] if ones == 0 else f"{_TENS[tens]}-{_ONES[ones]}"


def plural(noun: str) -> str:
    """The plural of a regular English noun by rule (+s, +es after s/x/z/ch/sh, consonant+y -> ies)."""
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and len(noun) > 1 and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


# --------------------------------------------------------------------------- the generator
Record = dict[str, str]


def _words(rng: random.Random, k: int) -> list[str]:
    return rng.sample(corpus_words(), k)


def _gen_upper(rng: random.Random) -> Record:
    w = rng.choice(corpus_words())
    return {"instruction": "Convert the word to upper case.", "input": w, "output": w.upper()}


def _gen_lower(rng: random.Random) -> Record:
    w = rng.choice(corpus_words())
    return {"instruction": "Convert the word to lower case.", "input": w.upper(), "output": w}


def _gen_reverse(rng: random.Random) -> Record:
    ws = _words(rng, rng.randint(3, 4))
    return {"instruction": "Reverse the order of the words.", "input": " ".join(ws),
            "output": " ".join(reversed(ws))}


def _gen_sort(rng: random.Random) -> Record:
    nums = rng.sample(range(1, 100), rng.randint(3, 5))
    return {"instruction": "Sort the numbers from smallest to largest.", "input": " ".join(map(str, nums)),
            "output": " ".join(map(str, sorted(nums)))}


def _gen_arithmetic(rng: random.Random) -> Record:
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    if rng.random() < 0.5:
        return {"instruction": "Compute the result.", "input": f"{a} + {b}", "output": str(a + b)}
    a, b = max(a, b), min(a, b)  # keep differences non-negative
    return {"instruction": "Compute the result.", "input": f"{a} - {b}", "output": str(a - b)}


def _gen_count(rng: random.Random) -> Record:
    ws = _words(rng, rng.randint(2, 7))
    return {"instruction": "How many words are in the text?", "input": " ".join(ws), "output": str(len(ws))}


def _gen_year(rng: random.Random) -> Record:
    sentence, year = rng.choice(year_sentences())
    return {"instruction": "Extract the year from the sentence.", "input": sentence, "output": str(year)}


def _gen_president(rng: random.Random) -> Record:
    year, name = rng.choice(sorted(president_by_year().items()))
    return {"instruction": f"Who gave the State of the Union address in {year}?", "input": "", "output": name}


def _gen_first(rng: random.Random) -> Record:
    ws = _words(rng, rng.randint(3, 5))
    return {"instruction": "What is the first word?", "input": " ".join(ws), "output": ws[0]}


def _gen_last(rng: random.Random) -> Record:
    ws = _words(rng, rng.randint(3, 5))
    return {"instruction": "What is the last word?", "input": " ".join(ws), "output": ws[-1]}


def _gen_spell(rng: random.Random) -> Record:
    n = rng.randint(0, 99)
    return {"instruction": "Write the number in words.", "input": str(n), "output": number_to_words(n)}


def _gen_plural(rng: random.Random) -> Record:
    noun = rng.choice(_NOUNS)
    return {"instruction": "Give the plural of the noun.", "input": noun, "output": plural(noun)}


FAMILIES: dict[str, Callable[[random.Random], Record]] = {
    "upper": _gen_upper, "lower": _gen_lower, "reverse_words": _gen_reverse, "sort_numbers": _gen_sort,
    "arithmetic": _gen_arithmetic, "count_words": _gen_count, "extract_year": _gen_year,
    "sotu_president": _gen_president, "first_word": _gen_first, "last_word": _gen_last,
    "spell_number": _gen_spell, "plural": _gen_plural,
}


def make_instruction_data(n: int = DEFAULT_N, seed: int = DEFAULT_SEED) -> list[dict[str, str]]:
    """``n`` records, round-robin over :data:`FAMILIES`, deterministic for a given ``seed``.

    Each family draws from its own ``random.Random`` (seeded from ``seed`` and the family name), so
    adding a family never changes the records of the others. Duplicates (same instruction and input)
    are skipped, so a family with few possible questions (plural, spell_number) stops when it runs out;
    the other families fill the gap.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    rngs = {name: random.Random(f"{seed}-{name}") for name in FAMILIES}
    seen: set[tuple[str, str]] = set()
    records: list[dict[str, str]] = []
    exhausted: set[str] = set()
    while len(records) < n and len(exhausted) < len(FAMILIES):
        for name, make in FAMILIES.items():
            if len(records) >= n or name in exhausted:
                continue
            for _ in range(50):  # a few tries to find a question not asked yet
                record = make(rngs[name])
                key = (record["instruction"], record["input"])
                if key not in seen:
                    seen.add(key)
                    records.append({**record, "family": name})
                    break
            else:
                exhausted.add(name)
    return records


def write_instruction_data(path: str | Path | None = None, n: int = DEFAULT_N,
                           seed: int = DEFAULT_SEED) -> Path:
    """Generate the records and write them as Alpaca-style JSON (default ``data/instructions.json``)."""
    from .profile import data_dir

    target = Path(path) if path is not None else data_dir() / DATA_FILE
    target.write_text(dump_records(make_instruction_data(n, seed)), encoding="utf-8")
    return target


def dump_records(records: Sequence[dict]) -> str:
    """The exact JSON text written to disk (indent 1, one key order, trailing newline)."""
    return json.dumps(list(records), indent=1, ensure_ascii=False) + "\n"


def load_instruction_data(path: str | Path | None = None) -> list[dict[str, str]]:
    """The course's instruction set (``data/instructions.json``), validated."""
    from .profile import data_dir

    return load_alpaca_json(path if path is not None else data_dir() / DATA_FILE)


def load_alpaca_json(path: str | Path) -> list[dict[str, str]]:
    """Read any Alpaca-format JSON file: a list of objects with string ``instruction`` and ``output``.

    ``input`` is optional (defaults to ``""``); extra fields (such as ``family``) are kept as they are.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no Alpaca JSON file at {file}; check the path (the course's own file "
                                "is made by gpt2_core.instructions.write_instruction_data)")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        where = f"line {err.lineno}, column {err.colno}"
        raise ValueError(f"{file} is not valid JSON ({err.msg} at {where})") from err
    if not isinstance(data, list):
        raise ValueError(f"{file} must hold a JSON list of records, got a {type(data).__name__}")
    records = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise ValueError(f"record {i} of {file} must be a JSON object, got {type(item).__name__}")
        for field in ("instruction", "output"):
            if field not in item:
                raise ValueError(f"record {i} of {file} has no {field!r} field; every record needs one")
            if not isinstance(item[field], str):
                raise ValueError(f"record {i} of {file}: field {field!r} must be a string, "
                                 f"got {type(item[field]).__name__}")
        value = item.get("input", "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise ValueError(f"record {i} of {file}: field 'input' must be a string, "
                             f"got {type(value).__name__}")
        records.append({**item, "input": value})
    return records


def split_records(records: Sequence[dict], test_fraction: float = 0.2,
                  seed: int = DEFAULT_SEED) -> tuple[list[dict], list[dict]]:
    """(train, test), stratified by ``family``: each family gives ``round(test_fraction * size)`` to test.

    Records without a family count as one family ``""``. Order within each split follows the input.
    """
    if not isinstance(test_fraction, (int, float)) or isinstance(test_fraction, bool) \
            or not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be a number in [0, 1), got {test_fraction!r}")
    by_family: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        by_family.setdefault(record.get("family", ""), []).append(i)
    rng = random.Random(seed)
    test_ids: set[int] = set()
    for family in sorted(by_family):
        ids = list(by_family[family])
        rng.shuffle(ids)
        test_ids.update(ids[: round(test_fraction * len(ids))])
    train = [r for i, r in enumerate(records) if i not in test_ids]
    test = [r for i, r in enumerate(records) if i in test_ids]
    return train, test


# --------------------------------------------------------------------------- prompt format
def _check_record(record: Any) -> None:
    if not isinstance(record, dict):
        raise TypeError(f"a record must be a dict with 'instruction' (and optional 'input'), "
                        f"got {type(record).__name__}")
    if not isinstance(record.get("instruction"), str):
        raise ValueError("a record needs a string 'instruction' field")
    if not isinstance(record.get("input", "") or "", str):
        raise ValueError("a record's 'input' must be a string (or missing)")


def format_prompt(record: dict) -> str:
    """The Alpaca prompt: header, ``### Instruction:``, ``### Input:`` (only if non-empty), ``### Response:``.

    The response itself follows the returned text directly, so ``format_prompt(r) + r["output"]`` is a
    full training example.
    """
    _check_record(record)
    text = f"{PROMPT_HEADER}\n\n### Instruction:\n{record['instruction']}"
    if record.get("input"):
        text += f"\n\n### Input:\n{record['input']}"
    return text + f"\n\n{RESPONSE_MARKER}\n"


def extract_response(text: str) -> str:
    """The response part of a generated text: after the last ``### Response:``, up to end-of-text or a
    new ``###`` section, stripped. Text without the marker is taken to be the response already."""
    if not isinstance(text, str):
        raise TypeError(f"extract_response expects a str, got {type(text).__name__}")
    if RESPONSE_MARKER in text:
        text = text.rsplit(RESPONSE_MARKER, 1)[1]
    text = text.split(ENDOFTEXT, 1)[0]
    text = text.split("\n###", 1)[0].split("###", 1)[0]
    return text.strip()


# --------------------------------------------------------------------------- dataset and batches
class InstructionDataset(Dataset):
    """Records encoded once: item ``i`` is ``(ids, prompt_len)`` for ``format_prompt(r) + r["output"]``."""

    def __init__(self, records: Sequence[dict], tokenizer: Any) -> None:
        if not hasattr(tokenizer, "encode"):
            raise TypeError("tokenizer must have an encode(text) method, "
                            "e.g. gpt2_core.tokenizer.gpt2_encoding()")
        self.records = list(records)
        self.items: list[tuple[list[int], int]] = []
        for record in self.records:
            _check_record(record)
            if not isinstance(record.get("output"), str):
                raise ValueError("every training record needs a string 'output'")
            prompt = tokenizer.encode(format_prompt(record))
            response = tokenizer.encode(record["output"])
            self.items.append((list(prompt) + list(response), len(prompt)))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[list[int], int]:
        return self.items[i]

    def lengths(self) -> list[int]:
        """Tokens per example (without the end-of-text that the collate function appends)."""
        return [len(ids) for ids, _ in self.items]


def instruction_collate(batch: Sequence, pad_id: int = ENDOFTEXT_ID, ignore_index: int = -100,
                        mask_prompt: bool = False, max_length: int | None = None,
                        device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn examples into ``(inputs, targets)`` LongTensors of shape (batch, longest).

    Each example (a list of ids, or ``(ids, prompt_len)`` from :class:`InstructionDataset`) gets one
    end-of-text token appended and is padded with ``pad_id``; targets are the inputs shifted left by
    one. In the targets, everything after the first end-of-text is set to ``ignore_index`` (the model
    must learn to stop, but not to predict padding); with ``mask_prompt`` the targets that predict
    prompt tokens are ignored too, so only the response is learned. ``max_length`` crops the columns.
    """
    if len(batch) == 0:
        raise ValueError("cannot collate an empty batch")
    examples: list[tuple[list[int], int]] = []
    for item in batch:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], int):
            ids, prompt_len = list(item[0]), item[1]
        elif isinstance(item, (list, torch.Tensor)):
            ids, prompt_len = [int(t) for t in item], -1
        else:
            raise TypeError(f"each example must be a list of ids or (ids, prompt_len), "
                            f"got {type(item).__name__}")
        if not ids:
            raise ValueError("an example has no tokens")
        if mask_prompt and prompt_len < 0:
            raise ValueError("mask_prompt=True needs (ids, prompt_len) examples, as InstructionDataset gives")
        examples.append((ids, prompt_len))
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)
                                   or max_length < 1):
        raise ValueError(f"max_length must be a positive int or None, got {max_length!r}")
    width = max(len(ids) for ids, _ in examples) + 1  # +1 for the appended end-of-text
    inputs, targets = [], []
    for ids, prompt_len in examples:
        seq = ids + [ENDOFTEXT_ID] + [pad_id] * (width - len(ids) - 1)
        x, y = seq[:-1], seq[1:]
        # y[len(ids) - 1] is the first end-of-text: keep it, ignore what follows
        y[len(ids):] = [ignore_index] * (len(y) - len(ids))
        if mask_prompt:
            # y[j] predicts seq[j + 1]; the prompt is seq[:prompt_len], so y[:prompt_len - 1] predicts it
            y[: max(prompt_len - 1, 0)] = [ignore_index] * max(prompt_len - 1, 0)
        inputs.append(x[:max_length])
        targets.append(y[:max_length])
    x_t = torch.tensor(inputs, dtype=torch.long)
    y_t = torch.tensor(targets, dtype=torch.long)
    if device is not None:
        x_t, y_t = x_t.to(device), y_t.to(device)
    return x_t, y_t


# --------------------------------------------------------------------------- generation and scoring
def generate_response(model: Any, tokenizer: Any, record: dict, max_new_tokens: int = 16) -> str:
    """The model's greedy answer to ``record`` (prompt in the Alpaca format), stopping at end-of-text."""
    from .generate import generate

    ids = tokenizer.encode(format_prompt(record))
    ctx = model.cfg.context_length
    ids = ids[-ctx:]  # the prompt must fit the context window
    idx = torch.tensor([ids], dtype=torch.long, device=model.device)
    out = generate(model, idx, max_new_tokens, temperature=0.0, eos_id=ENDOFTEXT_ID)
    new = out[0, len(ids):].tolist()
    new = new[: new.index(ENDOFTEXT_ID)] if ENDOFTEXT_ID in new else new
    return extract_response(tokenizer.decode(new))


def normalise_answer(text: str) -> str:
    """Collapse whitespace and drop trailing periods: the only leniency exact match allows."""
    return " ".join(str(text).split()).rstrip(".").rstrip()


def generate_responses(model: Any, tokenizer: Any, records: Sequence[dict], max_new_tokens: int = 16,
                       batch_size: int = 32, progress: bool = False) -> list[str]:
    """Greedy answers for many records, batching prompts of equal token length (no padding needed).

    Gives the same answers as calling :func:`generate_response` on each record (up to float rounding
    of batched matmuls), several times faster.
    """
    from .generate import generate

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    ctx = model.cfg.context_length
    prompts = [tokenizer.encode(format_prompt(r))[-ctx:] for r in records]
    groups: dict[int, list[int]] = {}
    for i, ids in enumerate(prompts):
        groups.setdefault(len(ids), []).append(i)
    chunks = [idx[k:k + batch_size] for idx in groups.values() for k in range(0, len(idx), batch_size)]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(records), desc="generating", leave=False)
    answers = [""] * len(records)
    for chunk in chunks:
        idx = torch.tensor([prompts[i] for i in chunk], dtype=torch.long, device=model.device)
        out = generate(model, idx, max_new_tokens, temperature=0.0, eos_id=ENDOFTEXT_ID)
        for row, i in enumerate(chunk):
            new = out[row, idx.shape[1]:].tolist()
            new = new[: new.index(ENDOFTEXT_ID)] if ENDOFTEXT_ID in new else new
            answers[i] = extract_response(tokenizer.decode(new))
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return answers


def evaluate_exact_match(model: Any, tokenizer: Any, records: Sequence[dict], max_new_tokens: int = 16,
                         predictions: Sequence[str] | None = None, progress: bool = False):
    """Exact-match accuracy per ``family`` and overall, as a pandas DataFrame.

    Columns: ``family``, ``n``, ``correct``, ``accuracy``; the last row is ``overall``. Answers are
    compared after :func:`normalise_answer`. Pass ``predictions`` to score answers generated already.
    """
    import pandas as pd

    if len(records) == 0:
        raise ValueError("no records to evaluate")
    if predictions is None:
        predictions = generate_responses(model, tokenizer, records, max_new_tokens, progress=progress)
    if len(predictions) != len(records):
        raise ValueError(f"got {len(predictions)} predictions for {len(records)} records")
    rows = [{"family": r.get("family", ""), "correct": normalise_answer(p) == normalise_answer(r["output"])}
            for r, p in zip(records, predictions, strict=True)]
    frame = pd.DataFrame(rows)
    table = frame.groupby("family", sort=True)["correct"].agg(n="size", correct="sum").reset_index()
    total = pd.DataFrame([{"family": "overall", "n": len(frame), "correct": int(frame["correct"].sum())}])
    table = pd.concat([table, total], ignore_index=True)
    table["correct"] = table["correct"].astype(int)
    table["accuracy"] = table["correct"] / table["n"]
    return table


# --------------------------------------------------------------------------- loss
def instruction_loss(model: Any, inputs: torch.Tensor, targets: torch.Tensor,
                     ignore_index: int = -100) -> torch.Tensor:
    """Mean cross-entropy over the targets that count (``!= ignore_index``).

    Equal to ``F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten(), ignore_index=...)``,
    but for a :class:`~gpt2_core.model.GPTModel` the output head (a 50,257-way matmul, the most
    expensive layer of a small model) runs only at the positions that count: with the prompt masked
    that is a few tokens per example instead of all of them.
    """
    keep = targets != ignore_index
    if not bool(keep.any()):
        raise ValueError("every target is ignore_index: nothing to learn from in this batch")
    parts = ("tok_emb", "pos_emb", "drop_emb", "blocks", "final_norm", "out_head", "check_input")
    if not all(hasattr(model, p) for p in parts):  # any other model: the plain way
        logits = model(inputs)
        return torch.nn.functional.cross_entropy(logits[keep], targets[keep])
    model.check_input(inputs)
    pos = torch.arange(inputs.shape[1], device=inputs.device)
    x = model.drop_emb(model.tok_emb(inputs) + model.pos_emb(pos))
    for block in model.blocks:
        x = block(x)
    hidden = model.final_norm(x)[keep]  # (counted positions, emb_dim)
    return torch.nn.functional.cross_entropy(model.out_head(hidden), targets[keep])
