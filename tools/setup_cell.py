"""The first cell of every notebook: installs the matching nin_utils release where it is missing.

    python tools/setup_cell.py          # rewrite the first cell of every notebook

The repository URL comes from ``_config.yml`` (``repository.url``) and the release from
``pyproject.toml`` (``version``; ``make release`` tags the commit ``v<version>``), so a
notebook opened in Colab installs the package it was written for, not whatever the default
branch holds. The cell is tagged ``remove-cell``: it runs in Colab and under nbval but the
rendered page starts with the chapter's title. ``tests/test_notebooks.py`` checks every
notebook's first cell against ``setup_cell()``.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
TAGS = ["remove-cell"]


def release() -> tuple[str, str]:
    """``(version, git URL with the release tag)`` of the course package."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    return version, f"git+{url}@v{version}"


def setup_cell() -> str:
    version, source = release()
    return f'''# Setup (Colab): install nin_utils, the course package, release {version},
# unless it is there. After `make setup` on your own machine it is installed
# already and this cell does nothing.
import importlib, importlib.metadata, subprocess, sys
try:
    installed = importlib.metadata.version("nin-course")
except importlib.metadata.PackageNotFoundError:
    installed = None
if installed != "{version}":
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "{source}"],
                   check=True)
    importlib.invalidate_caches()  # let this kernel import the new package'''


def write(paths: list[Path]) -> None:
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        cell = nbformat.v4.new_code_cell(setup_cell(), metadata={"tags": TAGS})
        first = notebook.cells[0] if notebook.cells else None
        if first is not None and first.cell_type == "code":  # the setup cell: replace it
            if first.source == cell.source:  # unchanged: keep what it printed when it last ran
                cell.outputs, cell.execution_count = first.outputs, first.execution_count
            notebook.cells[0] = cell
        else:
            notebook.cells.insert(0, cell)
        nbformat.write(notebook, path)


if __name__ == "__main__":
    write([Path(p) for p in sys.argv[1:]] or sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")))
