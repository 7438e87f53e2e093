"""Turn a finished training checkpoint into the pretrained network shipped in ``nin_utils/weights/``.

    python tools/export_pretrained.py CHECKPOINT --command "..." --seconds S

Writes the model's weights in float16 (``nin_fashion_mnist.pt``) and a card
(``nin_fashion_mnist.json``) with the recipe, budget, training time, machine, the
SHA-256 of the weights file, and the test accuracy of the float16 weights on all 10,000
test images (evaluated in float32 at the training resolution, so any machine gets the same
number). ``make pretrained`` runs the training and then this.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import describe_machine  # noqa: E402
from nin_utils import evaluate, load_checkpoint, load_fashion_mnist  # noqa: E402
from nin_utils.pretrained import CARD, WEIGHTS, load_pretrained  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--command", required=True, help="the training command, recorded on the card")
    parser.add_argument("--seconds", type=float, required=True, help="wall time of the training command")
    args = parser.parse_args()
    state = load_checkpoint(args.checkpoint, required=("model", "model_args", "recipe", "budget", "history"))
    budget, history = state["budget"], state["history"]
    if len(history) != budget["epochs"] or state["train_size"] != 60_000:
        sys.exit(f"{args.checkpoint} is not a finished run on all 60,000 training images.")
    WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {name: tensor.half() for name, tensor in state["model"].items()},
                "model_args": state["model_args"]}, WEIGHTS)
    card = {
        "command": args.command, "seconds": round(args.seconds), "date": datetime.date.today().isoformat(),
        "machine": describe_machine(torch.device("cpu")), "torch": torch.__version__,
        "seed": state["seed"], "resolution": budget["resolution"], "epochs": budget["epochs"],
        "model_args": state["model_args"], "recipe": state["recipe"], "test_acc_by_epoch": [round(s["test_acc"], 4) for s in history],
        "sha256": hashlib.sha256(WEIGHTS.read_bytes()).hexdigest(),
    }
    CARD.write_text(json.dumps(card, indent=1) + "\n")
    data = load_fashion_mnist(device="cpu")
    card["test_acc"] = evaluate(load_pretrained(), data, resolution=budget["resolution"], autocast=False)
    CARD.write_text(json.dumps(card, indent=1) + "\n")
    print(f"wrote {WEIGHTS} ({WEIGHTS.stat().st_size / 1e6:.1f} MB) and {CARD}: test accuracy "
          f"{card['test_acc']:.4f} on all 10,000 test images")


if __name__ == "__main__":
    main()
