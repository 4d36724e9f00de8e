"""The committed notebooks teach with pictures: at least 4 figures per chapter and 35 in the course,
each drawn by a cell that gives it a title (issue 13). Counted in the committed outputs, which
`make execute` writes at the default profile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_chapter_has_at_least_four_titled_figures(path):
    cells = _figure_cells(path)
    assert sum(n for _, n in cells) >= 4, f"{path.name}: fewer than 4 figures in the committed outputs"
    for source, _ in cells:
        # a title set directly, or one of the course's drawing helpers, which always set one
        assert "title" in source or "_diagram(" in source or "plot_" in source, source[:200]


def test_the_course_has_at_least_35_figures():
    assert len(NOTEBOOKS) == 8
    assert sum(n for path in NOTEBOOKS for _, n in _figure_cells(path)) >= 35
