"""Mode, device and seeding: the only place that reads ``NIN_MODE``.

The modes share every line of code and differ only in budget (images, epochs);
the network (``mnist_nin()``, at Fashion-MNIST's native 28 px, where its last
map is 7 x 7) and the training recipe are the same in all of them:

* ``smoke`` -- a few thousand images for one epoch: proves a notebook runs
  (CI and nbval use it); its accuracies are not worth reading;
* ``quick`` -- the reader's default on a CPU: three epochs on 50,000 images,
  under 4 minutes on 2 cores with bf16 (all 60,000 would take about 4); on a
  CPU without bf16, three epochs on 26,000 images in float32, about as long;
* ``full`` -- more epochs, meant for a GPU.

The default is ``full`` when CUDA is present and ``quick`` otherwise.
"""

from __future__ import annotations

import functools
import os
import platform
import random
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .errors import UserError

TRAIN_SIZE, TEST_SIZE = 60_000, 10_000  # Fashion-MNIST's two splits


@dataclass(frozen=True)
class Budget:
    """How much training one run gets: images, epochs and input resolution."""

    train_subset: int | None  # None: all 60,000 training images
    test_subset: int | None  # None: all 10,000 test images
    epochs: int
    resolution: int  # images are resized to resolution x resolution px on the device

    def __post_init__(self) -> None:
        for name in ("epochs", "resolution"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise UserError(f"{name}={value!r} is invalid: it must be a whole number >= 1.")

    def describe(self) -> str:
        """``"all 60,000 training images, 3 epochs at 28 px; tested on all 10,000"``."""
        train = f"all {TRAIN_SIZE:,}" if self.train_subset is None else f"{self.train_subset:,}"
        test = f"all {TEST_SIZE:,}" if self.test_subset is None else f"{self.test_subset:,}"
        epochs = f"{self.epochs} epoch" + ("s" if self.epochs != 1 else "")
        return (f"{train} training images, {epochs} at {self.resolution} px; "
                f"tested on {test}")


@dataclass(frozen=True)
class Mode:
    """A named pair of budgets: ``main`` for a chapter's main training run, ``short`` for
    side-by-side comparisons and exercises, which train several networks."""

    name: str
    main: Budget
    short: Budget

    def describe(self) -> str:
        """The mode's name and its main budget, as every notebook prints it."""
        return f"{self.name} mode: {self.main.describe()}"


MODES: dict[str, Mode] = {
    "smoke": Mode("smoke", main=Budget(4_000, 1_000, 1, 28), short=Budget(1_000, 500, 1, 28)),
    "quick": Mode("quick", main=Budget(50_000, None, 3, 28), short=Budget(10_000, None, 3, 28)),
    "full": Mode("full", main=Budget(None, None, 20, 28), short=Budget(20_000, None, 5, 28)),
}
# Quick mode's main budget on a CPU without bf16 (float32 trains about 2.4 times slower there):
# the same 3 epochs on fewer images, 0.911 in 235 s on 2 cores capped to AVX2 (benchmarks/README.md).
QUICK_FLOAT32_MAIN = Budget(26_000, None, 3, 28)


def get_device() -> torch.device:
    """``cuda`` when a GPU is visible, else ``cpu``; nothing here requires a GPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cpu_flags() -> list[str]:
    """The CPU features that decide training speed here: AVX2, AVX-512 BF16, AMX (Linux only)."""
    try:
        return sorted(set(re.findall(r"\b(avx2|avx512_bf16|amx_bf16)\b", Path("/proc/cpuinfo").read_text())))
    except OSError:  # not Linux
        return []


def describe_device(device: torch.device) -> str:
    """``"cpu (2 cores; avx2 avx512_bf16)"`` or ``"cuda (NVIDIA H100 ...)"``: what a speed number ran on."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"{device.type} ({os.cpu_count()} cores; {' '.join(cpu_flags()) or platform.machine()})"


def get_mode(mode: str | None = None) -> Mode:
    """The settings for ``mode``, else ``$NIN_MODE``, else the device's default.

    Raises ``UserError`` naming the valid modes for anything else.
    """
    name = mode or os.environ.get("NIN_MODE") or ("full" if torch.cuda.is_available() else "quick")
    key = name.strip().lower()
    if key not in MODES:
        raise UserError(f"Unknown NiN mode {name!r}: use one of {', '.join(MODES)} (set NIN_MODE, "
                         f"or leave it unset for the device's default).")
    if key == "quick" and not torch.cuda.is_available() and not cpu_has_native_bf16():
        return replace(MODES[key], main=QUICK_FLOAT32_MAIN)
    return MODES[key]


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True where the CPU multiplies bf16 in hardware (AVX-512 BF16 or AMX)."""
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_flags()))


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU) so runs repeat."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
