"""Grade a class's chapter-5 notebooks, each run in its own sandbox and judged outside it.

    python tools/grade.py SUBMISSIONS_DIR --out RESULTS_DIR [--mode smoke]

SUBMISSIONS_DIR holds one notebook per student, named after the student (``alice.ipynb``).
Writes RESULTS_DIR/grades.csv (student x exercise, and the total), RESULTS_DIR/feedback/
<student>.md (what passed, the checker's hint for the rest, problems while running) and
RESULTS_DIR/report.txt (the summary printed at the end). The notebooks run sandboxed with
bubblewrap (grading/sandbox.py), as root or not; without it the command refuses unless told
--allow-unsandboxed. "Grading a class" in book/instructors.md has the workflow.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from grading.batch import Settings, grade_all  # noqa: E402
from grading.child import DEFAULT_CELL_TIMEOUT  # noqa: E402
from nin_utils.config import MODES  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("submissions", type=Path, help="folder with one .ipynb per student")
    parser.add_argument("--out", type=Path, required=True, help="folder for grades.csv, feedback/, report.txt")
    parser.add_argument("--mode", default="smoke", choices=list(MODES),
                        help="NIN_MODE for the notebooks' own cells (default: smoke); exercise 7 is graded on "
                             "its own budget whatever the mode")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per notebook, all included (600)")
    parser.add_argument("--cell-timeout", type=int, default=DEFAULT_CELL_TIMEOUT,
                        help=f"seconds per notebook cell ({DEFAULT_CELL_TIMEOUT})")
    parser.add_argument("--test-timeout", type=int, default=120, help="seconds per exercise test (120)")
    parser.add_argument("--judge-timeout", type=float, default=1800,
                        help="seconds to check one notebook's answers, exercise 7's training included (1800)")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks graded at the same time (1)")
    parser.add_argument("--memory-gb", type=float, default=8,
                        help="address space per process of a notebook, in GB (8)")
    parser.add_argument("--allow-unsandboxed", action="store_true",
                        help="where bubblewrap cannot sandbox them, run the notebooks as you, with your files "
                             "and network (trusted notebooks only)")
    args = parser.parse_args(argv)
    if not args.submissions.is_dir():
        parser.error(f"{args.submissions} is not a folder")
    out, submissions = args.out.resolve(), args.submissions.resolve()
    if out == submissions or submissions in out.parents:
        parser.error("--out must not be inside the submissions folder")
    grade_all(submissions, out, Settings(mode=args.mode, timeout=args.timeout, cell_timeout=args.cell_timeout,
                                         test_timeout=args.test_timeout, judge_timeout=args.judge_timeout,
                                         jobs=max(1, args.jobs), memory_gb=args.memory_gb,
                                         allow_unsandboxed=args.allow_unsandboxed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
