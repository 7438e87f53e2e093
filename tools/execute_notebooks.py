"""Execute the course notebooks whose outputs are stale, and stamp them.

    python tools/execute_notebooks.py                 # every stale notebook, mode by device
    python tools/execute_notebooks.py --all           # every notebook
    python tools/execute_notebooks.py --mode full notebooks/04_training_nin.ipynb

Each notebook runs top to bottom in a fresh kernel (nbclient) with ``NIN_MODE`` set; its
outputs and widget state are written back, and its metadata is stamped with the mode,
device, library versions, run time and ``code_hash``: a hash of its code cells plus all of
``nin_utils`` (its modules as syntax trees, so a comment or a reformatting changes nothing,
and its data files: weights and evidence). A notebook is stale when that hash changed: any
change to what the package's code does re-executes every chapter (about N minutes on 2 CPU
cores), the simplest rule that guarantees committed outputs match the code.
``tests/test_notebooks.py`` recomputes the hash, so a change that was not re-executed fails CI.

Then the student edition is regenerated (``tools/make_student.py``) and each student notebook
that is a notebook of its own (its instructor version has solutions) is executed the same way
when stale, so its outputs are what a student sees before solving anything. The instructor
guide's table of run times is regenerated from the stamps (between the ``run-times`` markers
in ``book/instructors.md``).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
PACKAGE = ROOT / "nin_utils"
GUIDE = ROOT / "book" / "instructors.md"
STAMP = "nin_course"  # the notebook metadata key
TABLE_START, TABLE_END = "<!-- run-times: start (tools/execute_notebooks.py) -->", "<!-- run-times: end -->"


def package_files() -> list[Path]:
    """What every notebook depends on: all of nin_utils's modules and the data files they read."""
    return sorted([*PACKAGE.glob("*.py"), *PACKAGE.glob("weights/*"), *PACKAGE.glob("evidence/*.json")])


def code_hash(notebook: nbformat.NotebookNode) -> str:
    """SHA-256 of the notebook's code cells and of nin_utils: its modules as code (their syntax
    tree, so comments and formatting do not count) and its data files byte for byte."""
    digest = hashlib.sha256()
    for cell in notebook.cells:
        if cell.cell_type == "code":
            digest.update(cell.source.strip().encode() + b"\n\x00")
    for path in package_files():
        content = path.read_bytes()
        if path.suffix == ".py":
            content = ast.dump(ast.parse(content)).encode()
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\x00" + content + b"\x00")
    return digest.hexdigest()


def is_stale(path: Path, mode: str) -> bool:
    notebook = nbformat.read(path, as_version=4)
    stamp = notebook.metadata.get(STAMP, {})
    return stamp.get("code_hash") != code_hash(notebook) or stamp.get("mode") != mode


def execute(path: Path, mode: str) -> float:
    """Run one notebook in place; return its wall time in seconds."""
    from nbclient import NotebookClient
    import torch
    import torchvision

    from nin_utils import describe_device, get_device

    notebook = nbformat.read(path, as_version=4)
    os.environ["NIN_MODE"] = mode  # the kernel inherits it
    start = time.perf_counter()
    # A fresh working folder: a checkpoint left by an earlier run must not skip training.
    with tempfile.TemporaryDirectory() as workdir:
        NotebookClient(notebook, timeout=1800, kernel_name="python3", store_widget_state=True,
                       record_timing=False, resources={"metadata": {"path": workdir}}).execute()
    seconds = time.perf_counter() - start
    notebook.metadata[STAMP] = {
        "mode": mode, "device": describe_device(get_device()), "seconds": round(seconds, 1),
        "python": platform.python_version(), "torch": torch.__version__,
        "torchvision": torchvision.__version__, "code_hash": code_hash(notebook),
    }
    nbformat.write(notebook, path)
    return seconds


def run_time_table() -> str:
    """The guide's table of stamped run times, one row per notebook."""
    rows = ["| notebook | mode | device | run time |", "|---|---|---|---|"]
    for path in sorted(NOTEBOOKS.glob("[0-9]*.ipynb")):
        stamp = nbformat.read(path, as_version=4).metadata.get(STAMP, {})
        rows.append(f"| {path.stem} | {stamp.get('mode', '-')} | {stamp.get('device', '-')} | "
                    f"{stamp['seconds']:.0f} s |" if stamp else f"| {path.stem} | - | - | not executed |")
    return "\n".join(rows)


def guide_with_table(text: str) -> str:
    """``text`` with the run-time table between its markers replaced by the current stamps."""
    before, _, rest = text.partition(TABLE_START)
    _, _, after = rest.partition(TABLE_END)
    return f"{before}{TABLE_START}\n{run_time_table()}\n{TABLE_END}{after}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every stale notebook in notebooks/")
    parser.add_argument("--mode", help="default: full on a GPU, quick on a CPU")
    parser.add_argument("--all", action="store_true", help="re-execute even notebooks that are up to date")
    parser.add_argument("--by-run-time", action="store_true",
                        help="execute nothing: print the notebooks given, the shortest stamped run first")
    args = parser.parse_args()
    if args.by_run_time:
        seconds = lambda path: nbformat.read(path, as_version=4).metadata.get(STAMP, {}).get("seconds", 0)
        print("\n".join(str(path) for path in sorted(args.notebooks, key=seconds)))
        return
    sys.path.insert(0, str(ROOT))
    from nin_utils import get_mode
    from tools.make_student import build, own_notebooks

    mode = get_mode(args.mode).name
    stale = lambda paths: [p for p in paths if args.all or is_stale(p, mode)]
    paths = args.notebooks or stale(sorted(NOTEBOOKS.glob("[0-9]*.ipynb")))
    for path in paths:
        print(f"executing {path} in {mode} mode ...", flush=True)
        print(f"  {execute(Path(path), mode):.1f} s", flush=True)
    build(ROOT / "student")
    for path in stale(own_notebooks()):
        print(f"executing the student edition's {path.relative_to(ROOT)} in {mode} mode ...", flush=True)
        print(f"  {execute(path, mode):.1f} s", flush=True)
    GUIDE.write_text(guide_with_table(GUIDE.read_text()))


if __name__ == "__main__":
    main()
