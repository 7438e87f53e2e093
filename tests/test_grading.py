"""tools/grade.py: one command grades a folder of chapter-5 notebooks, and no submission can spoil it.

The submissions are made here from the instructor notebook (the student edition is the
instructor notebook without its ``solution`` cells, as tools/make_student.py makes it); the
small ones hold only the cells they need. One run of the grading command over all of them
(smoke mode for the notebooks' own cells, short time limits) is checked score by score; exercise 7
is trained by the grader on its real budget, so the run takes several minutes.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grading import batch, sandbox, tuning  # noqa: E402
from grading.exercises import EXERCISES, TOTAL_POINTS, judge, record  # noqa: E402
from nin_utils.exercises import TUNING_MARGIN, TUNING_SEEDS  # noqa: E402
from tools.make_student import student_notebook  # noqa: E402

INSTRUCTOR = ROOT / "notebooks" / "05_exercises.ipynb"
KEYS = [e.key for e in EXERCISES]
POINTS = {e.key: e.points for e in EXERCISES}
IMPORTS = "import math\nfrom torch import nn\nfrom nin_utils import NiN, count_params, layer_table, nin_block\n"
FORMULA_NAME = '=HYPERLINK("evil.example","click")'  # a file name a spreadsheet would run
ESCAPEE = "987654"  # a sleep that tries to outlive its notebook


# ----------------------------------------------------------------------------- making submissions

def student_edition() -> nbformat.NotebookNode:
    return student_notebook(INSTRUCTOR)


def solutions() -> dict[str, str]:
    """Function name -> the instructor's solution cell that defines it (exercise 7: the published one)."""
    found: dict[str, str] = {}
    for cell in nbformat.read(INSTRUCTOR, as_version=4).cells:
        if cell.cell_type == "code" and "solution" in cell.metadata.get("tags", []):
            for name in re.findall(r"^def (\w+)\(", cell.source, re.M):
                found.setdefault(name, cell.source)
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
    """Tries to write the grades, delete the other submissions, change a checker, read the key and
    leave a process behind (a new session, an empty environment)."""
    return f'''
import os, shutil, json, subprocess
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
subprocess.Popen(["setsid", "env", "-i", "sleep", "{ESCAPEE}"], start_new_session=True)
'''


# Replaces the checkers, the grading module and a builtin in its own kernel; its function is wrong.
# With otter's test cell in the student's kernel, its first two lines gave 20/20.
CHEATER_CELL = """
import builtins
import grading.exercises as g; g.run_check = lambda *a: None
import nin_utils.exercises as checkers
passed = lambda *args, **kwargs: True
for name in dir(checkers):
    if name.startswith("check_"):
        setattr(checkers, name, passed)
checkers._checker, checkers._expect = (lambda check: passed), (lambda *args: None)
g.judge = lambda *args, **kwargs: (True, "✅")
builtins.sum = lambda *args, **kwargs: 1_769_112  # every parameter count is exercise 1's answer
def build_nin_one_1x1():
    return NiN()  # two 1x1 convs per block
"""


def make_submissions(folder: Path, out: Path, *, hostile: bool) -> dict[str, dict[str, int]]:
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
                           "def build_nin_3x3():\n    return NiN()\n", answers["make_nin"],
                           "def tuned_recipe():\n    return {'batch_size': 128}  # Recipe()'s own"),
           ("ex1", "ex2", "ex8"))
    submit("invalid_json", '{"cells": [ this is not JSON', ())
    submit("infinite_loop", small(IMPORTS, answers["build_nin_one_1x1"], "while True:\n    pass",
                                  "def build_head(hidden):\n    while True:\n        pass", answers["count_by_hand"]),
           ("ex1", "ex2"))
    submit("raises_first", small('raise RuntimeError("boom in the first cell")', IMPORTS, answers["activation_memory"]),
           ("ex6",))
    submit("flood", small(IMPORTS, answers["make_nin"], "import os\nfor _ in range(6000):\n    print('x' * 1000)\n"
                          "for _ in range(300):\n    os.write(1, b'y' * 100_000)", "hog = bytearray(64 * 2**30)"),
           ("ex8",))
    submit(FORMULA_NAME, small(IMPORTS, answers["make_nin"]), ("ex8",))
    if hostile:
        submit("hacker", small(IMPORTS, hacker_cell(out, folder)), ())
        submit("cheater", small(IMPORTS, CHEATER_CELL), ())
    return expected


def grade(python: str, folder: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([python, str(ROOT / "tools" / "grade.py"), str(folder), "--out", str(out),
                           "--mode", "smoke", "--cell-timeout", "15", "--test-timeout", "20", "--timeout", "300", *extra],
                          capture_output=True, text=True, timeout=2400)


def escapees() -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and ESCAPEE.encode() in (entry / "cmdline").read_bytes():
                found.append(entry.name)
        except OSError:
            continue
    return found


# ----------------------------------------------------------------------------- the grading command

@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Run the grading command once over the crafted folder, sandboxed where bubblewrap works."""
    base = tmp_path_factory.mktemp("grading")
    folder, out = base / "submissions", base / "results"
    folder.mkdir()
    sandboxed = sandbox.available() is None
    expected = make_submissions(folder, out, hostile=sandboxed)  # unsandboxed, a notebook runs as you
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    checker = hashlib.sha256((ROOT / "nin_utils" / "exercises.py").read_bytes()).hexdigest()
    done = grade(sys.executable, folder, out, *(["--jobs", "2"] if sandboxed else ["--allow-unsandboxed"]))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with open(out / "grades.csv", newline="") as handle:
        rows = {row["student"]: row for row in csv.DictReader(handle)}
    return {"expected": expected, "rows": rows, "out": out, "folder": folder, "before": before,
            "checker": checker, "stdout": done.stdout, "report": (out / "report.txt").read_text(),
            "sandboxed": sandboxed}


def feedback_of(graded, student: str) -> str:
    return (graded["out"] / "feedback" / f"{batch.safe_name(student, set())}.md").read_text()


def csv_name(student: str) -> str:
    return "'" + student if student.startswith(batch.FORMULA_START) else student


@pytest.mark.slow  # the grading run (`graded`)
def test_every_score_in_the_csv(graded):
    assert set(graded["rows"]) == {csv_name(s) for s in graded["expected"]}
    for student, points in graded["expected"].items():
        row = graded["rows"][csv_name(student)]
        assert {key: int(row[key]) for key in KEYS} == points, (student, row, feedback_of(graded, student))
        assert int(row["total"]) == sum(points.values())
    assert list(next(iter(graded["rows"].values()))) == ["student", *KEYS, "total"]


@pytest.mark.slow  # the grading run (`graded`)
def test_the_reference_solutions_get_full_marks_exercise_7_included(graded):
    assert int(graded["rows"]["reference"]["total"]) == TOTAL_POINTS
    assert "**20 / 20**" in feedback_of(graded, "reference")


@pytest.mark.slow  # the grading run (`graded`)
def test_a_recipe_that_is_recipe_itself_fails(graded):
    assert "is Recipe() itself" in feedback_of(graded, "partly")


@pytest.mark.slow  # the grading run (`graded`)
def test_a_student_named_like_a_formula_is_text_in_the_csv(graded):
    text = (graded["out"] / "grades.csv").read_text()
    assert f"\n\"'{FORMULA_NAME.replace(chr(34), chr(34) * 2)}\"," in text  # quoted, with a leading '
    assert not re.search(r"^\"?[=+\-@]", text, re.M)
    assert "## Exercise 1" in feedback_of(graded, FORMULA_NAME)


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
    assert "ran for more than 20 s" in feedback_of(graded, "infinite_loop")  # exercise 3's call, stopped
    assert "raises_first: code cell 1 (`raise RuntimeError(\"boom in the first cell\")`) raised RuntimeError" in report
    assert "flood: the notebook printed more than" in report
    assert re.search(r"flood: wrote [\d,]+ bytes to the terminal", report)
    assert "flood: code cell 4 (`hog = bytearray(64 * 2**30)`) raised MemoryError" in report


@pytest.mark.slow  # the grading run (`graded`)
def test_a_submission_cannot_touch_the_grades_the_others_or_the_key(graded):
    if not graded["sandboxed"]:
        pytest.skip("bubblewrap cannot sandbox here: no hostile notebook is run")
    assert int(graded["rows"]["hacker"]["total"]) == 0  # the answer key was out of its reach
    assert {p.name: p.read_bytes() for p in graded["folder"].iterdir()} == graded["before"]
    assert hashlib.sha256((ROOT / "nin_utils" / "exercises.py").read_bytes()).hexdigest() == graded["checker"]
    assert "hacker,1000" not in (graded["out"] / "grades.csv").read_text()
    assert escapees() == []  # its `setsid env -i sleep` died with it


@pytest.mark.slow  # the grading run (`graded`)
def test_patching_the_checkers_in_the_notebook_earns_nothing(graded):
    if not graded["sandboxed"]:
        pytest.skip("bubblewrap cannot sandbox here: no hostile notebook is run")
    assert int(graded["rows"]["cheater"]["total"]) == 0
    cheater = feedback_of(graded, "cheater")
    assert "**0 / 20**" in cheater
    assert "build_nin_one_1x1(): the notebook gave no answer" in cheater  # its patched checker called nothing


@pytest.mark.slow  # the grading run (`graded`)
def test_the_summary_says_how_the_notebooks_ran(graded):
    how = "sandboxed with bubblewrap" if graded["sandboxed"] else "NOT SANDBOXED"
    assert how in graded["stdout"].splitlines()[0] and f"How they ran: {how}" in graded["report"]
    assert re.search(r"^reference\s+2\s+3\s+2\s+2\s+2\s+3\s+3\s+3\s+20\s+\d+$", graded["stdout"], re.M)


@pytest.mark.slow  # a venv and a grading run
def test_grading_runs_from_a_venv_under_tmp(tmp_path):
    """A venv outside the repository (here under /tmp), its packages found through a .pth file."""
    if sandbox.available() is not None:
        pytest.skip(f"no sandbox here: {sandbox.available()}")
    venv = Path(tempfile.mkdtemp(prefix="nin-venv-", dir="/tmp"))
    try:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        python = venv / "bin" / "python"
        site_packages = subprocess.run([python, "-c", "import site; print(site.getsitepackages()[0])"],
                                       capture_output=True, text=True, check=True).stdout.strip()
        (Path(site_packages) / "course.pth").write_text(
            "\n".join(p for p in sys.path if p.endswith("site-packages")) + "\n")
        folder, out = tmp_path / "submissions", tmp_path / "results"
        folder.mkdir()
        answers = solutions()
        nbformat.write(small(IMPORTS, answers["build_nin_one_1x1"], answers["make_nin"]), folder / "ada.ipynb")
        done = grade(str(python), folder, out)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "sandboxed with bubblewrap" in done.stdout
        assert (out / "grades.csv").read_text().splitlines()[1] == "ada,2,0,0,0,0,0,0,3,5"
    finally:
        shutil.rmtree(venv)


# ----------------------------------------------------------------------------- the sandbox, directly

@pytest.mark.skipif(sandbox.available() is not None, reason="bubblewrap cannot sandbox here")
def test_every_process_of_a_sandboxed_run_dies_with_it(tmp_path):
    notebook = tmp_path / "n.ipynb"
    notebook.write_text("{}")
    escape = f"setsid env -i sleep {ESCAPEE} & (setsid sh -c 'sleep {ESCAPEE}' &) ; echo started"
    done = subprocess.run(sandbox.bwrap_command(notebook, [], ["sh", "-c", escape]), capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.strip() == "started", done.stderr
    assert escapees() == []


@pytest.mark.skipif(sandbox.available() is not None, reason="bubblewrap cannot sandbox here")
def test_an_interpreter_without_a_venv_runs_in_the_sandbox(tmp_path):
    """The interpreter the venv was made from, as a system or conda Python: its own installation
    (here wherever it lies, under /root for pyenv) is what the sandbox shows."""
    notebook = tmp_path / "n.ipynb"
    notebook.write_text("{}")
    code = (f"import sys, subprocess; from pathlib import Path; from grading import sandbox; "
            f"command = sandbox.bwrap_command(Path({str(notebook)!r}), [], [sys.executable, '-c', "
            f"'import json, sys; print(sys.prefix == sys.base_prefix)']); "
            f"print(subprocess.run(command, capture_output=True, text=True).stdout.strip())")
    done = subprocess.run([sys._base_executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)})
    assert done.stdout.strip() == "True", done.stderr


@pytest.mark.skipif(sandbox.available() is not None, reason="bubblewrap cannot sandbox here")
def test_a_sandboxed_run_sees_no_repository_home_network_or_other_files(tmp_path):
    notebook, secret = tmp_path / "n.ipynb", tmp_path / "secret"
    notebook.write_text("{}")
    secret.mkdir()
    look = (f"ls -A {ROOT}; test -e {secret} && echo SEEN; test -e /etc/shadow && echo SHADOW; "
            f"ls -A /home 2>/dev/null; touch /usr/x 2>/dev/null && echo WROTE; "
            f"python -c 'import socket; socket.create_connection((\"1.1.1.1\", 53), 2)' 2>/dev/null && echo NET")
    done = subprocess.run(sandbox.bwrap_command(notebook, [tmp_path], ["sh", "-c", look]), capture_output=True,
                          text=True, timeout=60, env=sandbox.child_environment("/tmp", {}))
    environments = {p.name for p in sandbox.python_folders() if p.parent == ROOT}  # the course's .venv
    assert set(done.stdout.split()) <= {*sandbox.KEPT, *environments}, done.stdout


# ----------------------------------------------------------------------------- exercise 7's numbers

def test_exercise_7_margin_stands_on_its_measurements():
    """TUNING_MARGIN against `python -m grading.tuning --measure`: the setting measured is the one graded,
    Recipe() is well above chance (0.1) there, the margin is above Recipe()'s spread between seeds and
    above twice the standard error of what a recipe merely equal to Recipe() (its learning rate or
    weight decay a little off) gains on average over the seeds, each such recipe gained less, and the
    published solution gained more."""
    measured = json.loads(tuning.MEASURED.read_text())
    assert {key: measured[key] for key in tuning.setting()} == tuning.setting(), "measure again"
    baseline = measured["runs"]["Recipe()"]["accuracies"]
    assert min(baseline) > 0.5
    noise = tuning.gains(measured, "equal")  # one per seed and merely equal recipe
    assert TUNING_MARGIN > statistics.stdev(baseline)
    assert TUNING_MARGIN >= 2 * statistics.stdev(noise) / math.sqrt(len(TUNING_SEEDS))
    assert all(statistics.mean(tuning.gains(measured, name)) < TUNING_MARGIN
               for name in measured["runs"] if name.startswith("equal"))
    assert statistics.mean(tuning.gains(measured, "solution")) >= TUNING_MARGIN
    assert measured["runs"]["solution"]["changes"] == tuning.SOLUTION


def test_the_published_solution_is_the_one_measured():
    namespace: dict = {}
    exec(solutions()["tuned_recipe"], {"nn": None}, namespace)
    assert namespace["tuned_recipe"]() == tuning.SOLUTION


def test_exercise_7_trains_as_the_notebook_does():
    """The notebook's train_with and the grader (grading.tuning) both call tuning_accuracies on tuning_data."""
    source = next(s for s in (c.source for c in student_edition().cells) if "def train_with" in s)
    assert "budget = mode.short" in source
    assert "tuning_data(budget" in source
    assert "tuning_accuracies(recipe, data, budget)" in source


# ----------------------------------------------------------------------------- fast checks, no sandbox

def test_the_exercise_table_matches_the_chapter():
    """Each graded function is a stub of the student edition, and its checker is called after it."""
    sources = [c.source for c in student_edition().cells if c.cell_type == "code"]
    import nin_utils.exercises as checkers
    for exercise in EXERCISES:
        assert any(s.startswith(f"def {exercise.function}(") and "NotImplementedError" in s for s in sources), exercise
        assert any(s.strip().startswith(f"{exercise.checker}({exercise.function}") for s in sources), exercise
        assert callable(getattr(checkers, exercise.checker))


def test_recorded_answers_are_judged_as_the_notebook_judges_them(capsys):
    """What the kernel records, judged in another process, gets the notebook's verdict and hint."""
    namespace: dict = {}
    exec(IMPORTS + solutions()["build_head"], namespace)
    exercise = next(e for e in EXERCISES if e.function == "build_head")
    recorded = json.loads(json.dumps(record(exercise, namespace["build_head"], 60)))  # as it crosses
    passed, message = judge(exercise, recorded)
    assert passed and message.startswith("✅ hidden = 10 is NiN's last block"), message
    forged = {"calls": [{"args": {"tuple": [10]}, "value": recorded["calls"][0]["value"]}]}  # build_head(64) missing
    passed, message = judge(exercise, forged)
    assert not passed and "build_head(64): the notebook gave no answer" in message
    assert judge(exercise, {"missing": ""}) == (False, "❌ `build_head` is not defined in your notebook: keep the "
                                                       "exercise's function name.")


def test_prepare_leaves_out_the_setup_and_check_cells_and_numbers_the_code_cells():
    skip = batch.released_cells()
    edition = student_edition()
    content, why = batch.prepare(nbformat.writes(edition).encode(), skip)
    assert why is None
    cells = [c for c in nbformat.reads(content.decode(), as_version=4).cells if c.cell_type == "code"]
    before = [c for c in edition.cells if c.cell_type == "code"]
    assert len(before) - len(cells) == 1 + len(EXERCISES) and "pip" not in cells[0].source
    assert cells[0].metadata[batch.CELL_KEY] == 2 and all(c.metadata[batch.CELL_KEY] > 0 for c in cells)
    assert batch.prepare(b"\xff\xfe not text", skip)[0] is None
    assert batch.prepare(b"[1, 2]", skip)[0] is None


def test_a_csv_cell_that_starts_like_a_formula_is_escaped():
    for name in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", FORMULA_NAME):
        assert batch.spreadsheet_safe(name) == "'" + name
    assert batch.spreadsheet_safe("ada") == "ada" and batch.spreadsheet_safe(3) == 3


def test_without_a_sandbox_the_grader_refuses_unless_told(tmp_path, monkeypatch):
    (tmp_path / "a.ipynb").write_text("{}")
    monkeypatch.setattr(sandbox, "available", lambda: "bubblewrap is not installed")
    with pytest.raises(SystemExit, match="cannot be sandboxed here: bubblewrap is not installed"):
        batch.grade_all(tmp_path, tmp_path / "out", batch.Settings())


def test_the_guide_states_the_points():
    guide = (ROOT / "book" / "instructors.md").read_text()
    section = guide[guide.index("## Grading a class"):]
    for exercise in EXERCISES:
        row = next(line for line in section.splitlines() if line.startswith(f"| {exercise.key[2:]} "))
        assert f"| {exercise.points} |" in row, row
