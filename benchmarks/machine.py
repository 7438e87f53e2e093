"""What every benchmark prints first: the machine its numbers come from."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import torch


def cpu_flags() -> str:
    """The CPU features that decide training speed here: AVX2, AVX-512 BF16, AMX."""
    try:
        found = set(re.findall(r"\b(avx2|avx512_bf16|amx_bf16)\b", Path("/proc/cpuinfo").read_text()))
    except OSError:
        return "unknown"
    return " ".join(sorted(found)) or "none of avx2/avx512_bf16/amx_bf16"


def describe_machine(device: torch.device) -> str:
    where = (torch.cuda.get_device_name() if device.type == "cuda"
             else f"{os.cpu_count()} CPU cores, flags: {cpu_flags()}, {torch.get_num_threads()} torch threads")
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return f"{device.type}: {where}; torch {torch.__version__}, Python {platform.python_version()}{load}"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
