"""Grade one notebook with otter-grader; runs inside the sandbox, as the unprivileged user.

    python -m grading.child BOX

``BOX`` holds ``submission.ipynb`` and ``autograder.zip``; this writes ``BOX/result.json``:
``{"tests": {key: {"passed": bool, "message": str}}, "problems": [str, ...]}``. The grader
reads it after this process and everything it started have ended, and trusts nothing in it
but the pass/fail of known exercises and bounded strings.

Two limits are added to otter's notebook execution (nbclient): every cell gets a time limit
after which the kernel is interrupted and execution goes on with the next cell, and the
outputs a notebook may keep in memory are capped (a print flood is dropped, not stored).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import traceback
from pathlib import Path

CELL_TIMEOUT_ENV = "NIN_GRADE_CELL_TIMEOUT"
GRADING_CELL_TIMEOUT_ENV = "NIN_GRADE_GRADING_CELL_TIMEOUT"  # the cell otter appends to run the tests
DEFAULT_CELL_TIMEOUT = 120  # seconds, when the grader does not set CELL_TIMEOUT_ENV
OUTPUT_LIMIT = 5_000_000  # characters of cell output kept per notebook
TEXT_LIMIT = 300  # characters of an error message kept for the report
CELL_KEY = "nin_grading_cell"  # cell metadata: the code cell's number in the submission
MEMORY_ENV = "NIN_GRADE_MEMORY_GB"  # address space per process, in GB
LIMITS = {  # for this process and all it starts (the kernel, the student's subprocesses)
    resource.RLIMIT_AS: int(float(os.environ.get(MEMORY_ENV, 8)) * 2**30),
    resource.RLIMIT_CORE: 0,
    resource.RLIMIT_FSIZE: 512 * 2**20,  # no single file above 512 MB
    resource.RLIMIT_NPROC: 4096,  # processes and threads of the user
}
INTERRUPTED = ("CellTimeout", "KeyboardInterrupt")


def _patch_nbclient(problems: list[str]) -> None:
    """Cell time limit with interrupt, and an output cap, for every NotebookClient (otter's included)."""
    from nbclient import NotebookClient

    cell_timeout = int(os.environ.get(CELL_TIMEOUT_ENV, DEFAULT_CELL_TIMEOUT))
    grading_timeout = int(os.environ.get(GRADING_CELL_TIMEOUT_ENV, 1200))
    original_init, original_output = NotebookClient.__init__, NotebookClient.output

    def timeout_for(cell) -> int:
        return grading_timeout if "GradingResults(Checker.get_results())" in cell.source else cell_timeout

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.timeout_func = timeout_for
        self.interrupt_on_timeout = True
        self.error_on_timeout = {"ename": "CellTimeout", "evalue": "the cell ran past its time limit "
                                 "and was interrupted", "traceback": []}
        self._kept_output = 0

    def output(self, outs, msg, display_id, cell_index):
        content = msg.get("content", {})
        if msg.get("msg_type") == "error":  # always kept (the report lists them), but bounded
            content["evalue"] = str(content.get("evalue", ""))[:TEXT_LIMIT * 4]
            content["traceback"] = [str(line)[:2000] for line in content.get("traceback", [])[-30:]]
            return original_output(self, outs, msg, display_id, cell_index)
        size = len(str(content.get("text", ""))) + sum(len(str(v)) for v in content.get("data", {}).values())
        self._kept_output += size
        if self._kept_output > OUTPUT_LIMIT:
            if not getattr(self, "_flood_reported", False):
                self._flood_reported = True
                problems.append(f"the notebook printed more than {OUTPUT_LIMIT:,} characters of output; "
                                f"the rest was dropped")
            return None
        return original_output(self, outs, msg, display_id, cell_index)

    NotebookClient.__init__, NotebookClient.output = init, output


def _cell_problems(notebook) -> list[str]:
    """One line per code cell of the submission that raised or was interrupted.

    The grader numbered the submission's code cells in their metadata (``CELL_KEY``); cells
    without a number are otter's own.
    """
    lines = []
    for cell in notebook.cells:
        number = cell.get("metadata", {}).get(CELL_KEY)
        if cell.cell_type != "code" or not isinstance(number, int):
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                first = next((line for line in cell.source.splitlines() if line.strip()), "")[:60]
                if out.get("ename") in INTERRUPTED:
                    limit = os.environ.get(CELL_TIMEOUT_ENV, DEFAULT_CELL_TIMEOUT)
                    lines.append(f"code cell {number} (`{first}`) ran past the time limit for a cell "
                                 f"({limit} s) and was interrupted")
                else:
                    lines.append(f"code cell {number} (`{first}`) raised {out.get('ename')}: "
                                 f"{str(out.get('evalue'))[:TEXT_LIMIT]}")
    return lines


def _limit_resources() -> None:
    for which, value in LIMITS.items():
        soft, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass


def main(box: Path) -> None:
    _limit_resources()
    problems: list[str] = []
    result: dict = {"tests": {}, "problems": problems}
    try:
        _patch_nbclient(problems)
        import otter.api

        os.chdir(box)
        results = otter.api.grade_submission(str(box / "submission.ipynb"), str(box / "autograder.zip"),
                                             quiet=True)
        if results.catastrophic_error is not None:
            error = results.catastrophic_error
            problems.append(f"grading failed: {type(error).__name__}: {str(error)[:TEXT_LIMIT]}")
        for name, test_file in results.results.items():
            for case in test_file.test_case_results[:1]:
                message = case.message or ""
                if "AssertionError: " in message:  # otter's "Error at line ..." header, then our hint
                    message = message.split("AssertionError: ", 1)[1]
                result["tests"][name] = {"passed": bool(case.passed), "message": message.strip()}
        if results.notebook is not None:
            problems.extend(_cell_problems(results.notebook))
    except BaseException as error:  # noqa: BLE001 - report anything, the grader decides
        problems.append(f"grading failed: {type(error).__name__}: {str(error)[:TEXT_LIMIT]}")
        traceback.print_exc()
    (box / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
