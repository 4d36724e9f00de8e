"""Tests for gpt2_core.course.notebook_tools: the pairing check (notebooks/NN.ipynb <-> notebooks/scripts/NN.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

from gpt2_core.course.notebook_tools import FORMATS, SCRIPTS, main, pairing_problems

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9]*.ipynb"))


def test_every_notebook_is_paired_with_a_script_in_the_subfolder():
    assert len(NOTEBOOKS) == 8
    for nb in NOTEBOOKS:
        assert (nb.parent / SCRIPTS / f"{nb.stem}.py").is_file()
        assert pairing_problems(nb) == []
    # the file browser shows each chapter once: no script beside the notebooks
    assert not list(NOTEBOOKS[0].parent.glob("*.py"))


def test_a_stale_or_missing_script_is_reported(tmp_path, capsys):
    nb = tmp_path / NOTEBOOKS[0].name
    shutil.copy(NOTEBOOKS[0], nb)
    assert "no paired script" in pairing_problems(nb)[0] and FORMATS in pairing_problems(nb)[0]
    script = tmp_path / SCRIPTS / f"{nb.stem}.py"
    script.parent.mkdir()
    script.write_text(NOTEBOOKS[0].with_name(SCRIPTS).joinpath(f"{nb.stem}.py").read_text() + "\n# %%\nx = 1\n")
    assert "differs" in pairing_problems(nb)[0]
    assert main(["check-pairing", str(nb)]) == 1 and "0/1 notebooks in sync" in capsys.readouterr().out
    assert main(["nonsense"]) == 2


def test_reading_stats_count_prose_code_and_exercises(tmp_path):
    import json

    from gpt2_core.course.notebook_tools import reading_stats, reading_table

    cells = [{"cell_type": "markdown", "source": ["# Title\n", "one two three four"]},
             {"cell_type": "code", "source": ["x = 1\n", "# a comment\n", "\n", "y = 2"]},
             {"cell_type": "markdown", "source": ["**3. (Open)** try more"]},
             {"cell_type": "code",
              "source": ["_ = check_exercise(\"ch01.a\", f)\n", "_ = check_exercise('ch01.b', g)"]}]
    nb = tmp_path / "01_demo.ipynb"
    nb.write_text(json.dumps({"cells": cells}), encoding="utf-8")
    stats = reading_stats(nb)
    assert stats == {"words": 10, "lines": 4, "minutes": 5, "exercises": 2, "open": 1}
    table = reading_table([nb], {1: 0.25})
    assert "| 1 | demo | 10 words | 4 lines | 5 min | 2 + 1 open | 0.2 min |" in table
    assert table.splitlines()[-1].startswith("| | **all 1** |")


def test_nbval_re_executes_the_committed_run_where_a_learner_saved_theirs(tmp_path, capsys):
    """`make nbval` compares cells with their stored outputs: a learner's run saved with its outputs cleared holds
    none, so nbval gets the committed copy; a notebook whose code changed (work in progress) is kept."""
    import json
    import subprocess

    import nbformat

    from gpt2_core.course.notebook_tools import committed_bytes, committed_runs

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args], cwd=tmp_path,
                       check=True, capture_output=True)

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)  # NBVAL_CHECK_OUTPUT", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="1\n")])])
    path = tmp_path / "notebooks" / "01_demo.ipynb"
    path.parent.mkdir()
    nbformat.write(nb, path)
    git("init", "-q")
    git("add", "-A")
    git("commit", "-q", "-m", "committed run")
    committed = path.read_bytes()
    assert committed_bytes(path) == committed and committed_runs([path], tmp_path / "out") == [path]

    nb.cells[0].outputs = []  # "Clear All Outputs", then saved
    nbformat.write(nb, path)
    assert committed_runs([path], tmp_path / "out") == [tmp_path / "out" / path.name]
    assert (tmp_path / "out" / path.name).read_bytes() == committed
    assert main(["committed-runs", str(tmp_path / "out"), str(path)]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "out" / path.name)]

    nb.cells[0].source = "print(2)  # NBVAL_CHECK_OUTPUT"  # someone's change to the code: theirs to test
    nbformat.write(nb, path)
    assert committed_runs([path], tmp_path / "out") == [path]
    (tmp_path / "new.ipynb").write_text(json.dumps(nb))
    assert committed_bytes(tmp_path / "new.ipynb") is None  # never committed
