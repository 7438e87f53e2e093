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
from nin_utils import evaluate, get_device, load_checkpoint, load_fashion_mnist, shifted  # noqa: E402
from nin_utils.pretrained import CARD, WEIGHTS, load_pretrained  # noqa: E402


SIZE_FACTORS = (0.75, 0.875, 1, 1.25, 1.5, 2)  # of the training resolution
SHIFTS = (0, 1, 2, 3, 4)  # px, right and down


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--command", required=True, help="the training command, recorded on the card")
    parser.add_argument("--seconds", type=float, required=True, help="wall time of the training command")
    parser.add_argument("--min-accuracy", type=float, default=0.0,
                        help="exit 1 when the exported weights score less on all 10,000 test images")
    args = parser.parse_args()
    state = load_checkpoint(args.checkpoint, required=("model", "model_args", "recipe", "budget", "history"))
    budget, history = state["budget"], state["history"]
    if len(history) != budget["epochs"] or state["train_size"] != 60_000:
        sys.exit(f"{args.checkpoint} is not a finished run on all 60,000 training images.")
    WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {name: tensor.half() if tensor.is_floating_point() else tensor
                          for name, tensor in state["model"].items()},
                "model_args": state["model_args"]}, WEIGHTS)
    card = {
        "command": args.command, "seconds": round(args.seconds), "date": datetime.date.today().isoformat(),
        "machine": describe_machine(get_device()), "torch": torch.__version__,
        "seed": state["seed"], "resolution": budget["resolution"], "epochs": budget["epochs"],
        "model_args": state["model_args"], "recipe": state["recipe"],
        "test_acc_by_epoch": [round(s["test_acc"], 4) for s in history],
        "sha256": hashlib.sha256(WEIGHTS.read_bytes()).hexdigest(),
    }
    CARD.write_text(json.dumps(card, indent=1) + "\n")
    data = load_fashion_mnist(device="cpu")
    model = load_pretrained()
    card["test_acc"] = evaluate(model, data, resolution=budget["resolution"], autocast=False)
    # What "any input size" and translation do to it (chapter 3 shows both beside an FC head's).
    sizes = sorted({max(round(budget["resolution"] * f), model.min_resolution) for f in SIZE_FACTORS})
    card["test_acc_by_size"] = {size: round(evaluate(model, data, resolution=size, autocast=False), 4)
                                for size in sizes}
    card["test_acc_by_shift"] = {pixels: round(evaluate(model, shifted(data, pixels), autocast=False,
                                                        resolution=budget["resolution"]), 4)
                                 for pixels in SHIFTS}
    CARD.write_text(json.dumps(card, indent=1) + "\n")
    print(f"wrote {WEIGHTS} ({WEIGHTS.stat().st_size / 1e6:.1f} MB) and {CARD}: test accuracy "
          f"{card['test_acc']:.4f} on all 10,000 test images; by input size {card['test_acc_by_size']}; "
          f"by shift {card['test_acc_by_shift']}")
    if card["test_acc"] < args.min_accuracy:
        sys.exit(f"test accuracy {card['test_acc']:.4f} is below --min-accuracy {args.min_accuracy}")


if __name__ == "__main__":
    main()
