"""Multi-seed results the chapters draw conclusions from.

A chapter that compares training runs does not trust one run: the comparison is run
over several seeds by ``benchmarks/accuracy.py --out nin_utils/evidence/<name>.json``
(the file records the command, machine, date and budget), shipped with the package so
it loads in Colab too, and shown with ``load_evidence(name)``. A difference counts only
when it is larger than the spread between seeds.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from .config import Budget

EVIDENCE_DIR = Path(__file__).parent / "evidence"


@dataclass(frozen=True)
class Evidence:
    """Test accuracies by variant and seed, with how they were made."""

    name: str
    command: str
    machine: str
    date: str
    budget: str
    accuracies: dict[str, dict[int, list[float]]]  # variant -> seed -> test accuracy after each epoch
    runs: dict[str, list[dict]]  # variant -> one dict per seed: test_acc, train_acc, train_loss, ...

    def final(self) -> dict[str, list[float]]:
        """Each variant's final test accuracy, one value per seed."""
        return {variant: [accs[-1] for accs in runs.values()] for variant, runs in self.accuracies.items()}

    def per_seed(self, key: str) -> dict[str, list]:
        """Each variant's ``key`` (``"train_acc"``, ``"shift_acc"``, ...), one value per seed."""
        return {variant: [run[key] for run in runs] for variant, runs in self.runs.items()}

    def table(self) -> str:
        """Final test accuracy per variant: mean ± standard deviation over seeds, range, seeds."""
        rows = [f"{'variant':<30}{'mean ± sd':>16}{'min':>7}{'max':>7}  seeds"]
        for variant, values in self.final().items():
            rows.append(f"{variant:<30}{mean_sd(values):>16}{min(values):>7.3f}{max(values):>7.3f}  "
                        f"{len(values)}")
        return "\n".join(rows)

    def source(self) -> str:
        """One line: the budget, machine, date and command that produced these numbers."""
        return f"{self.budget}; {self.machine}; {self.date}; `{self.command}`"


def mean_and_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def mean_sd(values: list[float]) -> str:
    """``"0.912 ± 0.004"``: ``mean_and_sd`` as the tables print it."""
    return "{:.3f} ± {:.3f}".format(*mean_and_sd(values))


def load_evidence(name: str) -> Evidence:
    """The results stored as ``nin_utils/evidence/<name>.json``; ``FileNotFoundError`` lists the names."""
    path = EVIDENCE_DIR / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in EVIDENCE_DIR.glob("*.json"))
        raise FileNotFoundError(f"No evidence named {name!r}: the course ships {', '.join(known) or 'none'}.")
    raw = json.loads(path.read_text())
    accuracies = {variant: {run["seed"]: run["test_acc"] for run in spec["runs"]}
                  for variant, spec in raw["variants"].items()}
    return Evidence(name, raw["command"], raw["machine"], raw["date"], Budget(**raw["budget"]).describe(),
                    accuracies, {variant: spec["runs"] for variant, spec in raw["variants"].items()})
