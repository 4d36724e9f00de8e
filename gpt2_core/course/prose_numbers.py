"""Reading a notebook's prose and outputs for :mod:`gpt2_core.course.prose` (the rules themselves, and what
backs a number or a direction, are documented there): what counts as a number in prose (and how precisely it
is written), the numbers in an output, the text of an output, the sentence around a place, the facts list and
the reproducing commands.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path

FACTS_DIR = "facts"  # notebooks/facts/<stem>.json
MIN_INTEGER_DIGITS = 4  # a bare integer counts from this many digits (or with thousands separators)
MIN_GLOBAL_DIGITS = 4  # significant digits from which an output anywhere in the notebook may back a number
MAGNITUDES = {"k": 3, "K": 3, "M": 6, "B": 9}
APPROXIMATE = re.compile(r"(?:\babout|\baround|\broughly|\bapproximately|\bnearly|\balmost|\bsome|~|≈|∼)\s*$",
                         re.IGNORECASE)
REFERENCE = re.compile(
    r"(?:\bsections?|§|\bfig(?:ure)?s?\.?|\bchapters?|\bch\.|\bexercises?|\btables?|\bissues?|\bparts?|"
    r"\bappendix|\bequations?|\beq\.|\bcells?|\bnotebooks?|\blessons?|#)"
    r"\s*(?:\d+(?:\.\d+)*\s*(?:,|\band\b|\bor\b|\bto\b|–|-|&)\s*)*$", re.IGNORECASE)
# a number as written: grouped thousands first, then dotted (decimals and versions), then plain / scientific
TOKEN = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\d)|\d+(?:\.\d+)+(?:[eE][-+]?\d+)?|\d+(?:[eE][-+]?\d+)?")
SUFFIX = re.compile(r"\s?%|[x×](?![A-Za-z0-9_])|[kKM](?![A-Za-z0-9_])")
BILLION = re.compile(r"B(?![A-Za-z0-9_])")  # 1.5B, 175B; not 2B (a batch of 2B)
WORD_MAGNITUDE = re.compile(r"[\s-](thousand|million|billion)\b", re.IGNORECASE)
WORD_SCALE = {"thousand": "k", "million": "M", "billion": "B"}
REPRODUCE = re.compile(r"\breproduc", re.IGNORECASE)
VERSION_OF = re.compile(r"\b(?:python|torch|pytorch|cuda|numpy|version|release)\s*$", re.IGNORECASE)

_MASKS = [
    re.compile(r"^(?P<f>```|~~~).*?^(?P=f)[^\n]*$", re.M | re.S),  # fenced code
    re.compile(r"(?P<t>`+)(?!`).+?(?<!`)(?P=t)(?!`)", re.S),  # inline code, any number of backticks
    re.compile(r"\$\$.+?\$\$", re.S),  # display math
    re.compile(r"\$(?!\s)[^$\n]+?(?<!\s)\$"),  # inline math
    re.compile(r"\\\(.+?\\\)|\\\[.+?\\\]", re.S),
    re.compile(r"<!--.*?-->", re.S),  # HTML comments (the README's markers too)
    re.compile(r"</?[A-Za-z][^>\n]*>"),  # HTML tags and their attributes
    re.compile(r"\]\([^)\s]*(?:\s+\"[^\"]*\")?\)"),  # link and image targets
    re.compile(r"^\s*\[[^\]]+\]:\s*\S+.*$", re.M),  # reference-style link definitions
    re.compile(r"\b(?:https?|ftp)://\S+|\bwww\.\S+"),  # bare URLs
    re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?\b"),  # dates
    re.compile(r"\b\d{1,2}:\d{2}(?::\d{2})?\b"),  # clock times
    re.compile(r"(?<=#\s)\d+(?:\.\d+)*\.?(?=\s)"),  # heading numbering: "## 5.3 ..." (the # kept: it ends a section)
    re.compile(r"^\s*\d+[.)]\s", re.M),  # numbered-list markers
]


@dataclass(frozen=True)
class Number:
    """A number as written: ``value`` in its own scale (97.3 for "97.3%"), ``step`` the precision it is
    written at (0.1), ``percent`` whether it is a percentage."""

    text: str
    value: Decimal
    step: Decimal
    percent: bool = False
    digits: int = 0  # significant digits written (what the chance of a match depends on)

    def rounds_to(self, other: Number) -> bool:
        """Whether this (printed) number is ``other`` (from the prose) written at least as precisely."""
        if self.percent and not other.percent:
            candidates = [(self.value / 100, self.step / 100)]
        elif other.percent and not self.percent:  # a fraction written as a decimal: 0.9733 is 97.33%
            candidates = [(self.value * 100, self.step * 100)] if self.step < 1 else []
        else:
            candidates = [(self.value, self.step)]
        for value, step in candidates:
            if step > other.step:
                continue
            for mode in (ROUND_HALF_UP, ROUND_HALF_EVEN):
                try:
                    if (abs(value) / other.step).quantize(Decimal(1), rounding=mode) * other.step == abs(other.value):
                        return True
                except InvalidOperation:  # more digits than Decimal's precision: not the same number
                    return False
        return False


@dataclass(frozen=True)
class Found:
    """A number found in prose: where it is and the sentence it sits in."""

    number: Number
    cell: int  # the markdown cell's index (the README: 0)
    section: int  # the index of the ``#``/``##`` section it is in
    sentence: str
    offset: int = 0


@dataclass
class Problem:
    kind: str  # "unbacked", "stale fact", "fact without source", "unknown command", "bad facts file"
    text: str  # the number (or fact key, or command)
    where: str  # "cell 34" or "README.md"
    sentence: str = ""

    def __str__(self) -> str:
        tail = f": {self.sentence}" if self.sentence else ""
        return f"{self.where}: {self.kind} {self.text!r}{tail}"


@dataclass
class Outputs:
    """The numbers printed by a notebook's code cells: all of them, and cell by cell."""

    everywhere: list[Number] = field(default_factory=list)
    by_cell: dict[int, list[Number]] = field(default_factory=dict)


def _decimal(text: str) -> Decimal:
    return Decimal(text.replace(",", ""))


def _step(text: str) -> Decimal:
    """The precision of a written number: 0.001 for "0.974", 1 for "2,501", 1e-5 for "1.0e-4"."""
    mantissa, _, exponent = text.lower().replace(",", "").partition("e")
    decimals = len(mantissa.partition(".")[2])
    return Decimal(1).scaleb(-decimals + (int(exponent) if exponent else 0))


def _significant(text: str) -> int:
    """Significant digits as far as a chance match goes: an integer's trailing zeros do not count (round
    numbers such as 2,500 are printed far more often than their share)."""
    mantissa = text.lower().replace(",", "").partition("e")[0]
    digits = mantissa.replace(".", "").lstrip("0")
    if "." not in mantissa:
        digits = digits.rstrip("0")
    return max(1, len(digits))


def _make_number(text: str, suffix: str = "", approximate: bool = False) -> Number:
    """A :class:`Number` from its written form: ``_make_number("97.3", "%")``, ``_make_number("5.3", "M")``."""
    suffix = suffix.strip()
    value, step = _decimal(text), _step(text)
    digits = _significant(text)
    if approximate and "." not in text and "e" not in text.lower():
        mantissa = text.replace(",", "")
        zeros = len(mantissa) - len(mantissa.rstrip("0")) if mantissa.strip("0") else 0
        step = Decimal(1).scaleb(min(zeros, len(mantissa) - 1))
    if suffix in MAGNITUDES:
        value, step = value.scaleb(MAGNITUDES[suffix]), step.scaleb(MAGNITUDES[suffix])
    return Number(text + suffix, value, step, suffix == "%", digits)


def mask(text: str) -> str:
    """``text`` with what is not prose (code, LaTeX, HTML, URLs, dates, numbering) blanked out, same length."""
    for pattern in _MASKS:
        text = pattern.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)
    return text


def _range_percent(masked: str, end: int) -> bool:
    """Whether the number ending at ``end`` opens a range of percentages: "75-88%", "0.5 to 1%"."""
    return re.match(r"\s?(?:-|–|—|to)\s?\d+(?:\.\d+)?\s?%", masked[end:]) is not None


def numbers_in_prose(text: str, masked: str | None = None) -> list[tuple[int, Number]]:
    """(offset, number) for every number the prose ``text`` states, by the rules of this module's doc."""
    masked = mask(text) if masked is None else masked
    found = []
    for m in TOKEN.finditer(masked):
        written, start, end = m.group(0), m.start(), m.end()
        before = masked[max(0, start - 60):start]
        prev = before[-1:] if before else ""
        if prev and (prev.isalnum() or prev in "_.\\"):
            continue  # glued to a word or an identifier: GPT-2 is not a number, nor is L4/d256
        if prev in "-–" and len(before) >= 2 and (before[-2].isalpha() or before[-2] in "_"):
            continue  # gpt-2, top-5, text-davinci-003
        if written.count(".") >= 2 or ("." in written and VERSION_OF.search(before)):
            continue  # a version: 2.13.0, Python 3.10
        suffix_match = SUFFIX.match(masked, end)
        suffix = suffix_match.group(0) if suffix_match else ""
        if not suffix and BILLION.match(masked, end) and ("." in written or len(written) >= 2):
            suffix = "B"
        word = WORD_MAGNITUDE.match(masked, end) if not suffix else None
        after = masked[end + len(suffix):end + len(suffix) + 1]
        if not suffix and after and (after.isalnum() or after == "_"):
            continue  # glued to what follows: 2nd, 3D, 306cd27f..., float32 written 32bit
        if REFERENCE.search(before) and "," not in written and len(written.split(".")[0]) <= 3:
            continue  # section 5.3, Figure 4, chapters 6-7, exercise 2 (not "the table 50,257 x 768")
        plain_integer = re.fullmatch(r"\d+", written) is not None
        if not suffix and not word and _range_percent(masked, end):
            found.append((start, _make_number(written, "%", bool(APPROXIMATE.search(before)))))
            continue  # the first end of "75-88%"
        if word:  # 1.5 billion, 20 million: the value scaled, the text as written
            scaled = _make_number(written, WORD_SCALE[word.group(1).lower()], bool(APPROXIMATE.search(before)))
            found.append((start, Number(f"{written} {word.group(1)}", scaled.value, scaled.step, False,
                                        scaled.digits)))
            continue
        if not suffix and plain_integer and (len(written) < MIN_INTEGER_DIGITS
                                             or (len(written) == 4 and 1700 <= int(written) <= 2099)):
            continue  # structural (4 layers, 2 cores, 128 tokens) or a year
        try:
            number = _make_number(written, suffix, approximate=bool(APPROXIMATE.search(before)))
        except InvalidOperation:
            continue
        found.append((start, number))
    return found


def numbers_in_output(text: str) -> list[Number]:
    """Every number printed in ``text`` (an output), read leniently: what follows a number may be a unit."""
    out = []
    for m in TOKEN.finditer(text):
        written, start, end = m.group(0), m.start(), m.end()
        prev = text[start - 1:start]
        if prev and (prev.isalpha() or prev in "_."):
            continue
        if written.count(".") >= 2:
            for part in re.findall(r"\d+\.\d+", written):  # "1.2.3": keep the readings 1.2 (and 2.3 is unlikely)
                out.append(_make_number(part))
            continue
        suffix_match = SUFFIX.match(text, end)
        suffix = suffix_match.group(0) if suffix_match else ""
        try:
            out.append(_make_number(written, suffix))
        except InvalidOperation:
            continue
    return out


def output_text(output: dict) -> str:
    """The text a reader sees of one output: stdout, and the plain/markdown/html of a value (tags stripped)."""
    def joined(value: object) -> str:
        return "".join(value) if isinstance(value, list) else str(value)

    if output.get("output_type") == "stream":
        return joined(output.get("text", "")) if output.get("name") == "stdout" else ""
    data = output.get("data", {})
    parts = [joined(data[k]) for k in ("text/plain", "text/markdown") if k in data]
    if "text/html" in data:
        parts.append(html.unescape(re.sub(r"<[^>]+>", " ", joined(data["text/html"]))))
    return "\n".join(parts)


def sentence_at(text: str, offset: int) -> str:
    """The sentence (or table row) of ``text`` around ``offset``, on one line."""
    line_start = text.rfind("\n", 0, offset) + 1
    line_end = text.find("\n", offset)
    line_end = len(text) if line_end < 0 else line_end
    if text[line_start:line_end].lstrip().startswith("|"):
        return " ".join(text[line_start:line_end].split())
    blank = text.rfind("\n\n", 0, offset)
    para_start = blank + 2 if blank >= 0 else 0
    para_end = text.find("\n\n", offset)
    para_end = len(text) if para_end < 0 else para_end
    para = text[para_start:para_end]
    at = offset - para_start
    bounds = [0] + [m.end() for m in re.finditer(r"[.!?:;]\s+(?=[A-Z*(\[`\"'0-9-])", para)] + [len(para)]
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        if lo <= at < hi:
            sentence = " ".join(para[lo:hi].split())
            return sentence if len(sentence) <= 400 else sentence[:397] + "..."
    return " ".join(para.split())[:400]


def command_exists(command: str, root: Path) -> bool:
    """Whether a reproducing command names something in the repository (a module with a ``__main__``,
    a script, a make target); its options are not checked."""
    words = command.split()
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", words[0]):
        words = words[1:]  # GPT2_COURSE_PROFILE=default ...
    if not words:
        return False
    if words[0] == "make":
        targets = [w for w in words[1:] if not w.startswith("-") and "=" not in w] or ["all"]
        makefile = root / "Makefile"
        text = makefile.read_text(encoding="utf-8") if makefile.is_file() else ""
        return all(re.search(rf"^{re.escape(t)}\s*:", text, re.M) for t in targets)
    if re.fullmatch(r"(?:\S*/)?python3?(?:\.\d+)?|torchrun", words[0]):
        rest = words[1:]
        if "-m" in rest and rest.index("-m") + 1 < len(rest):
            module = rest[rest.index("-m") + 1]
            if not module.startswith("gpt2_core"):
                return False
            base = root.joinpath(*module.split("."))
            if (base / "__main__.py").is_file():
                return True
            file = base.with_suffix(".py")
            return file.is_file() and "__main__" in file.read_text(encoding="utf-8")
        scripts = [w for w in rest if w.endswith(".py")]
        return bool(scripts) and (root / scripts[0]).is_file()
    return False


def reproducing_commands(text: str) -> list[str]:
    """The commands in backticks of the sentences of ``text`` that say they reproduce something."""
    commands = []
    for para in re.split(r"\n\s*\n", text):
        for sentence in re.split(r"(?<=[.!?;])\s+", para):
            if REPRODUCE.search(re.sub(r"`[^`]*`", "", sentence)):
                commands += [c for c in re.findall(r"`([^`]+)`", sentence)
                             if re.match(r"\s*(?:[A-Za-z_]\w*=\S*\s+)*(?:make|torchrun|(?:\S*/)?python3?)\b", c)]
    return commands


def read_facts(path: Path) -> tuple[dict[str, str], list[Problem]]:
    """The facts list at ``path`` ({number as written: its source}) and what is wrong with it."""
    if not path.is_file():
        return {}, []
    try:
        facts = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        return {}, [Problem("bad facts file", str(path), path.name, str(e))]
    if not isinstance(facts, dict):
        return {}, [Problem("bad facts file", str(path), path.name, "must be a JSON object {number: source}")]
    problems = [Problem("fact without source", k, path.name) for k, v in facts.items()
                if not isinstance(v, str) or len(v.split()) < 2]
    return {(claim_key(k) if is_claim(k) else fact_key(k)): v for k, v in facts.items()}, problems


def fact_key(text: str) -> str:
    """How a number is looked up in a facts list: as written, without spaces, ``×`` read as ``x``."""
    return "".join(text.split()).replace("×", "x")


def is_claim(key: str) -> bool:
    """Whether a facts-list key is a claim (a piece of a sentence: three or more words), not a number."""
    return len(key.split()) >= 3


def claim_key(text: str) -> str:
    """How a claim is matched against a sentence: as written, runs of whitespace read as one space."""
    return " ".join(text.split())
