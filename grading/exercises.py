"""Chapter 5's exercises as autograder tests: one otter test file each, calling a nin_utils checker.

Each test looks up the student's function by name in the executed notebook's globals and
runs the checker on it (``run_check``). The checker prints its ✅/❌ line; a ❌ line becomes
the test's failure message, which is the hint the student gets back. Nothing else from the
notebook is trusted: exercise 7 is trained with this module's own ``train_short_budget`` and
compared with a baseline the grader computed before any submission ran.

This module holds no answers: the checkers compare digests (see ``nin_utils.exercises``).
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

BASELINE_ENV = "NIN_GRADE_BASELINE"  # exercise 7's baseline accuracy, set by the grader
TEST_TIMEOUT_ENV = "NIN_GRADE_TEST_TIMEOUT"  # seconds one test may run
HINT_LIMIT = 2_000  # characters of a checker's message kept for the feedback


@dataclass(frozen=True)
class Exercise:
    key: str  # otter's test name and the CSV column
    title: str
    function: str  # what the student defines in the notebook
    checker: str  # in nin_utils.exercises
    points: int


EXERCISES = [
    Exercise("ex1", "One 1x1 convolution per block", "build_nin_one_1x1", "check_drop_one_1x1", 2),
    Exercise("ex2", "Counting parameters and multiply-adds by hand", "count_by_hand", "check_counting", 3),
    Exercise("ex3", "The 10-channel bottleneck", "build_head", "check_wide_head", 2),
    Exercise("ex4", "3x3 instead of 1x1", "build_nin_3x3", "check_3x3_instead_of_1x1", 2),
    Exercise("ex5", "Global average pooling replaced by a fully connected layer", "build_nin_fc_head",
             "check_fc_head", 2),
    Exercise("ex6", "Memory: training versus inference", "activation_memory", "check_memory", 3),
    Exercise("ex7", "Tuning the training recipe", "tuned_recipe", "check_tuning", 3),
    Exercise("ex8", "A NiN family", "make_nin", "check_make_nin", 3),
]
BY_KEY = {exercise.key: exercise for exercise in EXERCISES}
TOTAL_POINTS = sum(exercise.points for exercise in EXERCISES)


class TestTimeout(Exception):
    """The student's code ran past the test's time limit (an Exception, so the checker reports it)."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise ``TestTimeout`` in the main thread after ``seconds`` (SIGALRM; Unix, main thread only)."""
    def expire(signum, frame):
        raise TestTimeout(f"it ran for more than {seconds:g} s and was stopped")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def train_short_budget(recipe) -> list:
    """Exercise 7's training: a fresh ``NiN()`` on the mode's short budget, seed 0.

    The same as the notebook's ``train_with`` (cell "Tuning the training recipe"), which the
    grader does not take from the submission: a student's notebook could redefine it.
    """
    from nin_utils import NiN, fit, get_device, get_mode, seed_everything

    budget, device = get_mode().short, get_device()
    data = _short_data(budget, device)
    seed_everything(0)
    return fit(NiN().to(device), data, recipe, budget, progress=False)


@functools.cache  # the data set is loaded once per budget and device, not once per submission's test
def _short_data(budget, device):
    from nin_utils import load_fashion_mnist

    return load_fashion_mnist(device=device, train_subset=budget.train_subset, test_subset=budget.test_subset)


def baseline_accuracy() -> float:
    """What ``Recipe()`` reaches with ``train_short_budget``: exercise 7's bar (plus its margin)."""
    from nin_utils import Recipe

    return train_short_budget(Recipe())[-1].test_acc


def run_check(key: str, function: Callable[..., Any] | None) -> None:
    """Otter's test body: run exercise ``key``'s checker on ``function``; AssertionError(hint) on ❌."""
    from nin_utils import exercises as checkers

    exercise = BY_KEY[key]
    if not callable(function):
        what = "is not defined" if function is None else f"is a {type(function).__name__}, not a function"
        raise AssertionError(f"❌ `{exercise.function}` {what} in your notebook: keep the exercise's "
                             f"function name.")
    check = getattr(checkers, exercise.checker)
    extra: tuple = ()
    if key == "ex7":
        baseline = os.environ.get(BASELINE_ENV)
        if baseline is None:
            raise AssertionError("❌ The grader did not set the baseline accuracy (NIN_GRADE_BASELINE).")
        extra = (train_short_budget, float(baseline))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), time_limit(float(os.environ.get(TEST_TIMEOUT_ENV, 120))):
        passed = check(function, *extra)
    message = printed.getvalue().strip()
    if passed is not True:
        raise AssertionError(message[:HINT_LIMIT] or "❌ The checker did not pass.")


def otter_test_source(exercise: Exercise) -> str:
    """The otter test file (exception format) for ``exercise``."""
    return f'''"""{exercise.key}: {exercise.title} (generated by grading/batch.py)."""
from otter.test_files import test_case

OK_FORMAT = False
name = "{exercise.key}"
points = {exercise.points}


@test_case(points={exercise.points}, hidden=False)
def {exercise.key}({exercise.function}):
    from grading.exercises import run_check
    run_check("{exercise.key}", {exercise.function})
'''
