"""Grade a folder of chapter-5 notebooks: run each in the sandbox, judge its answers, then write the
CSV, the feedback and the report.

For each notebook: ``grading.sandbox`` runs it with ``grading.child``, which returns what its
functions returned as data; ``python -m grading.exercises`` (the grader's own code, no student code)
judges that data with the checkers and trains exercise 7. Only this process writes into the
results folder, and only after every notebook has been graded; the notebooks never see it.
"""

from __future__ import annotations

import csv
import json
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

from nin_utils.exercises import TUNING_BUDGET, TUNING_MARGIN, TUNING_NETWORK, TUNING_SEEDS

from . import sandbox
from .child import CELL_KEY, CELL_TIMEOUT_ENV, DEFAULT_CELL_TIMEOUT, MEMORY_ENV, TEST_TIMEOUT_ENV
from .exercises import BY_KEY, EXERCISES, HINT_LIMIT, TOTAL_POINTS

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "notebooks" / "05_exercises.ipynb"
MAX_NOTEBOOK_BYTES = 20 * 2**20
MAX_PROBLEMS = 20  # report lines kept per student
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet reads a cell starting so as a formula


@dataclass
class Settings:
    mode: str = "smoke"  # NIN_MODE for the notebooks' own cells (exercise 7 is graded on its own budget)
    timeout: float = 600  # seconds per notebook, all included
    cell_timeout: int = DEFAULT_CELL_TIMEOUT  # seconds per notebook cell
    test_timeout: int = 120  # seconds per exercise's calls in the notebook's kernel
    judge_timeout: float = 1800  # seconds to judge one notebook's answers, exercise 7's training included
    jobs: int = 1  # notebooks graded at the same time
    memory_gb: float = 8  # address space per process of a notebook, and of the judge
    allow_unsandboxed: bool = False  # run the notebooks without a sandbox (trusted notebooks only)

    def child_env(self) -> dict[str, str]:
        return {"NIN_MODE": self.mode, CELL_TIMEOUT_ENV: str(self.cell_timeout),
                TEST_TIMEOUT_ENV: str(self.test_timeout), MEMORY_ENV: str(self.memory_gb)}


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

def released_cells() -> set[str]:
    """Sources of the cells the grader leaves out when a submission has them unchanged: the setup
    cell (it would try to pip-install the course package) and the check cells (the grader runs
    the checkers itself)."""
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
    """The notebook to run (bytes), or None and why it cannot be run.

    Sets the kernel to python3, numbers the code cells (``CELL_KEY``) for the report, then leaves
    out the cells in ``skip``.
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
        cell.setdefault("metadata", {})[CELL_KEY] = number
    notebook.cells = [cell for cell in cells if not (cell in code and cell.source.strip() in skip)]
    return nbformat.writes(notebook).encode(), None


PREFLIGHT = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import nin_utils")])


def preflight(workdir: Path, hidden: list[Path], settings: Settings, sandboxed: bool) -> None:
    """Grade an empty notebook: every exercise must be reported and none passed, else stop before the class."""
    outcome = sandbox.run(nbformat.writes(PREFLIGHT).encode(), workdir, timeout=300, hidden=hidden,
                          env=settings.child_env(), sandboxed=sandboxed)
    answers = (outcome.result or {}).get("answers", {})
    verdicts = judge(answers, settings, workdir / "tuning") if sorted(answers) == sorted(BY_KEY) else {}
    if sorted(verdicts) != sorted(BY_KEY) or any(passed for passed, _ in verdicts.values()):
        raise SystemExit(f"Grading does not work here: an empty notebook did not get a verdict on every "
                         f"exercise.\nIts answers: {answers}\nThe verdicts: {verdicts}\n"
                         f"Its output:\n{outcome.output_head[-4000:]}")


# ----------------------------------------------------------------------------- grading

def judge(answers: dict, settings: Settings, cache: Path) -> dict[str, tuple[bool, str]]:
    """The checkers' verdicts on one notebook's answers, from ``python -m grading.exercises`` (the
    grader's code only, with a memory and time limit); an exercise it did not get to fails."""
    request = json.dumps({"answers": answers, "cache": str(cache), "memory_gb": settings.memory_gb})
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
           "TQDM_DISABLE": "1"}
    try:
        done = subprocess.run([sys.executable, "-m", "grading.exercises"], input=request, capture_output=True,
                              text=True, timeout=settings.judge_timeout, env=env, cwd=ROOT)
        stdout, why = done.stdout, f"the checks failed: {done.stderr.strip()[-300:]}"
    except subprocess.TimeoutExpired as expired:
        stdout = expired.stdout.decode() if isinstance(expired.stdout, bytes) else expired.stdout or ""
        why = f"the checks ran past {settings.judge_timeout:g} s"
    verdicts = {}
    for line in stdout.splitlines():
        try:
            verdict = json.loads(line)
            verdicts[verdict["key"]] = (verdict["passed"] is True, str(verdict["message"])[:HINT_LIMIT])
        except (ValueError, TypeError, KeyError):  # not a verdict line
            continue
    return {e.key: verdicts.get(e.key, (False, f"❌ Not graded: {why}.")) for e in EXERCISES}


def grade_one(student: str, content: bytes | str, workdir: Path, hidden: list[Path], skip: set[str],
              settings: Settings, sandboxed: bool) -> Graded:
    notebook, why = prepare(content, skip) if isinstance(content, bytes) else (None, content)
    if notebook is None:
        return Graded(student, passed={e.key: False for e in EXERCISES},
                      hints={e.key: "❌ Not graded: the file is not a notebook that can be run." for e in EXERCISES},
                      problems=[f"{student}.ipynb: {why}: scored 0"])
    outcome = sandbox.run(notebook, workdir, timeout=settings.timeout, hidden=hidden, env=settings.child_env(),
                          sandboxed=sandboxed)
    result = outcome.result or {}
    answers = result.get("answers") if isinstance(result.get("answers"), dict) else {}
    start = time.monotonic()
    verdicts = judge(answers, settings, workdir / "tuning")
    graded = Graded(student, passed={key: passed for key, (passed, _) in verdicts.items()},
                    hints={key: hint for key, (_, hint) in verdicts.items()},
                    seconds=outcome.seconds + time.monotonic() - start)
    problems = result.get("problems") if isinstance(result.get("problems"), list) else []
    graded.problems = [str(p)[:500] for p in problems[:MAX_PROBLEMS]]
    if outcome.timed_out:
        graded.problems.append(f"stopped after {settings.timeout:g} s (the time limit for one notebook): "
                               f"scored 0 for what it had not answered")
    elif outcome.result is None:
        graded.problems.append(f"the notebook's run ended (exit status {outcome.returncode}) without a result")
    if outcome.output_bytes > sandbox.OUTPUT_KEEP:
        graded.problems.append(f"wrote {outcome.output_bytes:,} bytes to the terminal; only the first "
                               f"{sandbox.OUTPUT_KEEP:,} were kept")
    return graded


def describe_isolation(sandboxed: bool) -> str:
    return ("sandboxed with bubblewrap: each notebook ran in its own user, PID, network and mount namespaces, "
            "seeing only the system, Python, nin_utils and grading, read-only, and a private /tmp; everything it "
            "started was killed with it" if sandboxed else
            "NOT SANDBOXED (--allow-unsandboxed): each notebook ran as you, with your files and network")


def grade_all(submissions: Path, out: Path, settings: Settings) -> list[Graded]:
    paths = sorted(p for p in submissions.iterdir() if p.suffix == ".ipynb")
    if not paths:
        raise SystemExit(f"No .ipynb files in {submissions}.")
    start = time.monotonic()
    why = sandbox.available()
    if why and not settings.allow_unsandboxed:
        raise SystemExit(f"The notebooks cannot be sandboxed here: {why}. Submissions are untrusted code: "
                         f"install bubblewrap (and allow user namespaces), or pass --allow-unsandboxed for "
                         f"notebooks you trust.")
    sandboxed = why is None
    if not sandboxed and settings.jobs > 1:
        print("Without the sandbox the notebooks could reach each other: grading one at a time.")
        settings.jobs = 1
    print(f"Grading {len(paths)} notebook(s) from {submissions} in {settings.mode} mode, {settings.jobs} at a "
          f"time; {describe_isolation(sandboxed)}.", flush=True)
    print(f"Exercise 7 is trained by the grader: {TUNING_NETWORK.__name__}(), {TUNING_BUDGET.describe()} "
          f"(validated on held-out training images), seeds {', '.join(map(str, TUNING_SEEDS))}, one thread; a "
          f"recipe passes with a mean validation accuracy {TUNING_MARGIN:+.3f} over Recipe()'s.", flush=True)
    contents = {path.stem: read_submission(path) for path in paths}  # all read before any runs
    workdir = Path(tempfile.mkdtemp(prefix="nin-grade-"))
    hidden = [submissions.resolve(), out.resolve(), workdir]
    try:
        preflight(workdir, hidden, settings, sandboxed)
        skip = released_cells()
        results: dict[str, Graded] = {}
        with ThreadPoolExecutor(max_workers=settings.jobs) as pool:
            futures = {pool.submit(grade_one, student, content, workdir, hidden, skip, settings, sandboxed): student
                       for student, content in contents.items()}
            for number, future in enumerate(as_completed(futures), 1):
                graded = results[futures[future]] = future.result()
                problems = f", {len(graded.problems)} problem(s)" if graded.problems else ""
                print(f"  [{number}/{len(paths)}] {graded.student}: {graded.total}/{TOTAL_POINTS} "
                      f"({graded.seconds:.0f} s{problems})", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ordered = [results[student] for student in contents]
    write_results(ordered, out, settings, sandboxed, time.monotonic() - start)
    return ordered


# ----------------------------------------------------------------------------- results

def spreadsheet_safe(value: object) -> object:
    """A CSV cell a spreadsheet shows as text: one that starts like a formula gets a leading '."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_START) else value


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
    lines += ["", f"(Graded with tools/grade.py; your notebook ran in {settings.mode} mode, and the grader "
              f"trained exercise 7 itself.)", ""]
    return "\n".join(lines)


def write_results(results: list[Graded], out: Path, settings: Settings, sandboxed: bool, seconds: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "feedback").mkdir(exist_ok=True)
    for stale in (out / "feedback").glob("*.md"):  # from an earlier run
        stale.unlink()
    with open(out / "grades.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student", *(e.key for e in EXERCISES), "total"])
        for g in results:
            writer.writerow([spreadsheet_safe(g.student), *(g.points(e.key) for e in EXERCISES), g.total])
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
        f"Graded {len(results)} notebook(s) in {seconds:.0f} s ({settings.mode} mode).",
        f"How they ran: {describe_isolation(sandboxed)}.", "", header, *rows, means, "",
        f"Problems ({len(problems)}):" if problems else "No problems.", *problems, "",
        f"Scores: {out / 'grades.csv'}", f"Feedback: {out / 'feedback'}/<student>.md", ""])
    (out / "report.txt").write_text(summary)
    print("\n" + summary)
