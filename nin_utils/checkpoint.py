"""Reading and writing checkpoints safely.

A checkpoint is a dict of tensors and plain data (numbers, strings, lists,
dicts). It is written atomically (a crash mid-write never leaves half a file)
and read with ``torch.load(weights_only=True)``, which refuses anything else:
a file a student downloads or receives cannot run code when it is loaded.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read, is not safe to read, or does not match this run."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically, creating the folder if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    partial.replace(path)  # atomic rename


def load_checkpoint(path: str | os.PathLike, required: tuple[str, ...] = ("model",)) -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint`` onto the CPU, never unpickling code.

    Raises ``CheckpointError`` (one sentence) when the file is missing, damaged,
    carries anything but tensors and plain data, or lacks a ``required`` key.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}: check the path, or train first.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad file: zip, pickle, key, EOF...
        refused = re.search(r"(?i)unsupported global:? (?:GLOBAL )?(\S+)", str(error))
        if refused:  # weights_only stopped at a reference to code or a foreign class
            raise CheckpointError(f"Checkpoint {path} was not loaded: it refers to "
                                  f"{refused.group(1)}, and unpickling anything but tensors and "
                                  f"plain data could run code.") from error
        raise CheckpointError(f"Checkpoint {path} is damaged or incomplete ({type(error).__name__}): "
                              f"delete it to start afresh, or point to another file.") from error
    missing = [key for key in required if not isinstance(state, dict) or key not in state]
    if missing:
        raise CheckpointError(f"{path} is not a nin_utils checkpoint (it lacks {', '.join(missing)}).")
    return state
