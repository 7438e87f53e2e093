"""The student edition carries no solution: not in its notebooks, not in its HTML."""

import html
import shutil
import re
from pathlib import Path

import nbformat
import pytest
from conftest import build_book

from tools.make_student import SOLUTION_TAG, build

ROOT = Path(__file__).resolve().parent.parent
EXERCISES = ROOT / "notebooks" / "05_exercises.ipynb"


def solution_snippets():
    """Distinctive lines of every solution code cell in the instructor notebook."""
    notebook = nbformat.read(EXERCISES, as_version=4)
    cells = [c for c in notebook.cells if SOLUTION_TAG in c.metadata.get("tags", []) and c.cell_type == "code"]
    assert cells, "the exercises notebook tags no solution cells"
    lines = [line.strip() for c in cells for line in c.source.splitlines()]
    return {line for line in lines if len(line) > 25 and not line.startswith(("#", "check_", "print("))}


def test_committed_student_tree_is_up_to_date(tmp_path):
    copy = tmp_path / "student"
    shutil.copytree(ROOT / "student", copy, ignore=shutil.ignore_patterns("_build", ".ipynb_checkpoints"))
    changed = build(copy)
    assert not changed, f"student/ is stale ({changed}): run `python tools/execute_notebooks.py` and commit"


def test_student_notebooks_have_stubs_and_checks_but_no_solutions():
    student = nbformat.read(ROOT / "student" / "notebooks" / EXERCISES.name, as_version=4)
    text = "\n".join(c.source for c in student.cells)
    assert "raise NotImplementedError" in text and "check_" in text
    assert not any(SOLUTION_TAG in c.metadata.get("tags", []) for c in student.cells)
    leaked = [line for line in solution_snippets() if line in text]
    assert not leaked, f"solution lines in the student notebook: {leaked[:3]}"
    assert "solution-start" not in text


@pytest.fixture(scope="module")
def student_html(tmp_path_factory):
    return build_book(ROOT / "student", tmp_path_factory.mktemp("student_book"))


def test_student_book_has_exercises_but_no_solution_text(student_html):
    files = [p for p in student_html.rglob("*") if p.suffix in (".html", ".ipynb", ".txt", ".js")]
    # Compare without markup and whitespace: highlighted code is split into many <span>s.
    text = html.unescape(re.sub(r"<[^>]+>", "", "\n".join(p.read_text(errors="ignore") for p in files)))
    squeezed = re.sub(r"\s+", "", text)
    assert "Exercise" in text
    leaked = [line for line in solution_snippets() if re.sub(r"\s+", "", line) in squeezed]
    assert not leaked, f"solution text in the student book: {leaked[:3]}"
    page = (student_html / "notebooks" / "05_exercises.html").read_text()
    assert "colab.research.google.com/github/nin-course/nin-course/blob/main/student/notebooks/05_exercises.ipynb" in page
    assert not (student_html / "book" / "instructors.html").exists()
