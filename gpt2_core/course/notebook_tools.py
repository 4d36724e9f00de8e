"""Maintainer tools for the notebooks: the jupytext pairing check that CI runs, and the prose check.

``python -m gpt2_core.course.notebook_tools check-pairing notebooks/*.ipynb`` fails when a notebook has
no paired percent-format ``.py`` in ``scripts/`` beside it, or when the two differ (run ``make sync``
to fix). The scripts live in a subfolder so that a learner's file browser shows each chapter once.

``python -m gpt2_core.course.notebook_tools check-prose notebooks/*.ipynb README.md`` lists every number in
the notebooks' markdown (and the README) that the run's outputs, a facts list or a reproducing command
do not back (the rules: :mod:`gpt2_core.course.prose`).

``python -m gpt2_core.course.notebook_tools committed-runs FOLDER notebooks/*.ipynb`` prints the notebooks for
``make nbval`` to re-execute: each one, or the committed copy (written into FOLDER) where the working tree's
differs from it in outputs only. A learner's saved run, or one saved with its outputs cleared, holds no
reference outputs for nbval to compare with; the committed run does.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jupytext

from . import prose

SCRIPTS = "scripts"  # the paired percent scripts: notebooks/scripts/NN_name.py
FORMATS = f"ipynb,{SCRIPTS}//py:percent"


def pairing_problems(notebook: Path) -> list[str]:
    """Reasons why ``notebook`` and its paired ``.py`` are out of sync (empty when in sync)."""
    script = notebook.parent / SCRIPTS / f"{notebook.stem}.py"
    if not script.exists():
        return [f"{notebook}: no paired script {script}; run `jupytext --set-formats {FORMATS} {notebook}`"]
    nb_text = jupytext.writes(jupytext.read(notebook), fmt="py:percent")
    py_text = jupytext.writes(jupytext.read(script), fmt="py:percent")
    if nb_text != py_text:
        return [f"{notebook}: differs from {script.name}; run `make sync` (jupytext --sync)"]
    formats = jupytext.read(notebook).metadata.get("jupytext", {}).get("formats", "")
    if formats != FORMATS:
        return [f"{notebook}: not set up for pairing (jupytext formats={formats!r}); use {FORMATS}"]
    return []


def committed_bytes(path: Path) -> bytes | None:
    """``path`` as git's HEAD holds it; None where git cannot say (no git, not a repository, a new file)."""
    path = Path(path).resolve()
    try:
        top = subprocess.run(["git", "-C", str(path.parent), "rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, timeout=60)
        if top.returncode != 0:
            return None
        relative = path.relative_to(Path(top.stdout.strip()).resolve()).as_posix()
        done = subprocess.run(["git", "-C", top.stdout.strip(), "show", f"HEAD:{relative}"], capture_output=True,
                              timeout=60)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def committed_runs(notebooks: list[Path], folder: Path) -> list[Path]:
    """Each notebook, or HEAD's copy of it written into ``folder`` where the two differ in outputs (and metadata)
    only: what nbval should re-execute and compare with. A notebook whose code or prose differs is someone's
    work in progress and is kept."""
    chosen = []
    for notebook in notebooks:
        head = committed_bytes(notebook)
        if head is not None and head != notebook.read_bytes():
            ours = jupytext.writes(jupytext.read(notebook), fmt="py:percent")
            theirs = jupytext.writes(jupytext.reads(head.decode("utf-8"), fmt="ipynb"), fmt="py:percent")
            if ours == theirs:
                folder.mkdir(parents=True, exist_ok=True)
                (folder / notebook.name).write_bytes(head)
                notebook = folder / notebook.name
        chosen.append(notebook)
    return chosen


WORDS_PER_MINUTE, LINES_PER_MINUTE = 200, 20  # reading prose; following code (3 s a line, not writing it)
_OPEN = re.compile(r"\((?:open)\)", re.IGNORECASE)


def reading_stats(notebook: Path) -> dict:
    """What a learner reads in ``notebook``: words of prose (markdown cells, code spans and formulas
    included), lines of code (non-empty, comments left out), exercises (``check_exercise`` calls) and open
    exercises (marked "(Open)"), and the reading time in minutes, rounded up to 5."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    prose_text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    lines = sum(1 for cell in code for line in cell.splitlines() if line.strip() and not line.strip().startswith("#"))
    words = len(prose_text.split())
    minutes = words / WORDS_PER_MINUTE + lines / LINES_PER_MINUTE
    return {"words": words, "lines": lines, "minutes": 5 * max(1, -(-round(minutes) // 5)),
            "exercises": sum(len(re.findall(r"check_exercise\(\s*[\"']", cell)) for cell in code),
            "open": len(_OPEN.findall(prose_text))}


def reading_table(notebooks: list[Path], compute_minutes: dict[int, float]) -> str:
    """The README's learner's-map table, one row per notebook and a total (markdown)."""
    rows = ["| # | chapter | prose | code | reading time | exercises | compute (default, 2 CPU cores) |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    total = {"words": 0, "lines": 0, "minutes": 0, "exercises": 0, "open": 0}
    for nb in sorted(notebooks):
        n = int(nb.stem[:2])
        stats = reading_stats(nb)
        for key in total:
            total[key] += stats[key]
        exercises = f"{stats['exercises']}" + (f" + {stats['open']} open" if stats["open"] else "")
        compute = f"{compute_minutes[n]:.1f} min" if n in compute_minutes else "not run"
        name = nb.stem[3:].replace("_", " ")
        rows.append(f"| {n} | {name} | {stats['words']:,} words | {stats['lines']:,} lines | {stats['minutes']} min "
                    f"| {exercises} | {compute} |")
    hours = total["minutes"] / 60
    rows.append(f"| | **all {len(notebooks)}** | {total['words']:,} words | {total['lines']:,} lines | "
                f"**about {hours:.1f} h** | {total['exercises']} + {total['open']} open | "
                f"**{sum(compute_minutes.values()):.0f} min** |")
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    if argv[:1] == ["check-prose"]:
        return prose.main(argv[1:])
    if argv[:1] == ["committed-runs"] and len(argv) >= 3:
        print(" ".join(str(p) for p in committed_runs([Path(p) for p in argv[2:]], Path(argv[1]))))
        return 0
    if len(argv) < 1 or argv[0] != "check-pairing":
        print("usage: python -m gpt2_core.course.notebook_tools check-pairing NOTEBOOK.ipynb ...\n"
              "       python -m gpt2_core.course.notebook_tools check-prose NOTEBOOK.ipynb ... [README.md]\n"
              "       python -m gpt2_core.course.notebook_tools committed-runs FOLDER NOTEBOOK.ipynb ...",
              file=sys.stderr)
        return 2
    notebooks = [Path(p) for p in argv[1:]]
    problems = [msg for nb in notebooks for msg in pairing_problems(nb)]
    for msg in problems:
        print(msg, file=sys.stderr)
    print(f"pairing: {len(notebooks) - len({m.split(':')[0] for m in problems})}/{len(notebooks)} notebooks in sync")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
