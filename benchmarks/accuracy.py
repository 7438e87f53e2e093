"""Test accuracy and time to accuracy of training variants, over seeds, at one budget.

    .venv/bin/python benchmarks/accuracy.py --mode quick                 # the course recipe, seed 0
    .venv/bin/python benchmarks/accuracy.py --mode quick --seeds 0 1 2 \\
        --variant "bf16: autocast=True" --variant "float32: autocast=False"
    .venv/bin/python benchmarks/accuracy.py --budget short --variant "GAP: net.head='gap'" \\
        --variant "FC: net.head='fc'" --out nin_utils/evidence/gap_vs_fc.json

A variant is ``name: key=value, ...``: ``net.*`` keys are ``NiN`` arguments (``net=d2l``
starts from ``d2l_nin()``, ``net=mnist`` from ``mnist_nin()``, ``net=released`` from
``mnist_nin_as_released()``), the others ``Recipe`` fields (``recipe=d2l`` starts from
``Recipe.d2l()`` instead of ``Recipe()``). Each run is a fresh process state
(seeded model, data order and dropout) timed from the start of ``fit``, evaluation
included; seeds and variants alternate so machine noise spreads over all of them. The
table gives every epoch's test accuracy as mean ± standard deviation over seeds; ``--out``
writes the runs as JSON (the chapters' evidence files are made this way).
"""

from __future__ import annotations

import argparse
import ast
import datetime
import json
import shlex
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from machine import describe_machine
from nin_utils import (Callback, NiN, Recipe, d2l_nin, evaluate, fit, get_device, get_mode, load_fashion_mnist,
                       mnist_nin, mnist_nin_as_released, seed_everything, shifted)
from nin_utils.evidence import mean_sd


def parse_variant(text: str) -> tuple[str, dict, dict]:
    """``"name: key=value, ..."`` -> (name, NiN kwargs, Recipe fields)."""
    name, _, settings = text.partition(":")
    net, recipe = {}, {}
    for item in filter(None, (s.strip() for s in settings.split(","))):
        key, _, value = item.partition("=")
        try:
            parsed = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            parsed = value.strip()
        (net if key.strip().startswith("net") else recipe)[key.strip().removeprefix("net.")] = parsed
    make_recipe(recipe)  # fail now on a bad field, not after an hour of the other variants
    return name.strip(), net, recipe


def make_recipe(changes: dict) -> Recipe:
    base = Recipe.d2l() if changes.get("recipe") == "d2l" else Recipe()
    return replace(base, **{k: v for k, v in changes.items() if k != "recipe"})


def build(net: dict, resolution: int) -> torch.nn.Module:
    """``NiN()`` with the ``net.*`` keys as its arguments; ``net=d2l`` starts from ``d2l_nin()``,
    ``net=mnist`` from ``mnist_nin()`` (the paper authors' MNIST network with BatchNorm),
    ``net=released`` from ``mnist_nin_as_released()``."""
    changes = {k: v for k, v in net.items() if k != "net"}
    if changes.get("head") == "fc":
        changes.setdefault("resolution", resolution)
    base = {"d2l": d2l_nin, "mnist": mnist_nin, "released": mnist_nin_as_released}.get(net.get("net"), NiN)
    return base(**changes)


class Stopwatch(Callback):
    """Seconds from its creation to the end of each epoch (evaluation included)."""

    def __init__(self) -> None:
        self.start, self.elapsed = time.perf_counter(), []

    def on_epoch_end(self, history: list) -> None:
        self.elapsed.append(round(time.perf_counter() - self.start, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", help="default: $NIN_MODE, else by device")
    parser.add_argument("--budget", choices=["main", "short"], default="main")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--resolution", type=int)
    parser.add_argument("--train-subset", type=int)
    parser.add_argument("--test-subset", type=int)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variant", action="append", default=[], help="name: key=value, ... (repeatable)")
    parser.add_argument("--target", type=float, help="report when each run first reaches this test accuracy, "
                        "and exit 1 if a variant's final test accuracy (mean over seeds) is below it")
    parser.add_argument("--shifts", type=int, nargs="+", default=[],
                        help="also test each final network on the test images shifted by these pixels")
    parser.add_argument("--out", type=Path, help="write the runs here as JSON")
    args = parser.parse_args()

    mode = get_mode(args.mode)
    budget = replace(getattr(mode, args.budget), **{k: v for k, v in dict(
        epochs=args.epochs, resolution=args.resolution, train_subset=args.train_subset,
        test_subset=args.test_subset).items() if v is not None})
    variants = [parse_variant(v) for v in args.variant or ["course recipe:"]]
    device = get_device()
    print(describe_machine(device))
    print(f"{mode.name} mode, {args.budget} budget: {budget.describe()}", flush=True)
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in variants}
    for seed in args.seeds:
        data = load_fashion_mnist(device=device, train_subset=budget.train_subset,
                                  test_subset=budget.test_subset, seed=seed)
        for name, net, changes in variants:
            seed_everything(seed)
            model = build(net, budget.resolution).to(device)
            stopwatch = Stopwatch()
            history = fit(model, data, make_recipe(changes), budget, seed=seed, progress=False,
                          callbacks=[stopwatch])
            elapsed = stopwatch.elapsed
            accs = [round(s.test_acc, 4) for s in history]
            runs[name].append({"seed": seed, "test_acc": accs, "seconds": elapsed,
                               "train_loss": [round(s.train_loss, 4) for s in history],
                               "train_acc": [round(s.train_acc, 4) for s in history]})
            if args.shifts:
                runs[name][-1]["shift_acc"] = {pixels: round(evaluate(model, shifted(data, pixels),
                                                                      resolution=budget.resolution), 4)
                                               for pixels in args.shifts}
            reached = next((t for a, t in zip(accs, elapsed) if args.target and a >= args.target), None)
            print(f"  seed {seed} {name:<24} test acc by epoch {accs}  {elapsed[-1]:.0f} s"
                  + (f"  reached {args.target} after {reached:.0f} s" if reached else ""), flush=True)
    width = max(len(name) for name in runs) + 2
    print(f"\n{'variant':<{width}}" + "".join(f"{f'epoch {e}':>16}" for e in range(1, budget.epochs + 1))
          + f"{'s':>7}")
    for name, results in runs.items():
        cells = [mean_sd([r["test_acc"][epoch] for r in results]) for epoch in range(budget.epochs)]
        seconds = statistics.mean(r["seconds"][-1] for r in results)
        print(f"{name:<{width}}" + "".join(f"{c:>16}" for c in cells) + f"{seconds:>7.0f}")
    print(f"(mean ± standard deviation over seeds {args.seeds})")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "command": "python benchmarks/accuracy.py " + " ".join(map(shlex.quote, sys.argv[1:])),
            "machine": describe_machine(device), "date": datetime.date.today().isoformat(),
            "mode": mode.name, "budget": asdict(budget),
            "variants": {name: {"net": net, "recipe": asdict(make_recipe(changes)), "runs": runs[name]}
                         for name, net, changes in variants},
        }, indent=1) + "\n")
        print(f"wrote {args.out}")
    missed = [] if args.target is None else below_target(runs, args.target)
    if missed:
        sys.exit("\n".join(missed))


def below_target(runs: dict[str, list[dict]], target: float) -> list[str]:
    """One sentence for each variant whose final test accuracy, mean over its runs, is below ``target``."""
    finals = {name: statistics.mean(r["test_acc"][-1] for r in results) for name, results in runs.items()}
    return [f"{name}: final test accuracy {acc:.4f} (mean over {len(runs[name])} seed(s)) is below the "
            f"target {target}" for name, acc in finals.items() if acc < target]


if __name__ == "__main__":
    main()
