"""Exercise 7, trained by the grader: a recipe's validation accuracy per seed, on a fixed budget.

Only the course's code runs here, on a recipe that is plain data. Every recipe trains the same
way: on the CPU, with one torch thread (the thread count alone moves a run's accuracy by about
0.02), on ``TUNING_BUDGET`` whatever mode the notebooks ran in, so the same recipe always gets the
same accuracies. They are cached by recipe: ``Recipe()`` and a recipe that several
students chose train once per batch.

    python -m grading.tuning --measure     # the evidence behind TUNING_MARGIN (tuning_measured.json)
"""

from __future__ import annotations

import argparse
import fcntl
import functools
import hashlib
import json
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from nin_utils import FashionMNISTData, Recipe, describe_device
from nin_utils.exercises import (TUNING_BUDGET, TUNING_MARGIN, TUNING_NETWORK, TUNING_SEEDS, TUNING_VALIDATION,
                                 tuning_accuracies, tuning_data)

MEASURED = Path(__file__).with_name("tuning_measured.json")
SOLUTION = {"batch_size": 32}  # the published solution (notebooks/05_exercises.ipynb)
# Recipes merely equal to Recipe(): what they gain over it on a seed is the noise a margin must exceed.
EQUAL = ({"lr": Recipe().lr * 1.01}, {"lr": Recipe().lr * 0.99}, {"weight_decay": Recipe().weight_decay * 1.1})


def accuracies(recipe: Recipe, cache: Path) -> list[float]:
    """Validation accuracy per seed of ``TUNING_SEEDS``, trained once per recipe and ``cache`` folder
    (a lock makes concurrent graders wait for the one training it)."""
    key = hashlib.sha256(json.dumps(asdict(recipe), sort_keys=True).encode()).hexdigest()[:16]
    cache.mkdir(exist_ok=True)
    with open(cache / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = cache / f"{key}.json"
        if done.exists():
            return json.loads(done.read_text())
        result = train(recipe)
        done.write_text(json.dumps(result))
    return result


def train(recipe: Recipe, seeds: tuple[int, ...] = TUNING_SEEDS) -> list[float]:
    """Validation accuracy per seed, trained as the grader trains: one thread, the CPU, ``TUNING_BUDGET``."""
    torch.set_num_threads(1)
    return tuning_accuracies(recipe, _data(), TUNING_BUDGET, seeds)


@functools.cache  # loaded once per process
def _data() -> FashionMNISTData:
    return tuning_data(TUNING_BUDGET, "cpu")


def measure(skip: dict | None = None) -> dict:
    """Train Recipe(), the published solution and the merely equal recipes on every seed, as the grader
    does (the runs in ``skip``, a former measurement's, are kept)."""
    runs = dict(skip or {})
    for name, changes in (("Recipe()", {}), ("solution", SOLUTION), *((f"equal {c}", c) for c in EQUAL)):
        if name in runs:
            continue
        runs[name] = {"changes": changes, "accuracies": [], "seconds": []}
        for seed in TUNING_SEEDS:
            start = time.perf_counter()
            runs[name]["accuracies"] += train(Recipe(**changes), (seed,))
            runs[name]["seconds"].append(round(time.perf_counter() - start, 1))
            print(name, seed, runs[name]["accuracies"][-1], runs[name]["seconds"][-1], flush=True)
    return {"command": "python -m grading.tuning --measure", **setting(), "threads": 1,
            "machine": f"{describe_device(torch.device('cpu'))}; torch {torch.__version__}",
            "date": time.strftime("%Y-%m-%d"), "runs": runs}


def setting() -> dict:
    """What a measurement holds for: change any of it and the runs must be made again."""
    return {"network": TUNING_NETWORK.__name__, "budget": asdict(TUNING_BUDGET), "recipe": asdict(Recipe()),
            "validation": TUNING_VALIDATION, "seeds": list(TUNING_SEEDS)}


def gains(measured: dict, prefix: str) -> list[float]:
    """Per-seed accuracy of the runs named ``prefix``... minus Recipe()'s on the same seed, all in one list."""
    baseline = measured["runs"]["Recipe()"]["accuracies"]
    return [a - b for name, run in measured["runs"].items() if name.startswith(prefix)
            for a, b in zip(run["accuracies"], baseline)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--measure", action="store_true", required=True, help=f"write {MEASURED.name}")
    parser.add_argument("--keep", action="store_true", help=f"keep the runs {MEASURED.name} has, add the others")
    args = parser.parse_args(argv)
    former = json.loads(MEASURED.read_text()) if args.keep else {"runs": None}
    if args.keep and any(former.get(key) != value for key, value in setting().items()):
        parser.error(f"{MEASURED.name} was measured for another network, budget, recipe or seeds: measure all again")
    measured = measure(former["runs"])
    MEASURED.write_text(json.dumps(measured, indent=1) + "\n")
    for name in ("solution", "equal"):
        g = gains(measured, name)
        print(f"{name}: gains {[round(x, 4) for x in g]}, mean {statistics.mean(g):+.4f}, sd {statistics.stdev(g):.4f}")
    spread = statistics.stdev(measured["runs"]["Recipe()"]["accuracies"])
    noise = 2 * statistics.stdev(gains(measured, "equal")) / len(TUNING_SEEDS) ** 0.5
    print(f"Recipe()'s spread between seeds {spread:.4f}, twice the standard error of a merely equal recipe's "
          f"mean gain {noise:.4f}: TUNING_MARGIN ({TUNING_MARGIN}) must be above both and at most the "
          f"solution's mean gain (tests/test_grading.py). Wrote {MEASURED}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
