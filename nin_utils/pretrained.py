"""The course's NiN (``mnist_nin()``, 28 px, a 7 x 7 map before GAP) trained with the course
recipe, shipped with the package: no training needed.

The weights (float16, under 1 MB) sit in ``nin_utils/weights/`` next to a JSON card
that records how they were made (command, seed, resolution, epochs, time, machine),
their test accuracy on all 10,000 test images, and their SHA-256. ``load_pretrained``
checks the hash before reading the file, and reads it with ``weights_only=True``.
Remake them with ``make pretrained``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from .checkpoint import CheckpointError, load_checkpoint
from .models import NiN

WEIGHTS_DIR = Path(__file__).parent / "weights"
WEIGHTS = WEIGHTS_DIR / "nin_fashion_mnist.pt"
CARD = WEIGHTS_DIR / "nin_fashion_mnist.json"


def pretrained_card() -> dict[str, Any]:
    """How the shipped network was trained and what it scores (see the module docstring)."""
    if not CARD.is_file():
        raise CheckpointError(f"The pretrained network's card {CARD} is missing: reinstall nin_utils, "
                              f"or run `make pretrained`.")
    return json.loads(CARD.read_text())


def load_pretrained(device: torch.device | str = "cpu", path: str | Path | None = None) -> NiN:
    """The shipped ``mnist_nin()``, trained on Fashion-MNIST, in eval mode on ``device`` (float32).

    The file holds the weights and the ``model_args`` that rebuild the network, input
    normalisation included, so ``evaluate(load_pretrained(), data, resolution=28)`` needs
    nothing else. It was trained at ``pretrained_card()["resolution"]`` px (feed it images
    resized to that size for its stated accuracy). Raises ``CheckpointError`` (one sentence)
    when the file is missing, does not match the SHA-256 on its card, or is not a NiN.
    """
    path = Path(path or WEIGHTS)
    card = pretrained_card()
    if not path.is_file():
        raise CheckpointError(f"The pretrained weights {path} are missing: reinstall nin_utils, or run "
                              f"`make pretrained` to train them again.")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != card["sha256"]:
        raise CheckpointError(f"The pretrained weights {path} are damaged or were replaced: their SHA-256 "
                              f"is {digest[:12]}..., the card says {card['sha256'][:12]}.... Reinstall "
                              f"nin_utils, or run `make pretrained`.")
    state = load_checkpoint(path, required=("model", "model_args"))
    try:
        model = NiN(**state["model_args"])
        model.load_state_dict({name: tensor.float() if tensor.is_floating_point() else tensor
                               for name, tensor in state["model"].items()})
    except (TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path} does not hold NiN()'s weights ({str(error).splitlines()[0]}).") from error
    return model.to(device).eval()
