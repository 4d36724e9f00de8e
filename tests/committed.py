"""The committed run of a notebook, whatever a learner's run did to their copy.

A learner who runs a chapter in JupyterLab (or with ``jupyter nbconvert --execute --inplace``) saves their
run's outputs over the committed ones: other numbers, other figures, other wall times. The tests that read
a notebook's outputs judge the committed run, so following the course never turns the repository red:

- the working-tree copy is checked first (in CI, a fresh clone, it *is* the committed one, so CI stays strict);
- where it has problems and differs from the copy in git's HEAD, HEAD's copy is checked instead: its problems
  fail the test; none, and the test is skipped with one line naming the notebook that holds another run.

Test files import this module directly (``from committed import judge_committed``), as they do conftest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from gpt2_core.course.notebook_tools import committed_bytes

ROOT = Path(__file__).resolve().parent.parent


def committed_copies(paths: Sequence[Path], folder: Path) -> tuple[list[Path], list[str]]:
    """(HEAD's copy of each of ``paths``, written into ``folder`` where it differs from the working tree, else
    the path itself; the names of the paths that differ)."""
    copies, differ = [], []
    for path in paths:
        head = committed_bytes(path)
        if head is None or head == path.read_bytes():
            copies.append(path)
            continue
        folder.mkdir(parents=True, exist_ok=True)
        copy = folder / path.name
        copy.write_bytes(head)
        copies.append(copy)
        differ.append(Path(path).resolve().relative_to(ROOT).as_posix())
    return copies, differ


def judge_committed(paths: Sequence[Path], problems: Callable[[list[Path]], list], folder: Path) -> list:
    """``problems(paths)`` for the committed run: the working-tree files' problems, unless they have some and
    a file differs from HEAD's; then HEAD's copies' problems, and none skips the test with one line naming
    the files that hold another run. ``folder``: where HEAD's copies are written (a test's tmp_path)."""
    found = problems(list(paths))
    if not found:
        return []
    copies, differ = committed_copies(paths, folder)
    if not differ:
        return found  # the committed run itself: its problems stand
    found_there = problems(copies)
    if found_there:
        return found_there
    pytest.skip(f"{', '.join(differ)} holds a run other than the committed one (yours?), whose outputs this test "
                f"does not judge; the committed run passes. `git checkout {' '.join(differ)}` restores it")
    return []  # not reached: pytest.skip raises
