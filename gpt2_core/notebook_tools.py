"""Maintainer tools for the notebooks: the jupytext pairing check that CI runs, and the prose check.

``python -m gpt2_core.notebook_tools check-pairing notebooks/*.ipynb`` fails when a notebook has
no paired percent-format ``.py`` in ``scripts/`` beside it, or when the two differ (run ``make sync``
to fix). The scripts live in a subfolder so that a learner's file browser shows each chapter once.

``python -m gpt2_core.notebook_tools check-prose notebooks/*.ipynb README.md`` lists every number in
the notebooks' markdown (and the README) that the run's outputs, a facts list or a reproducing command
do not back (the rules: :mod:`gpt2_core.prose`).
"""

from __future__ import annotations

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


def main(argv: list[str]) -> int:
    if argv[:1] == ["check-prose"]:
        return prose.main(argv[1:])
    if len(argv) < 1 or argv[0] != "check-pairing":
        print("usage: python -m gpt2_core.notebook_tools check-pairing NOTEBOOK.ipynb ...\n"
              "       python -m gpt2_core.notebook_tools check-prose NOTEBOOK.ipynb ... [README.md]", file=sys.stderr)
        return 2
    notebooks = [Path(p) for p in argv[1:]]
    problems = [msg for nb in notebooks for msg in pairing_problems(nb)]
    for msg in problems:
        print(msg, file=sys.stderr)
    print(f"pairing: {len(notebooks) - len({m.split(':')[0] for m in problems})}/{len(notebooks)} notebooks in sync")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
