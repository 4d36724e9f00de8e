"""The package's two layers (COURSE_DESIGN.md, section 1): the library (text, model, pretraining, finetuning) never
imports the course's tooling (gpt2_core.course), and a chapter's module never imports a later chapter's."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gpt2_core"
LIBRARY = ("text", "model", "pretraining", "finetuning")  # in chapter order
BELOW_THE_LIBRARY = ("checks", "files", "profile")  # foundations every layer may use


def _imports(path: Path) -> set[str]:
    """The gpt2_core modules ``path`` imports, as dotted names (relative imports resolved)."""
    package = ["gpt2_core", *path.relative_to(PACKAGE).parent.parts]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found |= {module} | {f"{module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {m for m in found if m.startswith("gpt2_core")}


def _files(room: str) -> list[Path]:
    return sorted((PACKAGE / room).rglob("*.py"))


@pytest.mark.parametrize("room", LIBRARY)
def test_the_library_never_imports_the_course_tooling_or_the_teaching_aids(room):
    for path in _files(room):
        bad = sorted(m for m in _imports(path) if m.split(".")[1] in ("course", "figures", "exercises"))
        assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}: the library must read without the tooling"


@pytest.mark.parametrize("room", LIBRARY)
def test_a_chapter_never_imports_a_later_chapter(room):
    later = LIBRARY[LIBRARY.index(room) + 1:]
    for path in _files(room):
        bad = sorted(m for m in _imports(path) if m.split(".")[1] in later)
        assert not bad, f"{path.relative_to(PACKAGE)} imports the later {bad}"


def test_the_foundations_import_only_each_other():
    for name in BELOW_THE_LIBRARY:
        path = PACKAGE / f"{name}.py"
        bad = sorted(m for m in _imports(path) if m.split(".")[1] not in BELOW_THE_LIBRARY)
        assert not bad, f"{path.name} imports {bad}"


def test_the_import_reader_sees_relative_imports():
    """The checks above can fail: the reader resolves the package's relative imports."""
    assert "gpt2_core.course.results" in _imports(PACKAGE / "course" / "spam_runs.py")
    assert "gpt2_core.model.gpt" in _imports(PACKAGE / "pretraining" / "step.py")
