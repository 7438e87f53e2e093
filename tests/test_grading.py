"""tools/grade.py: one command grades a folder of chapter-5 notebooks, and no submission can spoil it.

The submissions are made here from the instructor notebook (the student edition is the
instructor notebook without its ``solution`` cells, as tools/make_student.py makes it); the
small ones hold only the cells they need. One run of the grading command over all of them
(smoke mode, short time limits) is checked score by score.
"""

from __future__ import annotations

import csv
import hashlib
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grading import batch, sandbox  # noqa: E402
from grading.exercises import EXERCISES, TOTAL_POINTS, otter_test_source  # noqa: E402
from tools.make_student import student_notebook  # noqa: E402

INSTRUCTOR = ROOT / "notebooks" / "05_exercises.ipynb"
KEYS = [e.key for e in EXERCISES]
POINTS = {e.key: e.points for e in EXERCISES}
# Exercise 7's answer on the smoke budget (the grader trains on it): Recipe() reaches about
# 0.07 there, batch size 16 (eight times the updates) about 0.21.
SMOKE_TUNED = 'def tuned_recipe():\n    return {"batch_size": 16}\n'
IMPORTS = "import math\nfrom torch import nn\nfrom nin_utils import NiN, count_params, layer_table, nin_block\n"


# ----------------------------------------------------------------------------- making submissions

def student_edition() -> nbformat.NotebookNode:
    return student_notebook(INSTRUCTOR)


def solutions() -> dict[str, str]:
    """Function name -> the instructor's solution cell that defines it (exercise 7: SMOKE_TUNED)."""
    found: dict[str, str] = {}
    for cell in nbformat.read(INSTRUCTOR, as_version=4).cells:
        if cell.cell_type == "code" and "solution" in cell.metadata.get("tags", []):
            for name in re.findall(r"^def (\w+)\(", cell.source, re.M):
                found.setdefault(name, cell.source)
    found["tuned_recipe"] = SMOKE_TUNED
    return found


def solve(notebook: nbformat.NotebookNode, answers: dict[str, str]) -> nbformat.NotebookNode:
    """Replace the stub of every function in ``answers`` by that answer, as a student would."""
    for cell in notebook.cells:
        match = re.match(r"def (\w+)\(", cell.source)
        if cell.cell_type == "code" and match and match.group(1) in answers and "NotImplementedError" in cell.source:
            cell.source = answers[match.group(1)]
    return notebook


def small(*sources: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])


def hacker_cell(out: Path, submissions: Path) -> str:
    """Tries to write the grades, delete the other submissions, change a checker and read the key."""
    return f'''
import os, shutil, json
for target in ({str(out / "grades.csv")!r}, {str(out / "report.txt")!r}):
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "w").write("student,total\\nhacker,1000\\n")
    except OSError:
        pass
try:
    shutil.rmtree({str(submissions)!r})
except OSError:
    pass
try:
    open({str(ROOT / "nin_utils" / "exercises.py")!r}, "a").write("\\ncheck_drop_one_1x1 = lambda f: True\\n")
except OSError:
    pass
try:  # the answer key: run the instructor's solution cell for exercise 1
    key = json.load(open({str(INSTRUCTOR)!r}))
    exec(next("".join(c["source"]) for c in key["cells"] if "def build_nin_one_1x1" in "".join(c["source"])
              and "solution" in c["metadata"].get("tags", [])))
except Exception:
    pass
'''


def make_submissions(folder: Path, out: Path, *, with_hacker: bool) -> dict[str, dict[str, int]]:
    """Write the crafted submissions; return each one's expected points per exercise."""
    answers = solutions()
    expected: dict[str, dict[str, int]] = {}

    def submit(name: str, notebook, scored: tuple[str, ...]) -> None:
        path = folder / f"{name}.ipynb"
        if isinstance(notebook, str):
            path.write_text(notebook)
        else:
            nbformat.write(notebook, path)
        expected[name] = {key: POINTS[key] if key in scored else 0 for key in KEYS}

    submit("reference", solve(student_edition(), answers), tuple(KEYS))
    submit("untouched", student_edition(), ())
    submit("partly", small(IMPORTS, answers["build_nin_one_1x1"], answers["count_by_hand"],
                           "def build_nin_3x3():\n    return NiN()\n", answers["make_nin"]), ("ex1", "ex2", "ex8"))
    submit("invalid_json", '{"cells": [ this is not JSON', ())
    submit("infinite_loop", small(IMPORTS, answers["build_nin_one_1x1"], "while True:\n    pass",
                                  "def build_head(hidden):\n    while True:\n        pass", answers["count_by_hand"]),
           ("ex1", "ex2"))
    submit("raises_first", small('raise RuntimeError("boom in the first cell")', IMPORTS, answers["activation_memory"]),
           ("ex6",))
    submit("flood", small(IMPORTS, answers["make_nin"], "import os\nfor _ in range(6000):\n    print('x' * 1000)\n"
                          "for _ in range(300):\n    os.write(1, b'y' * 100_000)", "hog = bytearray(64 * 2**30)"),
           ("ex8",))
    if with_hacker:
        submit("hacker", small(IMPORTS, hacker_cell(out, folder)), ())
    return expected


# ----------------------------------------------------------------------------- the grading command

@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Run the grading command once over the crafted folder."""
    base = tmp_path_factory.mktemp("grading")
    folder, out = base / "submissions", base / "results"
    folder.mkdir()
    with_hacker = sandbox.isolation() == "namespaces"  # without it a submission runs as you
    expected = make_submissions(folder, out, with_hacker=with_hacker)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    checker = hashlib.sha256((ROOT / "nin_utils" / "exercises.py").read_bytes()).hexdigest()
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "grade.py"), str(folder), "--out", str(out),
                           "--mode", "smoke", "--cell-timeout", "15", "--test-timeout", "20", "--timeout", "300",
                           "--allow-unsandboxed"],  # crafted notebooks; the hostile one runs only when sandboxed
                          capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with open(out / "grades.csv", newline="") as handle:
        rows = {row["student"]: row for row in csv.DictReader(handle)}
    return {"expected": expected, "rows": rows, "out": out, "folder": folder, "before": before,
            "checker": checker, "stdout": done.stdout, "report": (out / "report.txt").read_text(),
            "with_hacker": with_hacker}


def feedback_of(graded, student: str) -> str:
    return (graded["out"] / "feedback" / f"{student}.md").read_text()


@pytest.mark.slow  # the grading run (`graded`)
def test_every_score_in_the_csv(graded):
    assert set(graded["rows"]) == set(graded["expected"])
    for student, points in graded["expected"].items():
        row = graded["rows"][student]
        assert {key: int(row[key]) for key in KEYS} == points, (student, row, feedback_of(graded, student))
        assert int(row["total"]) == sum(points.values())
    assert list(next(iter(graded["rows"].values()))) == ["student", *KEYS, "total"]


@pytest.mark.slow  # the grading run (`graded`)
def test_the_reference_solutions_get_full_marks(graded):
    assert int(graded["rows"]["reference"]["total"]) == TOTAL_POINTS
    assert "**20 / 20**" in feedback_of(graded, "reference")


@pytest.mark.slow  # the grading run (`graded`)
def test_feedback_gives_the_checkers_hints(graded):
    untouched = feedback_of(graded, "untouched")
    assert untouched.count("Not done yet") == len(EXERCISES)
    partly = feedback_of(graded, "partly")
    assert "## Exercise 4" in partly and "still 1x1" in partly  # check_3x3_instead_of_1x1's hint
    assert "## Exercise 1" not in partly  # passed: no section


@pytest.mark.slow  # the grading run (`graded`)
def test_broken_notebooks_are_reported_and_do_not_stop_the_batch(graded):
    report = graded["report"]
    assert "invalid_json: invalid_json.ipynb: not a valid notebook" in report
    assert "infinite_loop: code cell 3 (`while True:`) ran past the time limit for a cell (15 s)" in report
    assert "ran for more than 20 s" in feedback_of(graded, "infinite_loop")  # exercise 3's test, stopped
    assert "raises_first: code cell 1 (`raise RuntimeError(\"boom in the first cell\")`) raised RuntimeError" in report
    assert "flood: the notebook printed more than" in report
    assert re.search(r"flood: wrote [\d,]+ bytes to the terminal", report)
    assert "flood: code cell 4 (`hog = bytearray(64 * 2**30)`) raised MemoryError" in report


@pytest.mark.slow  # the grading run (`graded`)
def test_a_submission_cannot_touch_the_grades_the_others_or_the_key(graded):
    if not graded["with_hacker"]:
        pytest.skip("no namespaces here (not root?): submissions are not isolated, so no hostile one is run")
    assert int(graded["rows"]["hacker"]["total"]) == 0  # the answer key was out of its reach
    assert {p.name: p.read_bytes() for p in graded["folder"].iterdir()} == graded["before"]
    assert hashlib.sha256((ROOT / "nin_utils" / "exercises.py").read_bytes()).hexdigest() == graded["checker"]
    assert "hacker,1000" not in (graded["out"] / "grades.csv").read_text()


@pytest.mark.slow  # the grading run (`graded`)
def test_the_summary_is_printed(graded):
    assert "Isolation:" in graded["stdout"]
    assert re.search(r"^reference\s+2\s+3\s+2\s+2\s+2\s+3\s+3\s+3\s+20\s+\d+$", graded["stdout"], re.M)


# ----------------------------------------------------------------------------- fast checks, no sandbox

def test_the_exercise_table_matches_the_chapter():
    """Each graded function is a stub of the student edition, and its checker is called after it."""
    sources = [c.source for c in student_edition().cells if c.cell_type == "code"]
    import nin_utils.exercises as checkers
    for exercise in EXERCISES:
        assert any(s.startswith(f"def {exercise.function}(") and "NotImplementedError" in s for s in sources), exercise
        assert any(s.strip().startswith(f"{exercise.checker}({exercise.function}") for s in sources), exercise
        assert callable(getattr(checkers, exercise.checker))
        compile(otter_test_source(exercise), exercise.key, "exec")


def test_exercise_7_trains_as_the_notebook_does():
    """The grader trains exercise 7 with its own copy of the notebook's train_with: keep them equal."""
    source = next(s for s in (c.source for c in student_edition().cells) if "def train_with" in s)
    assert "budget = mode.short" in source
    assert "seed_everything(0)" in source
    assert "fit(NiN().to(device), data, recipe, budget" in source


def test_prepare_skips_the_setup_and_check_cells_and_numbers_the_code_cells():
    skip = batch.released_cells()
    content, why = batch.prepare(nbformat.writes(student_edition()).encode(), skip)
    assert why is None
    cells = [c for c in nbformat.reads(content.decode(), as_version=4).cells if c.cell_type == "code"]
    ignored = [c for c in cells if batch.IGNORE_TAG in c.metadata.get("tags", [])]
    assert "pip" in ignored[0].source and len(ignored) == 1 + len(EXERCISES)
    assert [c.metadata[batch.CELL_KEY] for c in cells] == list(range(1, len(cells) + 1))
    assert batch.prepare(b"\xff\xfe not text", skip)[0] is None
    assert batch.prepare(b"[1, 2]", skip)[0] is None


def test_only_known_exercises_and_true_booleans_count():
    forged = {"tests": {"ex1": {"passed": "yes"}, "ex2": {"passed": 1}, "ex3": {"passed": True, "message": "x" * 10**5},
                        "ex99": {"passed": True}}, "problems": ["p"] * 100}
    outcome = sandbox.Outcome(forged, 1.0, False, 0, "", 0)
    result = batch.interpret("s", outcome, batch.Settings())
    assert result.total == POINTS["ex3"] and len(result.problems) == batch.MAX_PROBLEMS
    assert len(result.hints["ex3"]) <= 2_000
    timed_out = batch.interpret("s", sandbox.Outcome(None, 9.0, True, -9, "", 0), batch.Settings())
    assert timed_out.total == 0 and "stopped after" in timed_out.problems[-1]


def test_the_guide_states_the_points():
    guide = (ROOT / "book" / "instructors.md").read_text()
    section = guide[guide.index("## Grading a class"):]
    for exercise in EXERCISES:
        row = next(line for line in section.splitlines() if line.startswith(f"| {exercise.key[2:]} "))
        assert f"| {exercise.points} |" in row, row
