"""Checkers for chapter 7 (instruction tuning and LoRA); reference solutions in ``solutions/ch07.py``.

- ``ch07.own_prompt_format``: ``my_format(record) -> str``, a prompt format of the learner's own design that
  the chapter's pipeline can train with (``InstructionDataset(..., prompt_format=my_format)``): it shows
  the whole instruction and input, tells records apart (the boundary between instruction and input is
  marked), ends every prompt with the same answer cue and no trailing whitespace (the answer is
  appended as ``" " + output``), and leaves room in the course model's 128-token context
- ``ch07.leaked_words``: ``leaked_words(train_records, held_out) -> set[str]``: the held-out words (given in
  lower case) that occur in the instruction, input or output of any training record, as whole words
  (maximal runs of letters) and in any letter case
- ``ch07.second_word``: ``second_word_record(rng) -> dict``, the generator of a new task family
  ("What is the second word?"), deterministic for a given ``random.Random``
- ``ch07.lora_count``: ``lora_count(cfg, rank) -> int``, the trainable parameters that
  ``inject_lora(GPTModel(cfg), rank, alpha)`` leaves (qkv, out_proj, fc and proj of every block)
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable

from ..finetuning.instruction_data import FORBIDDEN_TEXT
from ..finetuning.instruction_prompts import format_alpaca, format_prompt
from ..finetuning.lora import lora_parameter_count
from ..model.config import GPTConfig
from ..pretraining.recipes import course_tokenizer
from . import ExerciseFailed, exercise
from .solutions import ch07 as solution

_FORMAT_RECORDS = [
    {"instruction": "What is the first word?", "input": "nation army law", "output": "nation"},
    # the same words with the boundary moved: a format must tell these two apart
    {"instruction": "What is the first word? nation", "input": "army law", "output": "army"},
    {"instruction": "Who gave the State of the Union address in 1862?", "input": "", "output": "Abraham Lincoln"},
    {"instruction": "Sort the numbers from smallest to largest.", "input": "3 1 2", "output": "1 2 3"},
    {"instruction": "Name a colour.", "output": "red"},  # no input field at all
    {"instruction": "Write the word in capital letters.", "input": "army", "output": "ARMY"},
    # the longest question of the chapter's data (an extract_year record)
    {"instruction": "Which year does the text mention?",
     "input": "to $457,500,000-making the grand aggregate of products since 1849 $1,174,000,000.", "output": "1849"},
]
_CONTEXT = GPTConfig.preset("default").context_length  # the course model's 128 tokens


@exercise("ch07.own_prompt_format")
def check_own_prompt_format(candidate: Callable) -> None:
    for name, course_format in (("the chapter's compact format", format_prompt), ("Alpaca's format", format_alpaca)):
        if all(candidate(dict(r)) == course_format(r) for r in _FORMAT_RECORDS):
            raise ExerciseFailed(f"that is {name}; the exercise is to design one of your own")
    prompts = []
    for record in _FORMAT_RECORDS:
        what = f"record={record}"
        prompt = candidate(dict(record))
        if not isinstance(prompt, str):
            raise ExerciseFailed(f"for {what} return the prompt as a str, got {type(prompt).__name__}")
        if candidate(dict(record)) != prompt:
            raise ExerciseFailed(f"for {what} two calls gave two prompts; a format must be a fixed function of the "
                                 "record")
        if FORBIDDEN_TEXT in prompt:
            raise ExerciseFailed(f"for {what} your prompt contains {FORBIDDEN_TEXT!r}: the end-of-text token is how "
                                 "the model learns to stop, so it cannot appear inside a prompt")
        for field in ("instruction", "input"):
            if record.get(field) and record[field] not in prompt:
                raise ExerciseFailed(f"for {what} the {field} {record[field]!r} is not in your prompt {prompt!r}; the "
                                     "model can only answer what it is shown, word for word")
        if prompt != prompt.rstrip():
            raise ExerciseFailed(f"for {what} your prompt {prompt!r} ends in whitespace; the answer is appended as "
                                 "' ' + output, so its first word would follow a second space (another token)")
        prompts.append(prompt)
    for i, a in enumerate(prompts):
        for j in range(i):
            if a == prompts[j]:
                raise ExerciseFailed(f"the records {_FORMAT_RECORDS[j]} and {_FORMAT_RECORDS[i]} both give the prompt "
                                     f"{a!r}; mark where the instruction ends and the input begins")
    cue = os.path.commonprefix([p[::-1] for p in prompts])[::-1]
    if len(cue.strip()) < 2:
        raise ExerciseFailed(f"your prompts end in different ways ({', '.join(repr(p[-12:]) for p in prompts[:3])}, "
                             "...): end every prompt with the same cue (like ' Answer:'), so the model knows where "
                             "its answer starts")
    tok = course_tokenizer("default")
    lengths = {"yours": [], "compact": [], "Alpaca": []}
    for record, prompt in zip(_FORMAT_RECORDS, prompts, strict=True):
        needed = len(tok.encode_ordinary(prompt)) + len(tok.encode_ordinary(" " + record["output"])) + 1
        if needed > _CONTEXT:
            raise ExerciseFailed(f"for record={record} your prompt, the answer and its end-of-text need {needed} "
                                 f"tokens, more than the course model's context of {_CONTEXT}")
        for name, text in (("yours", prompt), ("compact", format_prompt(record)), ("Alpaca", format_alpaca(record))):
            lengths[name].append(len(tok.encode_ordinary(text)))
    mean = {name: sum(v) / len(v) for name, v in lengths.items()}
    print(f"ℹ️ on these {len(prompts)} records your prompts take {mean['yours']:.1f} tokens on average (compact "
          f"{mean['compact']:.1f}, Alpaca {mean['Alpaca']:.1f}) and end with the cue {cue!r}")


# Each case: training records, held-out words, and what the case is about (said when it goes wrong).
_LEAK_CASES = [
    ([{"instruction": "What is the first word?", "input": "nation army law", "output": "nation"}],
     {"army", "navy"}, "a held-out word in a training question"),
    ([{"instruction": "Write the number in words.", "input": "40", "output": "forty"},
      {"instruction": "What is the last word?", "input": "tax court", "output": "court"}],
     {"forty", "treaty"}, "a word that occurs only in a training *answer*: the model learns answers, so look in "
     "the output too"),
    ([{"instruction": "What is the first word?", "input": "tax court", "output": "tax"}],
     {"first", "navy"}, "a word of the instruction itself: the model reads the instruction as well"),
    ([{"instruction": "Write the word in capital letters.", "input": "nation", "output": "NATION"},
      {"instruction": "What is the last word?", "input": "Congress and the Army", "output": "Army"}],
     {"army", "congress", "senate"}, "letter case: 'Army' and 'ARMY' are the held-out word 'army'"),
    ([{"instruction": "Which year does the text mention?", "input": "In 1862, the war began.", "output": "1862"},
      {"instruction": "Write the number in words.", "input": "42", "output": "forty-two"}],
     {"began", "war", "peace", "two"}, "punctuation: split on spaces and 'began.', 'war,' or 'forty-two' is not "
     "a word; take the runs of letters"),
    ([{"instruction": "Reverse the order of the words.", "input": "warrant lawyer", "output": "lawyer warrant"}],
     {"war", "law"}, "whole words only: 'war' inside 'warrant' is not the word 'war'"),
    ([{"instruction": "Name a colour.", "output": "red"}], {"blue"}, "a record without an input field"),
    ([{"instruction": "What is the last word?", "input": "the nation's ships", "output": "ships"},
      {"instruction": "Give the plural of the noun.", "input": "army", "output": "armies"}],
     {"nation", "armies", "ship", "treaty"}, "words are runs of letters: 'nation's' holds 'nation', but 'ships' is "
     "not 'ship'"),
]


@exercise("ch07.leaked_words")
def check_leaked_words(candidate: Callable) -> None:
    for train, held_out, about in _LEAK_CASES:
        got = candidate([dict(r) for r in train], set(held_out))
        what = f"training records {train} and held-out words {sorted(held_out)}"
        if not isinstance(got, (set, frozenset, list, tuple)) or not all(isinstance(w, str) for w in got):
            raise ExerciseFailed(f"for {what} return a set of words, got {got!r}")
        got = set(got)
        want = solution.leaked_words(train, held_out)
        if got - held_out:
            raise ExerciseFailed(f"for {what} you returned {sorted(got - held_out)}, which are not held-out words; "
                                 "return the held-out words that leak, as they are given")
        if got != want:
            raise ExerciseFailed(f"for {what} expected {sorted(want)} but got {sorted(got)}; this case is about "
                                 f"{about}")


@exercise("ch07.second_word")
def check_second_word(candidate: Callable) -> None:
    records = [candidate(random.Random(seed)) for seed in range(30)]
    for seed, record in enumerate(records):
        if not isinstance(record, dict):
            raise ExerciseFailed(f"return a dict, got {type(record).__name__}")
        for field in ("instruction", "input", "output"):
            if not isinstance(record.get(field), str) or not record[field].strip():
                raise ExerciseFailed(f"record {record} needs a non-empty string {field!r}")
            if FORBIDDEN_TEXT in record[field]:
                raise ExerciseFailed(f"{field!r} contains {FORBIDDEN_TEXT!r}, the tokenizer's end-of-text text")
        words = record["input"].split()
        if len(words) < 2:
            raise ExerciseFailed(f"the input {record['input']!r} has fewer than two words: there is no second one")
        if record["output"] != words[1]:
            which = {w: f"the {name} word" for name, w in (("last", words[-1]), ("first", words[0]))}
            said = which.get(record["output"], repr(record["output"]))
            raise ExerciseFailed(f"for the input {record['input']!r} the output is {said}; it must be the second "
                                 f"word, {words[1]!r}")
        if candidate(random.Random(seed)) != record:
            raise ExerciseFailed(f"the same seed ({seed}) gave two different records; draw every choice from the rng "
                                 "you are given (not from the random module itself), so a seed fixes the record")
    if len({r["input"] for r in records}) < 20:
        raise ExerciseFailed("30 seeds gave fewer than 20 different inputs; draw the words with rng")
    if len({len(r["input"].split()) for r in records}) < 2:
        raise ExerciseFailed("every input has the same number of words; vary it, so the answer's position "
                             "from the end changes and the model must count from the front")


@exercise("ch07.lora_count")
def check_lora_count(candidate: Callable) -> None:
    for cfg, rank in [(GPTConfig.preset("default"), 8), (GPTConfig.preset("tiny"), 1),
                      (GPTConfig.preset("gpt2"), 16)]:
        got = candidate(cfg, rank)
        if isinstance(got, bool) or not isinstance(got, int):
            raise ExerciseFailed(f"return an int, got {type(got).__name__}")
        want = solution.lora_count(cfg, rank)
        if got == want:
            continue
        d, n = cfg.emb_dim, cfg.n_layers
        shapes = {"qkv": (d, 3 * d), "out_proj": (d, d), "fc": (d, 4 * d), "proj": (4 * d, d)}
        per_block = {name: lora_parameter_count(i, o, rank) for name, (i, o) in shapes.items()}
        hints = {
            want // n: "that is one block; every block gets its own adapters",
            n * (per_block["qkv"] + per_block["out_proj"]): "that counts attention only; fc and proj of the "
            "feed-forward layer are adapted too",
            n * 4 * lora_parameter_count(d, d, rank): "not every layer is d x d: qkv maps d to 3d, fc d to 4d, "
            "proj 4d to d",
            n * (3 * d * d + d * d + 4 * d * d + 4 * d * d): "that is the size of the frozen weight matrices; LoRA "
            "trains only A (in x r) and B (r x out)",
        }
        hint = hints.get(got, "each adapted layer trains r * (in + out) numbers: A is in x r, B is r x out")
        raise ExerciseFailed(f"for {n} layers of width {d}, rank={rank} expected {want:,} but got {got:,}; {hint}")
