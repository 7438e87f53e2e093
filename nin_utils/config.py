"""Mode, device and seeding: the only place that reads ``NIN_MODE``.

Two modes share every line of code and differ only in budget:

* ``quick`` -- a subset of the data at 72 px for a couple of epochs, so a whole
  notebook runs on a 2-core CPU in a minute or two (CI and nbval use it);
* ``full`` -- the whole dataset at 224 px, the resolution d2l trains NiN at,
  meant for a GPU.

The default is ``full`` when CUDA is present and ``quick`` otherwise.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ModeSettings:
    """The data budget one mode trains with."""

    name: str
    resolution: int  # images are resized to resolution x resolution on the device
    train_subset: int | None  # None: all 60,000 training images
    test_subset: int | None  # None: all 10,000 test images
    epochs: int
    batch_size: int

    def describe(self) -> str:
        train = "all 60,000" if self.train_subset is None else f"{self.train_subset:,}"
        test = "all 10,000" if self.test_subset is None else f"{self.test_subset:,}"
        return (f"{self.name} mode: {train} training and {test} test images at "
                f"{self.resolution}x{self.resolution} px, {self.epochs} epochs, "
                f"batch {self.batch_size}")


MODES: dict[str, ModeSettings] = {
    # 72 px is just above the 67 px NiN accepts; small batches give more steps per second.
    "quick": ModeSettings("quick", resolution=72, train_subset=10_000, test_subset=2_000,
                          epochs=2, batch_size=32),
    "full": ModeSettings("full", resolution=224, train_subset=None, test_subset=None,
                         epochs=10, batch_size=128),
}


def get_device() -> torch.device:
    """``cuda`` when a GPU is visible, else ``cpu``; nothing here requires a GPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def get_mode(mode: str | None = None) -> ModeSettings:
    """The settings for ``mode``, else ``$NIN_MODE``, else the device's default.

    Raises ``ValueError`` naming the valid modes for anything else.
    """
    name = mode or os.environ.get("NIN_MODE") or ("full" if torch.cuda.is_available() else "quick")
    key = name.strip().lower()
    if key not in MODES:
        raise ValueError(f"Unknown NiN mode {name!r}: use one of {', '.join(MODES)} "
                         "(set NIN_MODE=quick or NIN_MODE=full, or leave it unset for the "
                         "device's default).")
    return MODES[key]


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU) so runs repeat."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
