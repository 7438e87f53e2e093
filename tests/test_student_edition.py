"""The student edition carries no solution: not in its notebooks, not in its HTML."""

import html
import shutil
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tools.make_student import LEFT_ALONE, SOLUTION_TAG, build, own_notebooks

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
    shutil.copytree(ROOT / "student", copy, ignore=shutil.ignore_patterns(*LEFT_ALONE))
    changed = build(copy)
    assert not changed, f"student/ is stale ({changed}): run `python tools/execute_notebooks.py` and commit"


def test_one_list_of_the_student_notebooks_of_their_own():
    own = ["student/notebooks/05_exercises.ipynb", "student/notebooks/06_distributed.ipynb"]
    assert [p.relative_to(ROOT).as_posix() for p in own_notebooks()] == own
    listed = subprocess.run([sys.executable, "tools/make_student.py", "--list-own"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    assert listed.split() == own
    for path in ("Makefile", ".github/workflows/gpu.yml"):  # they run the command, not a list of their own
        text = (ROOT / path).read_text()
        assert "tools/make_student.py --list-own" in text and "student/notebooks/0" not in text, path
    assert "own_notebooks" in (ROOT / "tools" / "execute_notebooks.py").read_text()


def exercise_answers() -> set[str]:
    """Every exercise answer that is a number, as the notebooks would print it (plain and with commas)."""
    from test_exercises import activation_memory, count_by_hand, make_nin, nin_3x3, nin_fc_head, wide_head

    from nin_utils import NiN, count_params
    from nin_utils.exercises import COUNTING_CASES, DEEPER_CONFIG, MEMORY_CASES

    values = [count_params(NiN(num_1x1=1)), count_params(nin_3x3()), count_params(nin_fc_head()),
              count_params(make_nin(DEEPER_CONFIG)), count_params(wide_head(64)), count_params(wide_head(384))]
    printed_in_chapter_2 = count_by_hand(1, 224).values()  # d2l's own setting, on purpose
    for in_channels, resolution in COUNTING_CASES:
        values += [v for v in count_by_hand(in_channels, resolution).values() if v not in printed_in_chapter_2]
    for build, batch, resolution in MEMORY_CASES.values():
        values += activation_memory(build(), batch, resolution)
    memory = [f"{value / 1e6:,.1f} MB" for value in activation_memory(NiN(), 128, 224)]
    return {text for value in values for text in (str(value), f"{value:,}")} | set(memory)


def _output_text(notebook) -> str:
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts += [str(value) for value in output.get("data", {}).values()]
    return "\n".join(parts)


@pytest.mark.parametrize("path", sorted((ROOT / "student" / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_no_student_notebook_output_reveals_an_answer(path):
    text = _output_text(nbformat.read(path, as_version=4))
    leaked = sorted(answer for answer in exercise_answers() if answer in text)
    assert not leaked, f"{path.name}'s outputs show exercise answers {leaked}"


def test_the_answer_scan_would_catch_a_leak():
    instructor = _output_text(nbformat.read(EXERCISES, as_version=4))  # made with the solutions
    assert "1,769,112" in exercise_answers() and "1,769,112" in instructor


def test_student_notebooks_have_stubs_and_checks_but_no_solutions():
    student = nbformat.read(ROOT / "student" / "notebooks" / EXERCISES.name, as_version=4)
    text = "\n".join(c.source for c in student.cells)
    assert "raise NotImplementedError" in text and "check_" in text
    assert not any(SOLUTION_TAG in c.metadata.get("tags", []) for c in student.cells)
    leaked = [line for line in solution_snippets() if line in text]
    assert not leaked, f"solution lines in the student notebook: {leaked[:3]}"
    assert "solution-start" not in text


@pytest.fixture(scope="module")
def student_html(built_book):
    return built_book("student")  # the committed student/ as it is (the first test checks it is up to date)


@pytest.mark.slow  # builds the student edition
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
