"""The benchmark scripts fail loudly: an accuracy below its target, a GPU check step that fails."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))  # the scripts import each other by module name

from accuracy import below_target  # noqa: E402


def test_a_final_accuracy_below_the_target_is_reported_per_variant():
    runs = {"course recipe": [{"test_acc": [0.80, 0.931]}, {"test_acc": [0.81, 0.933]}],
            "d2l": [{"test_acc": [0.95, 0.92]}]}  # a good epoch before the last does not count
    assert below_target(runs, 0.93) == ["d2l: final test accuracy 0.9200 (mean over 1 seed(s)) is below the "
                                        "target 0.93"]
    assert below_target(runs, 0.9) == []


def _run_gpu_check(tmp_path: Path, failing: str) -> subprocess.CompletedProcess:
    """benchmarks/gpu_check.sh with a stand-in Python (every step succeeds except one whose command line
    holds ``failing``) and a stand-in nvidia-smi; no GPU, torch or data needed."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "python").write_text(f'#!/bin/sh\ncase "$*" in *"{failing}"*) echo "{failing} failed" >&2; exit 3;; '
                                 f'esac\necho "ran $*"\n')
    (bin_ / "nvidia-smi").write_text("#!/bin/sh\necho 'Stub GPU, 1 MiB, 0'\n")
    for stub in bin_.iterdir():
        stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}", "PYTHON": str(bin_ / "python"),
           "OUT": str(tmp_path / "logs")}
    return subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("failing", ["torch.cuda.is_available", "throughput.py", "--mode full",
                                     "--budget short", "pytest"])
def test_the_gpu_check_fails_when_any_step_fails(tmp_path, failing):
    result = _run_gpu_check(tmp_path, failing)
    assert result.returncode != 0 and "GPU check passed" not in result.stdout, result.stdout


def test_the_gpu_check_passes_when_every_step_does(tmp_path):
    result = _run_gpu_check(tmp_path, "no step has this")
    assert result.returncode == 0 and "GPU check passed" in result.stdout, result.stdout + result.stderr
    log = (tmp_path / "logs" / "full_recipe.txt").read_text()
    assert "ran benchmarks/accuracy.py --mode full --target 0.93" in log
    assert "ran -m pytest --nbval-lax" in (tmp_path / "logs" / "nbval.txt").read_text()
    assert "ran benchmarks/accuracy.py" in (tmp_path / "logs" / "evidence" / "gap_vs_fc.log").read_text()
