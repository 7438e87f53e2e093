"""What every benchmark prints first: the machine its numbers come from."""

from __future__ import annotations

import os
import platform

import torch

from nin_utils import describe_device


def describe_machine(device: torch.device) -> str:
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return (f"{describe_device(device)}, {torch.get_num_threads()} torch threads; torch {torch.__version__}, "
            f"Python {platform.python_version()}{load}")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
