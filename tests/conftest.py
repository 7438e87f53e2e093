import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from nin_utils import Callback, FashionMNISTData, load_fashion_mnist

ROOT = Path(__file__).resolve().parent.parent
EDITIONS = {"instructor": ROOT, "student": ROOT / "student"}  # the book's two editions: their sources


class Interrupt(Exception):
    """Stands in for a lost session (a Colab disconnect) right after an epoch's checkpoint."""


class _Disconnect(Callback):
    """Interrupts training right after the first epoch's checkpoint."""

    def on_epoch_end(self, history):
        raise Interrupt


disconnect = _Disconnect()


@pytest.fixture(scope="session")
def fashion():
    """The real Fashion-MNIST, whole, on the CPU (loaded once per test session)."""
    return load_fashion_mnist(device="cpu")


def synthetic_fashion(train: int = 512, test: int = 128, seed: int = 0) -> FashionMNISTData:
    """A stand-in for Fashion-MNIST with its dtypes and image shape, made in memory (no files).

    Labels are balanced (each class ``n // 10`` or one more), stored in a shuffled order. Each
    image is noise whose brightness rises with its label (class c: pixels 16c to 16c + 95), so a
    network learns something from a few steps; its pixel statistics are not Fashion-MNIST's.
    """
    generator = torch.Generator().manual_seed(seed)

    def split(n):
        labels = (torch.arange(n) % 10)[torch.randperm(n, generator=generator)]
        noise = torch.randint(0, 96, (n, 28, 28), generator=generator)
        return (noise + 16 * labels.view(-1, 1, 1)).to(torch.uint8), labels

    train_images, train_labels = split(train)
    test_images, test_labels = split(test)
    return FashionMNISTData(train_images=train_images, train_labels=train_labels,
                            test_images=test_images, test_labels=test_labels)


@pytest.fixture
def synthetic():
    """512 training and 128 test images shaped like Fashion-MNIST, on the CPU: for tests of plumbing
    (shapes, batching, training loops) that do not need the real 60,000 images."""
    return synthetic_fashion()


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def _jupyter_book(source: Path, out: Path) -> subprocess.CompletedProcess:
    """``jupyter-book build --all -W -n`` of ``source`` into ``out`` (fails on any warning)."""
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    return subprocess.run([str(jupyter_book), "build", "--all", str(source), "-W", "-n", "--keep-going",
                           "--path-output", str(out)], capture_output=True, text=True,
                          env={**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"})


def build_book(source: Path, out: Path) -> Path:
    """Build ``source`` into ``out`` now; fails the test on any warning. Tests use ``built_book``."""
    result = _jupyter_book(source, out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out / "_build" / "html"


@pytest.fixture(scope="session")
def built_book(tmp_path_factory):
    """``built_book(edition)``: the HTML folder of ``"instructor"`` (the repository root) or
    ``"student"`` (``student/``), built at most once per pytest run.

    The build goes to a folder that every module and every xdist worker shares (the run's
    temporary folder, above each worker's own), under a file lock: the first to ask builds, the
    others wait for it and reuse the result. A marker written after the build records whether
    it succeeded; after a failed one every test that asks fails with the build's log (the
    failure is not retried).
    """
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # under xdist each worker has its own folder below the run's
        shared = shared.parent

    def build(edition: str) -> Path:
        out, marker = shared / f"book-{edition}", shared / f"book-{edition}.result"
        with FileLock(shared / f"book-{edition}.lock"):
            if not marker.exists():
                result = _jupyter_book(EDITIONS[edition], out)
                log = "" if result.returncode == 0 else result.stdout[-3000:] + result.stderr[-3000:]
                marker.write_text(f"{result.returncode}\n{log}")
        returncode, log = marker.read_text().split("\n", 1)
        if returncode != "0":
            pytest.fail(f"jupyter-book build of the {edition} edition ({EDITIONS[edition]}) failed "
                        f"(exit status {returncode}):\n{log}", pytrace=False)
        return out / "_build" / "html"

    return build
