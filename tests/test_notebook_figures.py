"""The committed notebooks teach with pictures: at least 4 figures per chapter and 35 in the course,
each drawn by a cell that gives it a title (issue 13). Counted in the committed outputs, which
`make execute` writes at the default profile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from committed import judge_committed

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9]*.ipynb"))


def _figure_cells(path: Path) -> list[tuple[str, int]]:
    """(source, number of images) of every code cell whose committed outputs hold an image."""
    cells = json.loads(path.read_text())["cells"]
    found = []
    for cell in cells:
        images = sum("image/png" in out.get("data", {}) for out in cell.get("outputs", []))
        if images:
            found.append(("".join(cell["source"]), images))
    return found


def _too_few_or_untitled(paths: list[Path]) -> list[str]:
    problems = []
    for path in paths:
        cells = _figure_cells(path)
        if sum(n for _, n in cells) < 4:
            problems.append(f"{path.name}: fewer than 4 figures in the committed outputs")
        # a title set directly, or one of the course's drawing helpers, which always set one
        problems += [f"{path.name}: a figure without a title: {source[:200]}" for source, _ in cells
                     if not ("title" in source or "_diagram(" in source or "plot_" in source)]
    return problems


# Judged on the committed run (tests/committed.py): a learner may have saved a run with outputs cleared.
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_chapter_has_at_least_four_titled_figures(path, tmp_path):
    assert not judge_committed([path], _too_few_or_untitled, tmp_path)


def test_the_course_has_at_least_35_figures(tmp_path):
    assert len(NOTEBOOKS) == 8

    def too_few(paths: list[Path]) -> list[str]:
        total = sum(n for path in paths for _, n in _figure_cells(path))
        return [] if total >= 35 else [f"{total} figures in the course, fewer than 35"]

    assert not judge_committed(NOTEBOOKS, too_few, tmp_path)
