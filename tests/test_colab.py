"""The Colab path, end to end: a chapter opened on its own in a fresh Python runs top to bottom.

What Colab does, without Colab or GitHub:
- a fresh Python environment without nin_utils that still has the heavy libraries Colab ships
  (a new virtual environment sees this one's packages through a view of its site-packages, so
  torch is not installed a second time; nin-course itself is left out of the view);
- the notebook alone in an empty folder, no checkout beside it;
- its first cell installs ``git+<repository.url>@v<version>`` with pip's defaults (build
  isolation included); the URL is redirected, with git's ``url.<base>.insteadOf`` in a temporary
  HOME, to a clone of this repository whose HEAD holds the working tree, tagged ``v<version>``;
- a kernel running the new environment's Python executes every cell (nbclient), NIN_MODE=smoke.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest
import yaml
from nbclient import NotebookClient

from tools.setup_cell import release

pytestmark = pytest.mark.slow  # a fresh environment, a pip install and a whole chapter run

ROOT = Path(__file__).resolve().parent.parent
CHAPTER = ROOT / "notebooks" / "01_one_by_one_convolution.ipynb"
URL = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
VERSION = release()[0]
KERNEL = "colab-like"
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@localhost",
                "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@localhost"}


def _run(*args: str | Path, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, args))}\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
    return result


def _is_course_package(name: str) -> bool:
    """nin-course's own entries in a site-packages folder (its metadata, an editable install)."""
    name = name.lower().replace("-", "_")
    return name.startswith(("nin_course", "nin_utils")) or (name.startswith("__editable__") and "nin_course" in name)


def site_packages_view(dest: Path) -> Path:
    """A folder of links to everything in this environment's site-packages but nin-course.

    A ``.pth`` line naming this environment's site-packages itself would hide the package (the
    editable install's own ``.pth`` inside it is not processed) but not its metadata:
    ``importlib.metadata`` would still report nin-course as installed, and the setup cell would
    skip the install that this test is about.
    """
    dest.mkdir()
    for folder in dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]):
        for entry in Path(folder).iterdir():
            if not _is_course_package(entry.name) and entry.suffix != ".pth" and not (dest / entry.name).exists():
                (dest / entry.name).symlink_to(entry)
    return dest


def fresh_environment(tmp: Path) -> Path:
    """A new virtual environment that sees the course's libraries but not nin-course; its python."""
    venv = tmp / "venv"
    # No pip of its own: `python -m pip` finds this environment's pip through the view and installs
    # into the new environment (sys.prefix), as Colab's pip installs into Colab's Python.
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    (site / "course-libraries.pth").write_text(f"{site_packages_view(tmp / 'libraries')}\n")
    return python


def release_repository(tmp: Path) -> Path:
    """A clone of this repository whose HEAD is the working tree as it is now, tagged v<version>."""
    clone = tmp / "clone"
    _run("git", "clone", "--quiet", ROOT, clone)
    listed = _run("git", "-C", ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard").stdout
    files = {name for name in listed.split("\0") if name}
    for name in files:
        source, target = ROOT / name, clone / name
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        elif target.is_file():  # deleted in the working tree
            target.unlink()
    env = {**os.environ, **GIT_IDENTITY}
    _run("git", "-C", clone, "add", "-A", env=env)
    _run("git", "-C", clone, "commit", "--quiet", "--allow-empty", "-m", "working tree", env=env)
    _run("git", "-C", clone, "tag", f"v{VERSION}", env=env)
    return clone


def probe(python: Path, cwd: Path) -> dict:
    """Whether nin_utils imports in ``python`` and which nin-course pip's metadata names."""
    code = """if True:
        import importlib.metadata, importlib.util, json
        try:
            dist = importlib.metadata.distribution("nin-course")
            version, direct_url = dist.version, json.loads(dist.read_text("direct_url.json") or "null")
        except importlib.metadata.PackageNotFoundError:
            version = direct_url = None
        spec = importlib.util.find_spec("nin_utils")
        print(json.dumps({"version": version, "direct_url": direct_url,
                          "nin_utils": spec.origin if spec else None}))"""
    return json.loads(_run(python, "-c", code, cwd=cwd).stdout)


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """Run the chapter as Colab would; returns (executed notebook, python, tmp folders)."""
    tmp = tmp_path_factory.mktemp("colab")
    python = fresh_environment(tmp)
    folder = tmp / "content"  # Colab's working folder: the notebook and nothing else
    folder.mkdir()
    shutil.copy2(CHAPTER, folder / CHAPTER.name)
    before = probe(python, folder)

    clone = release_repository(tmp)
    home = tmp / "home"
    home.mkdir()
    jupyter = tmp / "jupyter"
    (jupyter / "kernels" / KERNEL).mkdir(parents=True)
    (jupyter / "kernels" / KERNEL / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (fresh, without nin_utils)", "language": "python"}))
    patch = pytest.MonkeyPatch()
    for name, value in {"HOME": str(home), "JUPYTER_PATH": str(jupyter), "NIN_MODE": "smoke",
                        "OMP_NUM_THREADS": "1", "PYTHONNOUSERSITE": "1", "PIP_NO_INPUT": "1"}.items():
        patch.setenv(name, value)
    patch.delenv("PYTHONPATH", raising=False)
    try:
        _run("git", "config", "--global", f"url.{clone.as_uri()}.insteadOf", URL)
        notebook = nbformat.read(folder / CHAPTER.name, as_version=4)
        client = NotebookClient(notebook, kernel_name=KERNEL, timeout=900, startup_timeout=120,
                                allow_errors=True,  # every cell runs; test_every_cell_ran_without_error reports
                                resources={"metadata": {"path": str(folder)}})
        client.execute()
        after = probe(python, folder)
    finally:
        patch.undo()
    return {"notebook": notebook, "before": before, "after": after, "python": python, "folder": folder}


def test_the_fresh_environment_lacks_nin_utils_but_has_the_libraries(colab):
    assert colab["before"] == {"version": None, "direct_url": None, "nin_utils": None}
    found = "import importlib.util as u; print([u.find_spec(m) is not None for m in %r])"
    libraries = ["torch", "torchvision", "matplotlib", "ipywidgets", "ipykernel"]
    assert _run(colab["python"], "-c", found % libraries, cwd=colab["folder"]).stdout.strip() == str([True] * 5)


def test_the_setup_cell_installs_the_release_from_the_repository(colab):
    after = colab["after"]
    assert after["version"] == VERSION
    assert after["direct_url"]["url"] == URL
    assert after["direct_url"]["vcs_info"]["requested_revision"] == f"v{VERSION}"
    venv = colab["python"].parent.parent
    assert after["nin_utils"] and Path(after["nin_utils"]).is_relative_to(venv), after["nin_utils"]
    assert not (colab["folder"] / "nin_utils").exists()


def test_every_cell_ran_without_error(colab):
    for index, cell in enumerate(colab["notebook"].cells):
        if cell.cell_type != "code":
            continue
        assert cell.execution_count is not None, f"cell {index} did not run"
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors or "raises-exception" in cell.metadata.get("tags", []), (
            f"cell {index}: {errors[0].ename}: {errors[0].evalue}")
