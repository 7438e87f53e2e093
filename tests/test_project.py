"""The repository's promises and its release and CI scripts: the Python it needs, `make release`."""

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _oldest_python() -> tuple[int, ...]:
    found = re.search(r'^requires-python = ">=([0-9.]+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    return tuple(map(int, found.group(1).split(".")))


def test_the_promised_python_runs_the_code_and_readme_says_the_same():
    oldest = _oldest_python()
    sources = [p for folder in ("nin_utils", "tools", "tests", "grading", "benchmarks")
               for p in (ROOT / folder).rglob("*.py")]
    if any(re.search(r"^\s*import tomllib", p.read_text(), re.M) for p in sources):
        assert oldest >= (3, 11), "tomllib is new in Python 3.11"
    assert f"Python ≥ {'.'.join(map(str, oldest))} " in (ROOT / "README.md").read_text()


def _stub_commands(folder: Path, python_version: str) -> dict[str, str]:
    """A PATH whose python3 reports ``python_version`` and whose make, apt-get, sudo and npm fail at once
    (status 97)."""
    folder.mkdir()
    (folder / "python3").write_text(f"#!/bin/sh\necho {python_version}\n")
    for name in ("make", "apt-get", "sudo", "npm"):
        (folder / name).write_text("#!/bin/sh\nexit 97\n")
    for stub in folder.iterdir():
        stub.chmod(0o755)
    return {"PATH": f"{folder}:/usr/bin:/bin", "HOME": str(folder)}


def test_ci_refuses_a_python_older_than_the_promise(tmp_path):
    result = subprocess.run(["bash", str(ROOT / ".ci" / "run")], env=_stub_commands(tmp_path / "bin", "3.10.12"),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "python3 is Python 3.10.12, older than the 3.11 the course promises" in result.stderr


def test_ci_runs_on_the_oldest_promised_python(tmp_path):
    result = subprocess.run(["bash", str(ROOT / ".ci" / "run")], env=_stub_commands(tmp_path / "bin", "3.11.4"),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 97  # past the check, at the first (stubbed) apt-get or make
    assert "python3 is Python 3.11.4" in result.stdout and "older" not in result.stderr
    assert "warning" not in result.stderr


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args], cwd=repo,
                          capture_output=True, text=True, check=True).stdout


def test_release_refuses_uncommitted_changes(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, repo / name)
    _git(repo, "init", "-q")
    _git(repo, "add", "Makefile", "pyproject.toml")
    _git(repo, "commit", "-q", "-m", "release candidate")
    (repo / "notes.txt").write_text("not committed\n")
    result = subprocess.run(["make", "release"], cwd=repo, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and _git(repo, "tag", "--list") == ""
    assert "make release: the working tree has changes that are not committed" in result.stderr
    (repo / "notes.txt").unlink()
    assert subprocess.run(["make", "-s", "clean-tree"], cwd=repo, capture_output=True).returncode == 0


def test_release_runs_every_test_before_tagging():
    planned = subprocess.run(["make", "-n", "release"], cwd=ROOT, capture_output=True, text=True,
                             timeout=60).stdout
    assert "git status --porcelain" in planned
    assert -1 < planned.find("-m pytest") < planned.find("git tag v")
