"""The committed notebooks: in the table of contents, executed with the current code, clean.

nbval (run by the README's test command) re-executes every notebook and compares the cells
tagged ``nbval-check-output``; these tests check what nbval cannot.
"""

import re
from pathlib import Path

import nbformat
import pytest
import yaml

from tools.execute_notebooks import STAMP, code_hash

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())


def load(path):
    return nbformat.read(path, as_version=4)


def test_every_notebook_is_in_the_table_of_contents_and_vice_versa():
    toc = (ROOT / "_toc.yml").read_text()
    listed = set(re.findall(r"file: (notebooks/\S+)", toc))
    assert listed == {f"notebooks/{p.stem}" for p in NOTEBOOKS}
    assert len(NOTEBOOKS) >= 3


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_outputs_were_produced_by_the_current_code(path):
    stamp = load(path).metadata.get(STAMP)
    assert stamp, f"{path.name} was never executed by tools/execute_notebooks.py"
    assert stamp["mode"] in ("quick", "full")
    assert stamp["code_hash"] == code_hash(load(path)), (
        f"{path.name} or nin_utils changed since the notebook was executed: run "
        f"`python tools/execute_notebooks.py {path.relative_to(ROOT)}` and commit the result")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_stored_errors_and_every_code_cell_ran(path):
    for index, cell in enumerate(load(path).cells):
        if cell.cell_type != "code":
            continue
        assert cell.execution_count is not None, f"cell {index} has no stored execution"
        for output in cell.outputs:
            assert output.output_type != "error", f"cell {index} stored an error: {output.get('ename')}"
            assert "Traceback (most recent call last)" not in output.get("text", "")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_cell_installs_nin_utils_from_the_configured_repository(path):
    first = load(path).cells[0]
    assert first.cell_type == "code" and 'find_spec("nin_utils") is None' in first.source
    assert f"git+{CONFIG['repository']['url']}" in first.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_deterministic_cells_are_checked_and_have_outputs(path):
    checked = [c for c in load(path).cells if "nbval-check-output" in c.metadata.get("tags", [])]
    assert checked, f"{path.name} marks no cell for nbval to check"
    for cell in checked:
        assert cell.outputs, f"a checked cell has no stored output to compare:\n{cell.source[:80]}"


def test_instructor_guide_quotes_the_stamped_run_times():
    guide = (ROOT / "book" / "instructors.md").read_text()
    for path in NOTEBOOKS:
        stamp = load(path).metadata[STAMP]
        row = f"| {path.stem} | {stamp['mode']} | {stamp['device']} | {stamp['seconds']:.0f} s |"
        assert row in guide, f"book/instructors.md should have the row {row!r} (from {path.name}'s metadata)"
