"""Prose true to its run: every number a notebook's prose states is backed (COURSE_DESIGN.md, section 3), and
so is every direction it states (which result is ahead), and every comparison a run recorded.

``python -m gpt2_core.course.notebook_tools check-prose notebooks/*.ipynb README.md`` (or
``python -m gpt2_core.course.prose``) lists every number and direction in the prose that nothing backs, with the
sentence it sits in; ``tests/test_prose_numbers.py`` and ``tests/test_prose_directions.py`` run it.
:func:`check_conclusions` checks the comparisons a notebook recorded in its ``results/chNN.json``
(``tests/test_conclusions.py``).

**What counts as a number** (in a markdown cell, or in the README):

- a decimal: ``0.974``, ``5.253``, ``7.4``, ``1.0e-5``; a dotted number with two or more dots, or one
  after "Python", "torch", "version" and the like, is a version (``torch 2.13.0``, ``Python 3.10``) and
  left out;
- a percentage of any size: ``97.3%``, ``6%``, ``100%`` (the first end of a range takes the sign of
  the second: ``75-88%`` is two percentages);
- an integer with thousands separators (``2,501``; ``124,439,808``) or of four or more digits
  (``8192``), except a bare ``1700``-``2099`` (a year);
- any integer with a magnitude or ratio suffix: ``124M``, ``20M``, ``50k``, ``1.5B``; ``10x``, ``3×``
  (a multiplier: a measured ratio is a result however short); and scientific notation: ``3e-4``.

Left out: one- to three-digit integers without a suffix (structural and settings: "4 layers",
"2 cores", "128 tokens", "3 epochs"; see below), numbers inside inline code, fenced code, LaTeX
(``$...$``, ``$$...$$``, ``\\(...\\)``), HTML tags and comments, URLs and link targets, dates
(``2026-11-25``), section/figure/chapter/exercise/table/issue/part numbers (``section 5.3``,
``Figure 4``, ``chapters 6-7``), heading and list numbering, and numbers glued to a word or an
identifier (``GPT-2``, ``float32``, ``L4/d256``, ``ch06``, ``r50k_base``, hashes).

Why three-digit integers are left out: in this course's prose they are nearly all settings that the
code fixes and the notebook prints anyway (``128``-token context, ``256`` wide, ``150`` steps,
``512`` labels); counting them would bury the few measured counts under entries that say "this is
the config". The price: a measured three-digit count in prose ("358 validation e-mails") is not
checked. Counts that grow with the data are four digits or more here and are checked.

**What backs a number** (any one of):

(a) the notebook's own outputs: stdout streams, and the ``text/plain``, ``text/markdown`` and
    ``text/html`` of displayed and returned values (pandas tables included; stderr is left out: it
    holds warnings and progress bars, not results). Markdown rendered by a code cell
    (``IPython.display.Markdown``) is output, so a sentence rendered from variables is backed by
    construction. The output must be the same quantity written at least as precisely, and round to
    what the prose writes: prose ``97.3%`` is backed by an output ``0.9733``, ``0.973``, ``97.33%`` or
    ``97.3%``, not by ``0.97``, ``97%``, ``97.4%`` or a bare ``97``; prose ``2,501`` by ``2501``; prose
    ``5.3M`` by ``5,308,160``; a percentage by a fraction only when that is written with a decimal
    point. Rounding is read from the prose as written, except after "about", "around", "roughly",
    "~" and the like, where an integer's trailing zeros are not significant ("about 6,000" is backed
    by 6,047; a bare "2,500" needs 2500).

    Where the output may be: a number with four or more significant digits (``5.253``, ``2,501``,
    ``124,439,808``; an integer's trailing zeros do not count) anywhere in the notebook's outputs;
    one with fewer (``97.3%``, ``7.4``, ``6%``, ``20M``) only in the outputs of its own section, the
    code cells under the same ``#``/``##`` heading. Why: a notebook prints a few hundred numbers,
    many of them of the same kind and range, so a three-digit match somewhere is often chance. In
    chapter 6 four numbers of a table of a separate 512-label experiment (91.6%, 93.3%, 93.7%,
    93.8%) "matched" the learning curve printed in the next section; shifting every number of the
    seven notebooks' prose by one in its last digit, 19% of the shifted numbers were still "backed"
    when any output of the notebook could back any number, 6.5% under this rule (mostly natural
    neighbours such as the ids 8,191 and 50,256 beside the vocabulary sizes 8,192 and 50,257). A
    summary cell that repeats an earlier section's figure renders it from the variable, or cites it
    as a fact, or writes it at the precision the run printed.
(b) a fact: the number as written is a key of ``notebooks/facts/<notebook stem>.json``, whose value
    is its source (``{"50,257": "GPT-2's vocabulary size (Radford et al. 2019; tiktoken's gpt2)"}``).
    A fact backs every place the notebook writes that number. An entry that backs nothing is stale
    and reported, as is an entry without a source (fewer than two words).
(c) a reproducing command: the markdown cell has a sentence with a word "reproduce..." and a command
    in backticks that exists in the repository (``python -m gpt2_core.<module>`` with a ``__main__``,
    ``python <path>.py``, ``torchrun ... -m gpt2_core.<module>``, ``make <target>``; its options are
    not checked), e.g. "Measured on a CPU; reproduce the table with `python -m gpt2_core.course.bench`."
    Every number of that cell is backed. A reproducing command that does not exist is reported.

Settings named in prose (a learning rate, an exercise's ``alpha``) are code values: write them as
code (```lr=3e-4```), which is left out, or print them.

**Direction words** (``beats``, ``better``, ``worse``, ``higher``, ``lower``, ``helps``, ``within the spread``,
... : :data:`DIRECTION`): a sentence of a notebook's static markdown that says one thing is ahead of another
is a conclusion, and a number it does not state can still contradict it (chapter 6 once said the recipe
"stands" while a row of its own table beat it). So such a sentence is a problem unless it is backed:

(a) rendered instead: a sentence a code cell renders from its run's numbers (``IPython.display.Markdown``,
    deciding the direction with :mod:`gpt2_core.finetuning.compare` where noise matters) is output, not
    static prose, and is not checked here;
(b) a claim: the facts list may also hold *claims*, keys of three or more words, each a piece of the
    sentence as written (markdown included) with its source as the value (``{"a longer vector pointing a
    similar way can score higher": "the dot product grows with the vectors' lengths (section 2)"}``);
    it backs every sentence that contains it. A claim that backs nothing is stale;
(c) a reproducing command in its cell, as for numbers.

Left out: questions (a sentence ending in ``?``), headings, hyphenated compounds (``lower-triangular``,
``best-of-k``), targets (``numbers to beat``, ``must beat it``), thresholds (``80% or better``), positions
(``the lower layers``, ``lower case``), and, as for numbers, code, LaTeX, links and italic spans (``*...*``:
titles of papers, named variants).

For the README: the numbers inside its generated blocks (between ``<!-- results:begin ... -->`` and
``<!-- results:end -->``, and between the benchmark markers of :mod:`gpt2_core.course.results`) are not
checked; any other is backed by a value in ``results/*.json`` (the chapters' results and the
benchmark files; four or more significant digits, as above) or by ``notebooks/facts/README.json``.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from ..finetuning.compare import from_record  # the library's rule decides; prose only checks it was followed
from .prose_numbers import (
    FACTS_DIR,
    MIN_GLOBAL_DIGITS,
    Found,
    Number,
    Outputs,
    Problem,
    claim_key,
    command_exists,
    fact_key,
    is_claim,
    mask,
    numbers_in_output,
    numbers_in_prose,
    output_text,
    read_facts,
    reproducing_commands,
    sentence_at,
)


def _sections(lines_before: Iterable[str]) -> int:
    """How many sections (``#`` and ``##`` headings) start in these (masked) lines."""
    return sum(1 for line in lines_before if re.match(r"\s{0,3}#{1,2}\s", line))


def _check_found(found: list[Found], backed: Callable[[Found], bool], facts: dict[str, str], facts_name: str,
                 where: Callable[[Found], str]) -> list[Problem]:
    problems, used = [], set()
    for f in found:
        key = fact_key(f.number.text)
        if key in facts:
            used.add(key)
            continue
        if not backed(f):
            problems.append(Problem("unbacked", f.number.text, where(f), f.sentence))
    problems += [Problem("stale fact", k, facts_name, "no number of the prose is this; remove the entry")
                 for k in facts if k not in used and not is_claim(k)]
    return problems


def _notebook_outputs(cells: list[dict]) -> Outputs:
    """The numbers each code cell of ``cells`` printed (what :func:`_output_text` shows of its outputs)."""
    out = Outputs()
    for i, cell in enumerate(cells):
        if cell.get("cell_type") != "code":
            continue
        numbers = [n for o in cell.get("outputs", []) for n in numbers_in_output(output_text(o))]
        out.by_cell[i] = numbers
        out.everywhere += numbers
    return out


def check_notebook(path: Path, facts_path: Path | None = None, root: Path | None = None) -> list[Problem]:
    """What in the prose of the notebook at ``path`` is not backed (empty: every number is backed)."""
    path = Path(path)
    root = Path(root) if root is not None else path.resolve().parent.parent
    facts_path = facts_path or path.parent / FACTS_DIR / f"{path.stem}.json"
    facts, problems = read_facts(facts_path)
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    outputs = _notebook_outputs(cells)

    # sections: a markdown line's section is the number of #/## headings above it; a code cell's likewise
    section_of_cell: dict[int, int] = {}
    found: list[Found] = []
    reproduced: set[int] = set()
    headings = 0
    for i, cell in enumerate(cells):
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        if cell.get("cell_type") != "markdown":
            section_of_cell[i] = headings
            continue
        masked = mask(source)
        commands = reproducing_commands(source)
        for command in commands:
            if command_exists(command, root):
                reproduced.add(i)
            else:
                problems.append(Problem("unknown command", command, f"cell {i}",
                                        "a reproducing command must exist in the repository"))
        for offset, number in numbers_in_prose(source, masked):
            section = headings + _sections(masked[:offset].splitlines())
            found.append(Found(number, i, section, sentence_at(source, offset), offset))
        headings += _sections(masked.splitlines())
        section_of_cell[i] = headings

    code_cells = sorted(outputs.by_cell)

    def nearby(f: Found) -> list[Number]:
        return [n for c in code_cells if section_of_cell[c] == f.section for n in outputs.by_cell[c]]

    def backed(f: Found) -> bool:
        if f.cell in reproduced:
            return True
        pool = outputs.everywhere if f.number.digits >= MIN_GLOBAL_DIGITS else nearby(f)
        return any(o.rounds_to(f.number) for o in pool)

    return problems + _check_found(found, backed, facts, facts_path.name, lambda f: f"cell {f.cell}")


# A word or phrase that says which of two things is ahead (see the module's doc); matched on masked prose.
DIRECTION = re.compile(
    r"(?<![\w-])(?:beat(?:s|en|ing)?|outperform(?:s|ed|ing)?|better|worse|best|worst|help(?:s|ed)|hurts?|wins?|"
    r"improve[sd]|ahead of|higher|lower|faster|slower|(?:more|less) accurate|"
    r"(?:within|beyond|outside|larger than|smaller than) the (?:seed )?(?:spread|noise))(?![\w-])", re.IGNORECASE)
# Direction words that state no result: a target ("numbers to beat", "must beat it"), a threshold ("80% or
# better") and a position ("the lower layers", "lower case").
_NOT_A_RESULT = re.compile(
    r"(?:\bto|\bmust) beat\b|\bor (?:better|worse)\b|\b(?:lower|higher) (?:layers?|blocks?|case)\b", re.IGNORECASE)
_ITALIC = re.compile(r"(?<![*\w])\*(?![*\s])[^*\n]+?(?<![*\s])\*(?![*\w])")


def _directions(source: str) -> list[tuple[str, str]]:
    """(word, sentence) for every sentence of a markdown cell that states a direction (once per sentence)."""
    masked = _ITALIC.sub(lambda m: " " * len(m.group(0)), mask(source))
    found: dict[str, str] = {}
    for m in DIRECTION.finditer(masked):
        line = masked[masked.rfind("\n", 0, m.start()) + 1:]
        if re.match(r"\s{0,3}#", line) or _NOT_A_RESULT.search(masked[max(0, m.start() - 12):m.end() + 12]):
            continue  # a heading, a target, a threshold or a position
        sentence = sentence_at(source, m.start())
        if not sentence.rstrip(" *_").endswith("?"):
            found.setdefault(sentence, m.group(0))
    return [(word, sentence) for sentence, word in found.items()]


def check_directions(path: Path, facts_path: Path | None = None, root: Path | None = None) -> list[Problem]:
    """The sentences of the notebook at ``path``'s static markdown that state a direction nothing backs
    (a claim in its facts list, or a reproducing command in its cell), and the stale claims."""
    path = Path(path)
    root = Path(root) if root is not None else path.resolve().parent.parent
    facts_path = facts_path or path.parent / FACTS_DIR / f"{path.stem}.json"
    claims = [k for k in read_facts(facts_path)[0] if is_claim(k)]
    problems, used = [], set()
    for i, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"]):
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        if cell.get("cell_type") != "markdown":
            continue
        reproduced = any(command_exists(c, root) for c in reproducing_commands(source))
        for word, sentence in _directions(source):
            backing = [c for c in claims if c in claim_key(sentence)]
            used.update(backing)
            if not (backing or reproduced):
                problems.append(Problem("unbacked direction", word, f"cell {i}", sentence))
    return problems + [Problem("stale claim", c, facts_path.name, "no direction sentence contains it; remove it")
                       for c in claims if c not in used]


def check_conclusions(notebook: Path, results: Path) -> list[Problem]:
    """Every comparison a notebook's run stated and recorded under ``conclusions`` in its ``results/chNN.json``
    (the records of :mod:`gpt2_core.finetuning.compare`): its verdict and sentence still follow from its recorded
    numbers, and the committed notebook's outputs show the sentence. Empty when all hold (or none is recorded)."""
    notebook, results = Path(notebook), Path(results)
    records = json.loads(results.read_text(encoding="utf-8")).get("conclusions", [])
    if not isinstance(records, list):
        return [Problem("bad conclusions", results.name, results.name, "'conclusions' must be a list of records")]
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    shown = claim_key(" ".join(output_text(o) for c in cells if c.get("cell_type") == "code"
                               for o in c.get("outputs", [])))
    problems = []
    for i, record in enumerate(records):
        where = f"{results.name} conclusions[{i}]"
        try:
            again = from_record(record)
        except (ValueError, TypeError, KeyError) as e:
            problems.append(Problem("bad conclusion", str(record)[:80], where, str(e)))
            continue
        if (again.verdict, again.phrase) != (record.get("verdict"), record.get("phrase")):
            problems.append(Problem("conclusion does not follow", record.get("verdict", ""), where,
                                    f"recorded {record.get('phrase')!r}; its numbers say {again.phrase!r}"))
        elif claim_key(again.phrase) not in shown:
            problems.append(Problem("conclusion not shown", again.verdict, where,
                                    f"{notebook.name}'s outputs do not contain {again.phrase!r}"))
    return problems


def _json_numbers(value: object) -> list[Number]:
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, (int, float)):
        return numbers_in_output(repr(value))
    if isinstance(value, str):
        return numbers_in_output(value)
    if isinstance(value, dict):
        return [n for v in value.values() for n in _json_numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _json_numbers(v)]
    return []


def _generated_blocks(text: str) -> list[tuple[int, int]]:
    """(start, end) of every block of ``text`` that a command generates: between ``<!-- NAME:begin ...-->``
    and ``<!-- NAME:end -->`` (the results table, the benchmark tables)."""
    blocks = []
    for m in re.finditer(r"<!--\s*([\w-]+):begin\b.*?-->", text):
        end = text.find(f"<!-- {m.group(1)}:end -->", m.end())
        if end >= 0:
            blocks.append((m.start(), end))
    return blocks


def check_readme(path: Path, results: Path | None = None, facts_path: Path | None = None) -> list[Problem]:
    """What in the README's prose is not backed: by a generated block, ``results/*.json`` or its facts list."""
    path = Path(path)
    root = path.resolve().parent
    results = results or root / "results"
    facts_path = facts_path or root / "notebooks" / FACTS_DIR / "README.json"
    facts, problems = read_facts(facts_path)
    text = path.read_text(encoding="utf-8")
    masked = mask(text)
    for start, end in _generated_blocks(text):
        masked = masked[:start] + re.sub(r"[^\n]", " ", masked[start:end]) + masked[end:]
    printed = [n for file in sorted(results.glob("*.json"))
               for n in _json_numbers(json.loads(file.read_text(encoding="utf-8")))]
    found = [Found(n, 0, 0, sentence_at(text, offset), offset) for offset, n in numbers_in_prose(text, masked)]

    def backed(f: Found) -> bool:
        return f.number.digits >= MIN_GLOBAL_DIGITS and any(o.rounds_to(f.number) for o in printed)

    return problems + _check_found(found, backed, facts, facts_path.name,
                                   lambda f: f"{path.name} line {text.count(chr(10), 0, f.offset) + 1}")


def check(path: Path) -> list[Problem]:
    """:func:`check_notebook` and :func:`check_directions` for a ``.ipynb``, :func:`check_readme` for anything
    else (a README)."""
    path = Path(path)
    return check_notebook(path) + check_directions(path) if path.suffix == ".ipynb" else check_readme(path)


def main(paths: list[str]) -> int:
    """Print every unbacked number of each notebook or README in ``paths``; 1 if there is any."""
    if not paths:
        print("usage: python -m gpt2_core.course.notebook_tools check-prose NOTEBOOK.ipynb ... [README.md]",
              file=sys.stderr)
        return 2
    total = 0
    for p in paths:
        problems = check(Path(p))
        total += len(problems)
        for problem in problems:
            print(f"{p}: {problem}")
        print(f"{p}: {len(problems)} problem(s)")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
