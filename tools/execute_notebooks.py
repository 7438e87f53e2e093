"""Execute the course notebooks whose outputs are stale, and stamp them.

    python tools/execute_notebooks.py                 # every stale notebook, mode by device
    python tools/execute_notebooks.py --all           # every notebook
    python tools/execute_notebooks.py --mode full notebooks/04_training_nin.ipynb

Each notebook runs top to bottom in a fresh kernel (nbclient) with ``NIN_MODE`` set; its
outputs and widget state are written back, and its metadata is stamped with the mode,
device, library versions, run time and ``code_hash``: a hash of its code cells plus the
``nin_utils`` modules it imports (followed through their own imports) and the data files
those modules read. A notebook is stale when that hash changed, so a change to
``plotting.py`` re-executes only the chapters that draw with it. ``tests/test_notebooks.py``
recomputes the hash, so a change that was not re-executed fails CI.

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
import re
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
# Data files a module reads at run time: part of what a notebook using that module depends on.
MODULE_DATA = {"pretrained": ["weights/*"], "evidence": ["evidence/*.json"]}
TABLE_START, TABLE_END = "<!-- run-times: start (tools/execute_notebooks.py) -->", "<!-- run-times: end -->"


def _imports(source: str) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every import in ``source`` that runs: notebook magics, shell lines
    and ``if TYPE_CHECKING:`` blocks (annotations only) are skipped."""
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            found.append((module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
    return found


def _package_module(module: str) -> str | None:
    """``nin_utils.x`` or ``.x`` -> ``x``; ``nin_utils`` or ``.`` -> ``__init__``; else None."""
    if module in ("nin_utils", "."):
        return "__init__"
    for prefix in ("nin_utils.", "."):
        if module.startswith(prefix) and not module.startswith(".."):
            return module.removeprefix(prefix).split(".")[0]
    return None


def _exported_by() -> dict[str, str]:
    """Public name -> the module of nin_utils that defines it, read from ``__init__.py``."""
    return {name: _package_module(module) for module, names in _imports((PACKAGE / "__init__.py").read_text())
            for name in names}


def modules_used(notebook: nbformat.NotebookNode) -> set[str]:
    """The nin_utils modules a notebook's code imports, followed through their own imports."""
    exported = _exported_by()
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    todo = set()
    for module, names in _imports(code):
        own = _package_module(module) if module.startswith("nin_utils") else None
        if own == "__init__" and not names:  # `import nin_utils`: what its attributes name
            names = re.findall(r"\bnin_utils\.(\w+)", code)
        if own == "__init__":  # `from nin_utils import fit`: the module defining each name
            todo |= {exported.get(name, name) for name in names}
        elif own:
            todo.add(own)
    if any(not (PACKAGE / f"{module}.py").is_file() for module in todo):  # unresolved: may touch anything
        todo |= {p.stem for p in PACKAGE.glob("*.py")}
    used: set[str] = set()
    while todo:
        module = todo.pop()
        if module in used or not (PACKAGE / f"{module}.py").is_file():
            continue
        used.add(module)
        imported = (_package_module(name) for name, _ in _imports((PACKAGE / f"{module}.py").read_text()))
        todo |= {name for name in imported if name and name != "__init__"}
    return used


def code_hash(notebook: nbformat.NotebookNode) -> str:
    """SHA-256 of the notebook's code cells, the nin_utils modules it uses and their data files."""
    digest = hashlib.sha256()
    for cell in notebook.cells:
        if cell.cell_type == "code":
            digest.update(cell.source.strip().encode() + b"\n\x00")
    files = {PACKAGE / "__init__.py"}  # every import of the package runs it
    for module in modules_used(notebook):
        files.add(PACKAGE / f"{module}.py")
        files |= {p for pattern in MODULE_DATA.get(module, []) for p in PACKAGE.glob(pattern)}
    for path in sorted(files):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\x00")
        digest.update(path.read_bytes().replace(b"\r\n", b"\n") + b"\x00")
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


def student_notebooks() -> list[Path]:
    """The student notebooks that are notebooks of their own (their instructor versions have solutions)."""
    from tools.make_student import has_solutions
    return [ROOT / "student" / "notebooks" / p.name for p in sorted(NOTEBOOKS.glob("[0-9]*.ipynb"))
            if has_solutions(nbformat.read(p, as_version=4))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every stale notebook in notebooks/")
    parser.add_argument("--mode", help="default: full on a GPU, quick on a CPU")
    parser.add_argument("--all", action="store_true", help="re-execute even notebooks that are up to date")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from nin_utils import get_mode
    from tools.make_student import build

    mode = get_mode(args.mode).name
    stale = lambda paths: [p for p in paths if args.all or is_stale(p, mode)]
    paths = args.notebooks or stale(sorted(NOTEBOOKS.glob("[0-9]*.ipynb")))
    for path in paths:
        print(f"executing {path} in {mode} mode ...", flush=True)
        print(f"  {execute(Path(path), mode):.1f} s", flush=True)
    build(ROOT / "student")
    for path in stale(student_notebooks()):
        print(f"executing the student edition's {path.relative_to(ROOT)} in {mode} mode ...", flush=True)
        print(f"  {execute(path, mode):.1f} s", flush=True)
    GUIDE.write_text(guide_with_table(GUIDE.read_text()))


if __name__ == "__main__":
    main()
