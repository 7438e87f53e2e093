"""Run one notebook and collect its answers; runs inside the sandbox, where the student's code runs.

    python -m grading.child BOX FD

``BOX`` holds ``submission.ipynb``. The notebook runs in a fresh kernel (nbclient), every cell
with a time limit after which the kernel is interrupted and the next cell runs, its outputs
capped. Then one more cell in the same kernel runs ``grading.exercises.probe``, which writes the
answers (what the student's functions returned) to ``BOX/answers.json``. The result,
``{"answers": {...}, "problems": [str, ...]}``, goes to file descriptor ``FD``. Everything here
runs beside the student's code, so the grader trusts nothing in the result: it judges the
answers as data (``grading.exercises.judge``).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import traceback
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from .exercises import EXERCISES

CELL_TIMEOUT_ENV = "NIN_GRADE_CELL_TIMEOUT"  # seconds per notebook cell
TEST_TIMEOUT_ENV = "NIN_GRADE_TEST_TIMEOUT"  # seconds per exercise in the probe
MEMORY_ENV = "NIN_GRADE_MEMORY_GB"  # address space per process, in GB
DEFAULT_CELL_TIMEOUT = 120  # seconds, when the grader does not set CELL_TIMEOUT_ENV
OUTPUT_LIMIT = 5_000_000  # characters of cell output kept per notebook
ANSWERS_LIMIT = 1_000_000  # bytes of answers.json read back
TEXT_LIMIT = 300  # characters of an error message kept for the report
CELL_KEY = "nin_grading_cell"  # cell metadata: the code cell's number in the submission
PROBE_KEY = "nin_grading_probe"  # cell metadata: the cell the grader added
INTERRUPTED = ("CellTimeout", "KeyboardInterrupt")


class Client(NotebookClient):
    """nbclient with a time limit per cell (interrupt, then the next cell) and a cap on kept outputs."""

    def __init__(self, notebook, problems: list[str], **kwargs) -> None:
        super().__init__(notebook, kernel_name="python3", allow_errors=True, interrupt_on_timeout=True,
                         error_on_timeout={"ename": "CellTimeout", "evalue": "the cell ran past its time limit "
                                           "and was interrupted", "traceback": []}, **kwargs)
        self.problems, self.kept = problems, 0

    def output(self, outs, msg, display_id, cell_index):
        content = msg.get("content", {})
        if msg.get("msg_type") == "error":  # always kept (the report lists them), but bounded
            content["evalue"] = str(content.get("evalue", ""))[:TEXT_LIMIT * 4]
            content["traceback"] = [str(line)[:2000] for line in content.get("traceback", [])[-30:]]
            return super().output(outs, msg, display_id, cell_index)
        self.kept += len(str(content.get("text", ""))) + sum(len(str(v)) for v in content.get("data", {}).values())
        if self.kept > OUTPUT_LIMIT:
            if not any("printed more than" in p for p in self.problems):
                self.problems.append(f"the notebook printed more than {OUTPUT_LIMIT:,} characters of output; "
                                     f"the rest was dropped")
            return None
        return super().output(outs, msg, display_id, cell_index)


def probe_cell(box: Path, seconds: float) -> nbformat.NotebookNode:
    source = (f"import grading.exercises\n"
              f"grading.exercises.probe(globals(), {str(box / 'answers.json')!r}, {seconds!r})")
    return nbformat.v4.new_code_cell(source, metadata={PROBE_KEY: True})


def cell_problems(notebook: nbformat.NotebookNode) -> list[str]:
    """One line per code cell of the submission that raised or was interrupted (the grader numbered
    them in their metadata, ``CELL_KEY``)."""
    lines = []
    for cell in notebook.cells:
        number = cell.get("metadata", {}).get(CELL_KEY)
        if cell.cell_type != "code" or not isinstance(number, int):
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                first = next((line for line in cell.source.splitlines() if line.strip()), "")[:60]
                if out.get("ename") in INTERRUPTED:
                    lines.append(f"code cell {number} (`{first}`) ran past the time limit for a cell "
                                 f"({os.environ.get(CELL_TIMEOUT_ENV, DEFAULT_CELL_TIMEOUT)} s) and was interrupted")
                else:
                    lines.append(f"code cell {number} (`{first}`) raised {out.get('ename')}: "
                                 f"{str(out.get('evalue'))[:TEXT_LIMIT]}")
    return lines


def limit_resources() -> None:
    """For this process and all it starts (the kernel, the student's subprocesses)."""
    memory = int(float(os.environ.get(MEMORY_ENV, 8)) * 2**30)
    for which, value in ((resource.RLIMIT_AS, memory), (resource.RLIMIT_CORE, 0),
                         (resource.RLIMIT_FSIZE, 512 * 2**20), (resource.RLIMIT_NPROC, 4096)):
        hard = resource.getrlimit(which)[1]
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass


def read_answers(path: Path) -> dict:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return {}
    try:
        answers = json.loads(os.read(fd, ANSWERS_LIMIT))
        return answers if isinstance(answers, dict) else {}
    except (OSError, ValueError, RecursionError):
        return {}
    finally:
        os.close(fd)


def main(box: Path, result_fd: int) -> None:
    limit_resources()
    for folder in ("HOME", "TMPDIR"):
        Path(os.environ.get(folder, box)).mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    result: dict = {"answers": {}, "problems": problems}
    try:
        notebook = nbformat.read(box / "submission.ipynb", as_version=4)
        cell_timeout = int(os.environ.get(CELL_TIMEOUT_ENV, DEFAULT_CELL_TIMEOUT))
        test_timeout = float(os.environ.get(TEST_TIMEOUT_ENV, 120))
        probe = probe_cell(box, test_timeout)
        probe_timeout = test_timeout * (len(EXERCISES) + 1)
        notebook.cells.append(probe)
        client = Client(notebook, problems, resources={"metadata": {"path": str(box)}},
                        timeout_func=lambda cell: probe_timeout if cell.metadata.get(PROBE_KEY) else cell_timeout)
        client.execute()
        problems.extend(cell_problems(notebook))
        result["answers"] = read_answers(box / "answers.json")
        if not result["answers"]:
            problems.append("the grader's cell after the notebook could not collect the answers: "
                            + next((f"{o.get('ename')}: {str(o.get('evalue'))[:TEXT_LIMIT]}" for o in probe.outputs
                                    if o.get("output_type") == "error"), "it wrote nothing"))
    except BaseException as error:  # noqa: BLE001 - report anything, the grader decides
        problems.append(f"grading failed: {type(error).__name__}: {str(error)[:TEXT_LIMIT]}")
        traceback.print_exc()
    with open(result_fd, "w") as out:
        out.write(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
