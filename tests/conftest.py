import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nin_utils import load_fashion_mnist


class Interrupt(Exception):
    """Stands in for a lost session (a Colab disconnect) right after an epoch's checkpoint."""


def disconnect(history):
    """An ``on_epoch_end`` callback that interrupts training after the first epoch."""
    raise Interrupt


@pytest.fixture(scope="session")
def fashion():
    """The real Fashion-MNIST, whole, on the CPU (loaded once per test session)."""
    return load_fashion_mnist(device="cpu")


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def build_book(source: Path, out: Path) -> Path:
    """``jupyter-book build --all -W -n`` of ``source`` into ``out``; fails the test on any warning."""
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run([str(jupyter_book), "build", "--all", str(source), "-W", "-n", "--keep-going",
                             "--path-output", str(out)], capture_output=True, text=True,
                            env={**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out / "_build" / "html"
