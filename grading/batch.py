"""Grade a folder of chapter-5 notebooks: one sandboxed otter run each, then the CSV, feedback and report.

Only this process writes into the results folder, and only after every submission has been
graded; the submissions never see it (``grading.sandbox``).
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import sandbox
from .exercises import (BASELINE_ENV, BY_KEY, EXERCISES, HINT_LIMIT, TEST_TIMEOUT_ENV, TOTAL_POINTS,
                        otter_test_source)
from .child import CELL_KEY, CELL_TIMEOUT_ENV, DEFAULT_CELL_TIMEOUT, GRADING_CELL_TIMEOUT_ENV, MEMORY_ENV

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "notebooks" / "05_exercises.ipynb"
MAX_NOTEBOOK_BYTES = 20 * 2**20
MAX_PROBLEMS = 20  # report lines kept per student
IGNORE_TAG = "otter_ignore"  # otter skips cells with this tag


@dataclass
class Settings:
    mode: str = "smoke"
    timeout: float = 600  # seconds per submission, all included
    cell_timeout: int = DEFAULT_CELL_TIMEOUT  # seconds per notebook cell
    test_timeout: int = 120  # seconds per exercise test
    baseline: float | None = None  # exercise 7's baseline; computed when None
    jobs: int = 1  # submissions graded at the same time
    memory_gb: float = 8  # address space per process of a submission
    allow_unsandboxed: bool = False  # grade as root without isolation (trusted notebooks only)

    def child_env(self, baseline: float) -> dict[str, str]:
        return {"NIN_MODE": self.mode, BASELINE_ENV: repr(baseline),
                CELL_TIMEOUT_ENV: str(self.cell_timeout), TEST_TIMEOUT_ENV: str(self.test_timeout),
                GRADING_CELL_TIMEOUT_ENV: str(self.test_timeout * len(EXERCISES) + 60),
                MEMORY_ENV: str(self.memory_gb)}


@dataclass
class Graded:
    student: str
    passed: dict[str, bool] = field(default_factory=dict)
    hints: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def points(self, key: str) -> int:
        return BY_KEY[key].points if self.passed.get(key) else 0

    @property
    def total(self) -> int:
        return sum(self.points(e.key) for e in EXERCISES)


# ----------------------------------------------------------------------------- preparation

def build_autograder(workdir: Path) -> Path:
    """otter's autograder zip: one exception-format test per exercise (``otter generate``)."""
    from otter.generate import main as otter_generate

    tests = workdir / "tests"
    tests.mkdir()
    for exercise in EXERCISES:
        (tests / f"{exercise.key}.py").write_text(otter_test_source(exercise))
    here = Path.cwd()
    os.chdir(workdir)  # otter generate looks for ./requirements.txt and the like: none here
    try:
        otter_generate(tests_dir="tests", output_path="autograder.zip", no_config=True,
                       no_requirements=True, no_environment=True)
    finally:
        os.chdir(here)
    return workdir / "autograder.zip"


def released_cells() -> set[str]:
    """Sources of the cells the grader skips when a submission has them unchanged: the setup
    cell (it would try to pip-install the course package) and the check cells (the grader
    runs its own tests)."""
    if not RELEASE.is_file():
        return set()
    notebook = nbformat.read(RELEASE, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code" and "solution" not in c.metadata.get("tags", [])]
    skip = {c.source.strip() for c in code if re.fullmatch(r"check_\w+\([\w, ]*\)", c.source.strip())}
    if code:
        skip.add(code[0].source.strip())
    return skip


def read_submission(path: Path) -> bytes | str:
    """The file's bytes, or why it cannot be read (a link, not a file, too large)."""
    if path.is_symlink() or not path.is_file():
        return "not a regular file"
    if path.stat().st_size > MAX_NOTEBOOK_BYTES:
        return f"larger than {MAX_NOTEBOOK_BYTES // 2**20} MB"
    try:
        return path.read_bytes()
    except OSError as error:
        return f"could not be read ({error.strerror})"


def prepare(content: bytes, skip: set[str]) -> tuple[bytes | None, str | None]:
    """The notebook to grade (bytes), or None and why it cannot be graded.

    Sets the kernel to python3, tags the cells in ``skip`` for otter to ignore, and numbers
    the code cells (``CELL_KEY``) for the report.
    """
    try:
        notebook = nbformat.reads(content.decode("utf-8"), as_version=4)
        cells = notebook.cells
        assert isinstance(cells, list)
        for cell in cells:
            cell.source = cell.get("source", "")
            if not isinstance(cell.source, str):
                raise ValueError("a cell's source is not text")
    except Exception as error:  # noqa: BLE001 - anything wrong with the file
        return None, f"not a valid notebook ({type(error).__name__}: {str(error)[:120]})"
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    code = [cell for cell in cells if cell.get("cell_type") == "code"]
    for number, cell in enumerate(code, 1):
        metadata = cell.setdefault("metadata", {})
        metadata[CELL_KEY] = number
        if cell.source.strip() in skip:
            tags = metadata.setdefault("tags", [])
            if IGNORE_TAG not in tags:
                tags.append(IGNORE_TAG)
    return nbformat.writes(notebook).encode(), None


def start_baseline(settings: Settings) -> subprocess.Popen:
    """Exercise 7's baseline, by the grader's own code in its own process (no student code runs)."""
    env = {**os.environ, "NIN_MODE": settings.mode, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1",
           "CUDA_VISIBLE_DEVICES": ""}  # on the CPU, as the submissions (sandbox.child_environment)
    code = "from grading.exercises import baseline_accuracy; print(repr(baseline_accuracy()))"
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT)


def finish_baseline(process: subprocess.Popen) -> float:
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"Could not compute exercise 7's baseline:\n{stderr[-3000:]}")
    return float(stdout.strip().splitlines()[-1])


PREFLIGHT = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import nin_utils")])


def preflight(autograder: Path, workdir: Path, hidden: list[Path], settings: Settings) -> None:
    """Grade an empty notebook in the sandbox: every test must report, else stop before the class."""
    outcome = sandbox.run(nbformat.writes(PREFLIGHT).encode(), autograder, workdir, timeout=300,
                          hidden=hidden, env=settings.child_env(0.0))
    tests = (outcome.result or {}).get("tests", {})
    if sorted(tests) != sorted(e.key for e in EXERCISES) or any(t.get("passed") for t in tests.values()):
        raise SystemExit("The sandbox does not work here: an empty notebook did not get a result for every "
                         f"exercise (isolation: {sandbox.isolation()}).\nIts result: {outcome.result}\n"
                         f"Its output:\n{outcome.output_head[-4000:]}")


# ----------------------------------------------------------------------------- grading

def interpret(student: str, outcome: sandbox.Outcome, settings: Settings) -> Graded:
    """The child's result, checked: only known exercises, strict booleans, bounded text."""
    graded = Graded(student, seconds=outcome.seconds)
    result = outcome.result if isinstance(outcome.result, dict) else {}
    tests = result.get("tests") if isinstance(result.get("tests"), dict) else {}
    for exercise in EXERCISES:
        entry = tests.get(exercise.key)
        if isinstance(entry, dict):
            graded.passed[exercise.key] = entry.get("passed") is True
            graded.hints[exercise.key] = str(entry.get("message", ""))[:HINT_LIMIT]
        else:
            graded.passed[exercise.key] = False
            graded.hints[exercise.key] = "❌ Not graded: the notebook did not get as far as the tests (see below)."
    problems = result.get("problems") if isinstance(result.get("problems"), list) else []
    graded.problems = [str(p)[:500] for p in problems[:MAX_PROBLEMS]]
    if outcome.timed_out:
        graded.problems.append(f"stopped after {settings.timeout:g} s (the time limit for one notebook): "
                               f"scored 0")
    elif outcome.result is None:
        graded.problems.append(f"the grading process ended (exit status {outcome.returncode}) without a "
                               f"result: scored 0")
    if outcome.output_bytes > sandbox.OUTPUT_KEEP:
        graded.problems.append(f"wrote {outcome.output_bytes:,} bytes to the terminal; only the first "
                               f"{sandbox.OUTPUT_KEEP:,} were kept")
    return graded


def grade_one(student: str, content: bytes | str, autograder: Path, workdir: Path, hidden: list[Path],
              skip: set[str], settings: Settings, baseline: float) -> Graded:
    notebook, why = prepare(content, skip) if isinstance(content, bytes) else (None, content)
    if notebook is None:
        return Graded(student, passed={e.key: False for e in EXERCISES},
                      hints={e.key: "❌ Not graded: the file is not a notebook that can be run." for e in EXERCISES},
                      problems=[f"{student}.ipynb: {why}: scored 0"])
    outcome = sandbox.run(notebook, autograder, workdir, timeout=settings.timeout, hidden=hidden,
                          env=settings.child_env(baseline))
    return interpret(student, outcome, settings)


def grade_all(submissions: Path, out: Path, settings: Settings) -> list[Graded]:
    paths = sorted(p for p in submissions.iterdir() if p.suffix == ".ipynb")
    if not paths:
        raise SystemExit(f"No .ipynb files in {submissions}.")
    start = time.monotonic()
    if sandbox.isolation() == "root" and not settings.allow_unsandboxed:
        raise SystemExit("Running as root, but the submissions cannot be sandboxed here (`unshare` is not "
                         "permitted and user nobody cannot run this Python). Grade in a container or VM "
                         "where they can, or pass --allow-unsandboxed for notebooks you trust.")
    if settings.jobs > 1 and sandbox.isolation() != "namespaces":
        print("Without namespaces the notebooks could reach each other's processes: grading one at a time.")
        settings.jobs = 1
    print(f"Grading {len(paths)} notebook(s) from {submissions} in {settings.mode} mode, {settings.jobs} at a "
          f"time; isolation: {sandbox.isolation()}.", flush=True)
    contents = {path.stem: read_submission(path) for path in paths}  # all read before any runs
    workdir = Path(tempfile.mkdtemp(prefix="nin-grade-"))
    os.chmod(workdir, 0o711 if sandbox.isolation() == "user" else 0o700)
    hidden = [submissions.resolve(), out.resolve(), workdir]
    baseline_process = start_baseline(settings) if settings.baseline is None else None
    try:
        autograder = build_autograder(workdir)
        preflight(autograder, workdir, hidden, settings)
        baseline = settings.baseline if baseline_process is None else finish_baseline(baseline_process)
        print(f"Exercise 7: Recipe() reaches test accuracy {baseline:.3f} on the {settings.mode} mode's short "
              f"budget; a tuned recipe must reach {baseline + 0.02:.3f}.", flush=True)
        skip = released_cells()
        results: dict[str, Graded] = {}
        with ThreadPoolExecutor(max_workers=settings.jobs) as pool:
            futures = {pool.submit(grade_one, student, content, autograder, workdir, hidden, skip, settings,
                                   baseline): student for student, content in contents.items()}
            for number, future in enumerate(as_completed(futures), 1):
                graded = results[futures[future]] = future.result()
                problems = f", {len(graded.problems)} problem(s)" if graded.problems else ""
                print(f"  [{number}/{len(paths)}] {graded.student}: {graded.total}/{TOTAL_POINTS} "
                      f"({graded.seconds:.0f} s{problems})", flush=True)
    finally:
        if baseline_process is not None and baseline_process.poll() is None:
            baseline_process.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    ordered = [results[student] for student in contents]
    write_results(ordered, out, settings, baseline, time.monotonic() - start)
    return ordered


# ----------------------------------------------------------------------------- results

def safe_name(student: str, taken: set[str]) -> str:
    name = re.sub(r"[^\w.-]", "_", student).strip("._") or "student"
    candidate, n = name, 1
    while candidate.lower() in taken:
        n += 1
        candidate = f"{name}-{n}"
    taken.add(candidate.lower())
    return candidate


def feedback(graded: Graded, settings: Settings) -> str:
    lines = [f"# Chapter 5 exercises: feedback for {graded.student}", "",
             f"Autograded score: **{graded.total} / {TOTAL_POINTS}**. The written answers to exercises "
             f"1, 3, 4, 5 and 7 are marked separately.", "",
             "| Exercise | Points | |", "|---|---|---|"]
    for e in EXERCISES:
        lines.append(f"| {e.key[2:]}. {e.title} | {graded.points(e.key)} / {e.points} | "
                     f"{'✅' if graded.passed[e.key] else '❌'} |")
    for e in EXERCISES:
        if not graded.passed[e.key]:
            lines += ["", f"## Exercise {e.key[2:]}: {e.title}", "", graded.hints[e.key]]
    if graded.problems:
        lines += ["", "## While running your notebook", ""] + [f"- {p}" for p in graded.problems]
    lines += ["", f"(Graded with tools/grade.py in {settings.mode} mode: exercise 7 was trained on that "
              f"mode's short budget.)", ""]
    return "\n".join(lines)


def write_results(results: list[Graded], out: Path, settings: Settings, baseline: float, seconds: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "feedback").mkdir(exist_ok=True)
    for stale in (out / "feedback").glob("*.md"):  # from an earlier run
        stale.unlink()
    with open(out / "grades.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student", *(e.key for e in EXERCISES), "total"])
        for g in results:
            writer.writerow([g.student, *(g.points(e.key) for e in EXERCISES), g.total])
    taken: set[str] = set()
    for g in results:
        (out / "feedback" / f"{safe_name(g.student, taken)}.md").write_text(feedback(g, settings))
    width = max(len(g.student) for g in results)
    header = (f"{'student':<{width}}  " + " ".join(f"{e.key:>4}" for e in EXERCISES)
              + f"  total /{TOTAL_POINTS}  seconds")
    rows = [f"{g.student:<{width}}  " + " ".join(f"{g.points(e.key):>4}" for e in EXERCISES)
            + f"  {g.total:>5}  {g.seconds:>12.0f}" for g in results]
    means = f"{'mean':<{width}}  " + " ".join(f"{sum(g.points(e.key) for g in results) / len(results):>4.1f}"
                                               for e in EXERCISES) + \
        f"  {sum(g.total for g in results) / len(results):>5.1f}"
    problems = [f"- {g.student}: {p}" for g in results for p in g.problems]
    summary = "\n".join([
        f"Graded {len(results)} notebook(s) in {seconds:.0f} s ({settings.mode} mode; exercise 7's baseline "
        f"{baseline:.3f}).", f"Isolation: {sandbox.describe_isolation()}.", "", header, *rows, means, "",
        f"Problems ({len(problems)}):" if problems else "No problems.", *problems, "",
        f"Scores: {out / 'grades.csv'}", f"Feedback: {out / 'feedback'}/<student>.md", ""])
    (out / "report.txt").write_text(summary)
    print("\n" + summary)
