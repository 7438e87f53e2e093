"""Execute the course notebooks and commit-ready their outputs.

    python tools/execute_notebooks.py                 # every notebook, mode by device
    python tools/execute_notebooks.py --mode full notebooks/04_training_nin.ipynb

Each notebook runs top to bottom in a fresh kernel (nbclient) with ``NIN_MODE``
set, its outputs and widget state are written back, and its metadata is
stamped with the mode, device, library versions and ``code_hash``: a hash of
its code cells plus the nin_utils sources. ``tests/test_notebooks.py``
recomputes the hash, so a change to a notebook or to nin_utils that was not
re-executed fails CI, and the rendered book always shows what the code prints.
"""

from __future__ import annotations

import argparse
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
STAMP = "nin_course"  # the notebook metadata key


def code_hash(notebook: nbformat.NotebookNode) -> str:
    """SHA-256 of the notebook's code cells and every nin_utils source file."""
    digest = hashlib.sha256()
    for cell in notebook.cells:
        if cell.cell_type == "code":
            digest.update(cell.source.strip().encode() + b"\n\x00")
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\x00")
        digest.update(path.read_bytes().replace(b"\r\n", b"\n") + b"\x00")
    return digest.hexdigest()


def device_description() -> str:
    import torch
    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name()})"
    return f"cpu ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"


def execute(path: Path, mode: str) -> float:
    """Run one notebook in place; return its wall time in seconds."""
    from nbclient import NotebookClient
    import torch
    import torchvision

    notebook = nbformat.read(path, as_version=4)
    os.environ["NIN_MODE"] = mode  # the kernel inherits it
    start = time.perf_counter()
    # A fresh working folder: a checkpoint left by an earlier run must not skip training.
    with tempfile.TemporaryDirectory() as workdir:
        NotebookClient(notebook, timeout=900, kernel_name="python3", store_widget_state=True,
                       record_timing=False, resources={"metadata": {"path": workdir}}).execute()
    seconds = time.perf_counter() - start
    notebook.metadata[STAMP] = {
        "mode": mode, "device": device_description(), "seconds": round(seconds, 1),
        "python": platform.python_version(), "torch": torch.__version__,
        "torchvision": torchvision.__version__, "code_hash": code_hash(notebook),
    }
    nbformat.write(notebook, path)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook in notebooks/")
    parser.add_argument("--mode", choices=["quick", "full"], help="default: full on a GPU, quick on a CPU")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from nin_utils import get_mode

    mode = get_mode(args.mode).name
    for path in args.notebooks or sorted(NOTEBOOKS.glob("[0-9]*.ipynb")):
        print(f"executing {path} in {mode} mode ...", flush=True)
        print(f"  {execute(Path(path), mode):.1f} s", flush=True)


if __name__ == "__main__":
    main()
