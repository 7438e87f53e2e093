"""Notebook edits for issue 19 (run once, then delete): exercise 7 chosen on validation images over
several seeds, the checks' new rules (networks rebuilt from their layers, exercise 2 without torch,
exercise 6's range), and exercise 6.1's check accepting any right sharding.

    .venv/bin/python tools/_pending_notebook_edits_19.py

Every edit asserts that the old text is there. Re-execute the notebooks afterwards (make notebooks)
and regenerate student/ (tools/make_student.py): the checkers' messages changed too.
"""

from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent

EDITS = {
    "notebooks/05_exercises.ipynb": [
        # How to use the notebook: the checks judge a network as rebuilt from its layers.
        ("its check prints \"Not done yet\", and the rest of the notebook still runs.",
         "its check prints \"Not done yet\", and the rest of the notebook still runs.\n\n"
         "Build the networks the exercises ask for from `nn.Sequential` and `torch.nn` layers (or\n"
         "`NiN` and `nin_block`), as the exercises show: a check rebuilds your network from its list of\n"
         "layers and judges that, as the course's class grader does, so a network class of your own,\n"
         "with a `forward()` of its own, is not accepted."),
        # Imports for exercise 7.
        ("import math\n\nimport matplotlib.pyplot as plt",
         "import math\nimport statistics\n\nimport matplotlib.pyplot as plt"),
        ("from nin_utils.exercises import (D2L_NIN_CONFIG, check_3x3_instead_of_1x1, check_counting,\n"
         "                                 check_drop_one_1x1, check_fc_head, check_make_nin, check_memory,\n"
         "                                 check_tuning, check_wide_head)",
         "from nin_utils.exercises import (D2L_NIN_CONFIG, TUNING_MARGIN, TUNING_SEEDS, check_3x3_instead_of_1x1,\n"
         "                                 check_counting, check_drop_one_1x1, check_fc_head, check_make_nin,\n"
         "                                 check_memory, check_tuning, check_wide_head, tuning_accuracies,\n"
         "                                 tuning_data)"),
        # Exercise 2: the check runs the function with torch switched off.
        ("Without calling `count_params`, `layer_table` or `count_flops`, write",
         "Without building a network or calling `count_params`, `layer_table` or `count_flops` (the\n"
         "check runs your function with torch switched off), write"),
        # Exercise 6: an estimate within a range.
        ("- **training**: the sum of every layer's output size. `layer_table(model, resolution)`\n"
         "  lists the layers; each row has an `output_shape` (without the batch dimension);",
         "- **training**: an estimate of what the backward pass needs kept. The simplest keeps every\n"
         "  layer's output: the sum of every layer's output size. `layer_table(model, resolution)`\n"
         "  lists the layers; each row has an `output_shape` (without the batch dimension). A closer\n"
         "  count keeps each tensor once (a ReLU can work in place on its convolution's output); the\n"
         "  check accepts any count from one tensor per convolution up to every layer's output;"),
        # Exercise 7: seeds, validation images, the margin.
        ("The function below trains a fresh `NiN()` on a small, fixed budget (the mode's short budget:\n"
         "same images, epochs, resolution and seed every time) with the `Recipe` you give it, and\n"
         "returns its history. The baseline is what the course's own recipe, `Recipe()`, reaches on it.",
         "The function below trains a fresh network (the one `nin_utils.exercises.TUNING_NETWORK` builds)\n"
         "on a small, fixed budget (the mode's short budget: same images, epochs and resolution every\n"
         "time) with the `Recipe` you give it, once for each seed of `TUNING_SEEDS`, and returns each\n"
         "run's accuracy on validation images: training images held out of the training (`tuning_data`).\n"
         "You choose a recipe on them; the test set is not looked at. The baseline is what the course's\n"
         "own recipe, `Recipe()`, reaches on the same seeds."),
        ("budget = mode.short\n"
         "data = load_fashion_mnist(device=device, train_subset=budget.train_subset, test_subset=budget.test_subset)\n"
         "\n"
         "def train_with(recipe: Recipe):\n"
         "    \"\"\"Train a fresh NiN() on the short budget with `recipe`; return the history.\"\"\"\n"
         "    seed_everything(0)\n"
         "    return fit(NiN().to(device), data, recipe, budget, progress=False)\n"
         "\n"
         "baseline = train_with(Recipe())[-1].test_acc\n"
         "print(f\"{mode.name} mode, short budget: {budget.describe()}\")\n"
         "print(f\"baseline: Recipe() reaches test accuracy {baseline:.3f}\")",
         "budget = mode.short\n"
         "data = tuning_data(budget, device)  # the budget's training images, and others to validate on\n"
         "\n"
         "def train_with(recipe: Recipe) -> list[float]:\n"
         "    \"\"\"Validation accuracy of a fresh network trained with `recipe` on the short budget, one per seed.\"\"\"\n"
         "    return tuning_accuracies(recipe, data, budget)\n"
         "\n"
         "baseline = train_with(Recipe())\n"
         "print(f\"{mode.name} mode, short budget: {len(data.train_labels):,} training images, {budget.epochs} \"\n"
         "      f\"epoch(s) at {budget.resolution} px; validation on {len(data.test_labels):,} other training images\")\n"
         "print(f\"baseline: Recipe() reaches validation accuracy {statistics.mean(baseline):.3f} on average over \"\n"
         "      f\"seeds {TUNING_SEEDS} ({', '.join(f'{a:.3f}' for a in baseline)}); a tuned recipe must reach \"\n"
         "      f\"{statistics.mean(baseline) + TUNING_MARGIN:.3f}\")"),
        ("Write `tuned_recipe()` returning a dict of `Recipe` fields to change, such that the tuned\n"
         "recipe beats the baseline by at least 0.02 in test accuracy. Any field of `Recipe` may change\n"
         "(`help(Recipe)`: batch size, optimizer, learning rate, schedule, warm-up, weight decay,\n"
         "clipping, label smoothing, ...); the budget (images, epochs, resolution, seed) is fixed.\n"
         "Think about what limits a run this short. Each try costs one training run.",
         "Write `tuned_recipe()` returning a dict of `Recipe` fields to change, such that the tuned\n"
         "recipe beats the baseline by at least `TUNING_MARGIN` in mean validation accuracy over the\n"
         "seeds: more than a recipe merely equal to `Recipe()` gains by chance. Any field of `Recipe` may\n"
         "change (`help(Recipe)`: batch size, optimizer, learning rate, schedule, warm-up, weight decay,\n"
         "clipping, label smoothing, ...); the budget (images, epochs, resolution, seeds) is fixed.\n"
         "Think about what limits a run this short. Each try costs one training run per seed. The class\n"
         "grader trains your recipe itself, on the same seeds, on a budget of its own (`TUNING_BUDGET`)."),
        ("On a budget this short, one likely limit is the number of updates: in quick mode, 10,000\n"
         "images in batches of 128 are 79 steps an epoch, 158 in all, and the one-cycle schedule spends\n"
         "30% of them warming up. A smaller batch gives more steps on the same images for about the same\n"
         "compute: batch 32 gives four times as many. (A higher peak learning rate, 4e-3, did worse in the\n"
         "runs below.)",
         "On a budget this short, one likely limit is the number of updates: in quick mode, 10,000\n"
         "images in batches of 128 are 79 steps an epoch, and the one-cycle schedule spends 30% of all\n"
         "steps warming up. A smaller batch gives more steps on the same images for about the same\n"
         "compute: batch 32 gives four times as many."),
        ("A single run is not proof: the check above compares one seed. The same comparison over\n"
         "three seeds (made with one thread per run, the cell above with two, so even seed 0's numbers\n"
         "differ a little: the sums are rounded in another order):",
         "The check above compares three seeds on validation images. The course's evidence compares\n"
         "recipes over three seeds on the test set, looked at once, at the end (made with one thread per\n"
         "run, the cell above with two, so even seed 0's numbers differ a little: the sums are rounded in\n"
         "another order):"),
        ("A tuning result you can trust compares several seeds, and picks settings\n"
         "on a validation split rather than the test set, which should be looked at once, at the end.",
         "A tuning result you can trust compares several seeds, and picks settings\n"
         "on a validation split, as the check does, rather than the test set, which should be looked at\n"
         "once, at the end."),
    ],
    "notebooks/06_distributed.ipynb": [
        ("run the check, predict: do the processes together still take the same global batches as one\n"
         "process with batch $NB$, and does every process get equal parts?",
         "run the check, predict: do the processes together still take the same global batches as one\n"
         "process with batch $NB$, and does every process get equal parts? The check tests what makes a\n"
         "sharding right, not which one you chose: `nin_utils`' own (contiguous parts of each global\n"
         "batch) passes too, and the check says which one your function does."),
    ],
}


def main() -> None:
    for name, edits in EDITS.items():
        path = ROOT / name
        notebook = nbformat.read(path, as_version=4)
        for old, new in edits:
            cells = [cell for cell in notebook.cells if old in cell.source]
            assert len(cells) == 1, (name, old[:60], len(cells))
            cells[0].source = cells[0].source.replace(old, new)
        nbformat.write(notebook, path)
        print(f"{name}: {len(edits)} edits")


if __name__ == "__main__":
    main()
