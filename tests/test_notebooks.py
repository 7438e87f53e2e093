"""The committed notebooks: in the table of contents, executed with the current code, clean.

nbval (run by the README's test command) re-executes every notebook and compares the cells
tagged ``nbval-check-output``; these tests check what nbval cannot.
"""

import re
from pathlib import Path

import nbformat
import pytest

from tools.execute_notebooks import GUIDE, STAMP, code_hash, guide_with_table
from tools.setup_cell import TAGS, setup_cell

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
STUDENT_NOTEBOOKS = sorted((ROOT / "student" / "notebooks").glob("[0-9]*.ipynb"))


def load(path):
    return nbformat.read(path, as_version=4)


def test_every_notebook_is_in_the_table_of_contents_and_vice_versa():
    toc = (ROOT / "_toc.yml").read_text()
    listed = set(re.findall(r"file: (notebooks/\S+)", toc))
    assert listed == {f"notebooks/{p.stem}" for p in NOTEBOOKS}
    assert len(NOTEBOOKS) >= 3


@pytest.mark.parametrize("path", NOTEBOOKS + STUDENT_NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_first_cell_is_the_hidden_setup_cell(path):
    """Exactly tools/setup_cell.py's cell: the configured repository URL at the current release."""
    first = load(path).cells[0]
    fix = "python tools/make_student.py" if "student" in path.parts else "python tools/setup_cell.py"
    assert first.cell_type == "code" and first.source == setup_cell(), (
        f"{path.relative_to(ROOT)}: the first cell is not tools/setup_cell.py's: run `{fix}`")
    assert first.metadata.get("tags") == TAGS


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


@pytest.mark.parametrize("path", NOTEBOOKS + STUDENT_NOTEBOOKS, ids=lambda p: p.parent.parent.name + "/" + p.stem)
def test_no_cell_trains_a_network_whose_gap_averages_less_than_5x5(path):
    # fit() warns SmallMapWarning (and names it) for such a network; the stored outputs are fresh.
    for index, cell in enumerate(load(path).cells):
        for output in cell.get("outputs", []):
            assert "SmallMapWarning" not in output.get("text", ""), (
                f"cell {index} trains a network whose last map is under 5 x 5")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_deterministic_cells_are_checked_and_have_outputs(path):
    checked = [c for c in load(path).cells if "nbval-check-output" in c.metadata.get("tags", [])]
    assert checked, f"{path.name} marks no cell for nbval to check"
    for cell in checked:
        assert cell.outputs, f"a checked cell has no stored output to compare:\n{cell.source[:80]}"


def test_instructor_guide_quotes_the_stamped_run_times():
    text = GUIDE.read_text()
    assert guide_with_table(text) == text, ("book/instructors.md's run-time table differs from the notebooks' "
                                            "stamps: run `python tools/execute_notebooks.py`")


def _notebook(*sources):
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])


def test_a_comment_in_the_package_needs_no_re_execution_but_code_does(tmp_path, monkeypatch):
    import tools.execute_notebooks as tool
    package = tmp_path / "nin_utils"
    package.mkdir()
    for source in (ROOT / "nin_utils").glob("*.py"):
        (package / source.name).write_bytes(source.read_bytes())
    monkeypatch.setattr(tool, "ROOT", tmp_path)
    monkeypatch.setattr(tool, "PACKAGE", package)
    notebook = _notebook("from nin_utils import count_params")
    before = code_hash(notebook)
    training = package / "training.py"
    source = training.read_text()
    training.write_text(source.replace("LOG_EVERY = 20", "LOG_EVERY = 20  # a one-line comment change"))
    assert code_hash(notebook) == before
    training.write_text(source.replace("LOG_EVERY = 20", "LOG_EVERY = 21"))
    assert code_hash(notebook) != before
