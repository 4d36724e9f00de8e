"""A learner's own run never turns the repository red, and what it saves survives being cut short.

- A chapter run in place (what JupyterLab's autosave and ``jupyter nbconvert --execute --inplace`` do) and then
  saved as JupyterLab saves it: the tests that read notebook outputs and results still pass, and no tracked file
  but the notebook itself has changed (tests/committed.py says how the tests judge the committed run).
- Chapter 7's saved model and chapter 5's checkpoint cut short while being written: detected, said in one
  line, and trained again (chapter 7) or replaced by the reference model (chapter 5).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_model, tiny_tokenizer

from gpt2_core.course import instruction_runs as runs
from gpt2_core.course import reference
from gpt2_core.course.notebook_tools import pairing_problems
from gpt2_core.pretraining.checkpoint import MODEL_FILE, save_checkpoint
from gpt2_core.pretraining.recipes import learner_checkpoint_dir
from gpt2_core.text.corpus import load_addresses
from gpt2_core.text.ranks import gpt2_ranks_path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "notebooks/01_tokenizer.ipynb"  # the quickest chapter at the tiny profile (about 10 s)
# What reads a notebook's outputs or the results: the chapter's prose and figures, the README's prose and tables
CHECKS = [f"tests/test_prose_numbers.py::test_every_number_in_a_notebooks_prose_is_backed[{Path(NOTEBOOK).stem}]",
          f"tests/test_notebook_figures.py::test_each_chapter_has_at_least_four_titled_figures[{Path(NOTEBOOK).stem}]",
          "tests/test_notebook_figures.py::test_the_course_has_at_least_35_figures",
          "tests/test_prose_numbers.py::test_every_number_in_the_readmes_prose_is_backed",
          "tests/test_prose_numbers.py::test_readmes_generated_tables_are_current",
          "tests/test_results.py::test_readme_results_table_matches_the_committed_results"]


def _git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout


def _clone(folder: Path, overlay: list[str]) -> Path:
    """A clone of the repository whose HEAD also holds the working tree's changes under the paths ``overlay``
    (the code under test; in CI, a fresh clone, there are none)."""
    clone = folder / "repo"
    folder.mkdir()
    _git("clone", "-q", str(ROOT), str(clone), cwd=folder)
    changed = _git("ls-files", "-m", "-o", "-d", "--exclude-standard", "--", *overlay, cwd=ROOT)
    for name in set(changed.split("\n")) - {""}:
        source, target = ROOT / name, clone / name
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
        else:
            target.unlink(missing_ok=True)
    _git("add", "-A", cwd=clone)
    _git("-c", "user.name=test", "-c", "user.email=test@example.invalid", "commit", "-q", "--allow-empty",
         "-m", "the working tree", cwd=clone)
    (clone / "data" / "cache").mkdir(parents=True)  # the downloads, shared rather than fetched again (git-ignored)
    for file in (ROOT / "data" / "cache").iterdir():
        (clone / "data" / "cache" / file.name).symlink_to(file)
    return clone


def _save_as_jupyterlab_does(notebook: Path) -> None:
    """JupyterLab writes the running kernel's spec into the notebook, and jupytext then writes the paired script."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupytext.cli import jupytext as jupytext_cli

    spec = KernelSpecManager().get_kernel_spec("python3")
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    nb["metadata"]["kernelspec"] = {"display_name": spec.display_name, "language": spec.language, "name": "python3"}
    notebook.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    jupytext_cli(["--sync", "--quiet", str(notebook)])


def _run_save_and_check(clone: Path) -> list[str]:
    """Run NOTEBOOK in place at the tiny profile, save it as JupyterLab does, run CHECKS: what went wrong."""
    env = {**os.environ, "GPT2_COURSE_PROFILE": "tiny", "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join([str(clone), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    for name in ("GPT2_COURSE_DATA", "GPT2_COURSE_RECORD_RESULTS"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-m", "nbconvert", "--to", "notebook", "--execute", "--inplace",
                           "--ExecutePreprocessor.timeout=600", NOTEBOOK], cwd=clone, env=env, capture_output=True,
                          text=True, timeout=900)
    if done.returncode != 0:
        return [f"{NOTEBOOK} failed at the tiny profile:\n{done.stderr[-3000:]}"]
    _save_as_jupyterlab_does(clone / NOTEBOOK)
    problems = []
    # only the notebook changed: results/ and the paired script (its kernelspec line included) are as committed
    status = _git("status", "--porcelain", "--untracked-files=all", cwd=clone).splitlines()
    if status != [f" M {NOTEBOOK}"]:
        problems.append(f"a run and a save changed more than the notebook: {status}")
    problems += pairing_problems(clone / NOTEBOOK)
    checks = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *CHECKS],
                            cwd=clone, env=env, capture_output=True, text=True, timeout=900)
    if checks.returncode != 0:
        problems.append(f"the checks of outputs and results failed after the run:\n{checks.stdout[-5000:]}")
    elif f"{NOTEBOOK} holds a run other than the committed one" not in checks.stdout:
        # the run must print other numbers than the prose's, or this test shows nothing: pick another chapter
        problems.append(f"the tiny run left {NOTEBOOK}'s prose backed; this test needs a run that differs")
    return problems


def test_a_chapter_run_in_place_and_saved_leaves_the_tests_green(tmp_path):
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (an unpacked archive): there is no committed run to clone")
    load_addresses()  # the downloads the chapter reads, cached here once
    gpt2_ranks_path()
    problems = _run_save_and_check(_clone(tmp_path / "working-tree", ["."]))
    notebooks = _git("status", "--porcelain", "--", "notebooks/*.ipynb", cwd=ROOT).splitlines()
    if problems and notebooks:
        # the working tree's notebooks may hold a learner's runs: judge the committed ones, with this code
        if not _run_save_and_check(_clone(tmp_path / "committed", ["gpt2_core", "tests"])):
            first = problems[0].splitlines()[0][:160]
            pytest.skip(f"{len(notebooks)} notebook(s) differ from the committed ones (a learner's runs?): with the "
                        f"committed notebooks this test passes; with the working tree's: {first}")
    assert not problems, "\n".join(problems)


def test_notebooks_name_the_kernel_as_jupyterlab_saves_it():
    """JupyterLab writes the kernel's display name on every save; a different one committed would leave the paired
    script changed after a learner's save."""
    from jupyter_client.kernelspec import KernelSpecManager

    name = KernelSpecManager().get_kernel_spec("python3").display_name
    for path in sorted((ROOT / "notebooks").glob("0[1-8]_*.ipynb")):
        spec = json.loads(path.read_text(encoding="utf-8"))["metadata"]["kernelspec"]
        assert spec == {"display_name": name, "language": "python", "name": "python3"}, path.name
        assert f"#     display_name: {name}\n" in (path.parent / "scripts" / f"{path.stem}.py").read_text(), path.name


# --- what a run saves, cut short --------------------------------------------------------------------------------



def _cut_short(folder: Path) -> None:
    data = (folder / MODEL_FILE).read_bytes()
    (folder / MODEL_FILE).write_bytes(data[: len(data) // 2])


def test_chapter_7s_model_cut_short_is_trained_again(tiny_base, capsys):
    model, _, source = runs.chapter_model("cpu")
    _cut_short(runs.chapter_model_dir())
    capsys.readouterr()
    again, _, source = runs.chapter_model("cpu")  # chapter 8 starts
    assert source.startswith("trained again") and "training it again" in capsys.readouterr().out
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name  # the same recipe, the same model
    assert runs.chapter_model("cpu")[2].startswith("loaded from")  # and the new save is whole


def test_chapter_5s_model_cut_short_says_so_in_one_line_and_starts_from_the_reference(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GPT2_COURSE_DATA", str(tmp_path))
    monkeypatch.setenv("GPT2_COURSE_PROFILE", "tiny")
    monkeypatch.setattr(reference, "load_reference", lambda device: ("reference model", "its tokenizer"))
    save_checkpoint(learner_checkpoint_dir(), tiny_model(), tokenizer=tiny_tokenizer())
    _cut_short(learner_checkpoint_dir())
    assert reference.load_base_model("cpu", "chapter5")[2] == "reference"
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1 and "incomplete checkpoint" in out and MODEL_FILE in out
    assert "Re-run chapter 5" in out and "reference course model instead" in out
