"""Chapter 5's exercises for the class grader: what runs in a student's kernel, and what judges it.

``probe`` runs in the kernel that ran the student's notebook, inside the sandbox. For each
exercise it runs the nin_utils checker with a recorder in place of the student's function: the
recorder notes every call the checker makes and what the function returned or raised, as plain
data (``nin_utils.answers``: numbers, containers, networks as their layers). The checker's verdict
there is thrown away: that process is the student's, and anything in it may have been replaced.

``judge`` runs in a process of the grader's own (``python -m grading.exercises``), where no
student code runs: the same checker, with a replay in place of the function, which answers each
call from the data (networks rebuilt from torch.nn layers) and fails any call that was not
recorded. So whatever ran in the student's process can change only what their functions
returned. Exercise 7's training runs there too, on the recipe the notebook returned
(``grading.tuning``).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import resource
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HINT_LIMIT = 2_000  # characters of a checker's message kept for the feedback
MAX_CALLS = 100  # recorded calls read per exercise
CHECK_SECONDS = 300  # a check in the judge takes seconds; this stops only an answer built to take long


@dataclass(frozen=True)
class Exercise:
    key: str  # the CSV column
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
def time_limit(seconds: float) -> Iterator[None]:
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


def _checker(exercise: Exercise) -> Callable[..., bool]:
    from nin_utils import exercises as checkers

    return getattr(checkers, exercise.checker)


# ----------------------------------------------------------------------------- in the student's kernel

def _not_here(recipe) -> list[float]:
    raise RuntimeError("exercise 7 is trained by the grader, not in the notebook's process")


KERNEL_EXTRAS: dict[str, tuple] = {"ex7": (_not_here, [0.0])}  # the checkers' other arguments


def probe(namespace: dict[str, Any], path: str, seconds: float) -> None:
    """Record every exercise's calls into the JSON file ``path``, rewritten after each exercise so that
    a later one that hangs loses nothing. Runs in the student's kernel; ``namespace`` is its globals."""
    answers = {}
    for exercise in EXERCISES:
        answers[exercise.key] = record(exercise, namespace.get(exercise.function), seconds)
        Path(path).write_text(json.dumps(answers))


def record(exercise: Exercise, function: Any, seconds: float) -> dict[str, Any]:
    """``{"calls": [{"args": ..., "value" or "raised" and "message": ...}, ...]}``, or ``{"missing": type}``
    when the notebook has no such function."""
    from nin_utils.answers import encode

    if not callable(function):
        return {"missing": "" if function is None else type(function).__name__}
    calls: list[dict[str, Any]] = []

    def recorder(*args):
        call = {"args": encode(args)}
        calls.append(call)
        try:
            value = function(*args)
        except BaseException as error:
            call.update(raised=type(error).__name__, message=str(error)[:HINT_LIMIT])
            raise
        call["value"] = encode(value)
        return value

    with contextlib.redirect_stdout(io.StringIO()), time_limit(seconds):
        try:
            _checker(exercise)(recorder, *KERNEL_EXTRAS.get(exercise.key, ()))
        except Exception:  # noqa: BLE001 - the verdict here does not count
            pass
    return {"calls": calls}


# ----------------------------------------------------------------------------- in the grader's process

def replay(name: str, calls: list) -> Callable[..., Any]:
    """A stand-in for the student's function ``name``: answers the calls ``record`` saw, from the data."""
    from nin_utils.answers import NotDescribable, decode, encode
    from nin_utils.exercises import _Wrong

    answers: dict[str, dict] = {}
    for call in calls[:MAX_CALLS]:
        if isinstance(call, dict):
            answers.setdefault(json.dumps(call.get("args"), sort_keys=True), call)

    def function(*args):
        shown = f"{name}({', '.join(_short(arg) for arg in args)})"
        call = answers.get(json.dumps(encode(args), sort_keys=True))
        if call is None:
            raise _Wrong(f"{shown}: the notebook gave no answer for these inputs.")
        if "raised" in call:
            raise _exception(str(call["raised"])[:60], str(call.get("message", ""))[:HINT_LIMIT])
        try:
            return decode(call.get("value"))
        except NotDescribable as why:
            raise _Wrong(f"{shown}: {why}") from None
        except Exception:  # noqa: BLE001 - malformed data
            raise _Wrong(f"{shown}: what it returned could not be read back.") from None

    return function


def _short(arg: Any) -> str:
    return type(arg).__name__ + "()" if hasattr(arg, "parameters") else repr(arg)[:80]


def _exception(name: str, message: str) -> Exception:
    """An exception like the one the student's function raised: the checker reports it the same way."""
    from nin_utils.exercises import _Wrong

    known = {"NotImplementedError": NotImplementedError, "_Wrong": _Wrong}
    kind = known.get(name) or type(name if name.isidentifier() else "Error", (Exception,), {})
    return kind(message)


def judge(exercise: Exercise, recorded: Any, extras: tuple = ()) -> tuple[bool, str]:
    """The checker's verdict on what the notebook's function returned: ``(passed, message)``."""
    if not isinstance(recorded, dict) or not isinstance(recorded.get("calls", []), list):
        return False, "❌ Not graded: the notebook did not get as far as this exercise (see below)."
    if "missing" in recorded:
        missing = str(recorded["missing"])[:40]
        what = f"is a {missing}, not a function" if missing else "is not defined"
        return False, f"❌ `{exercise.function}` {what} in your notebook: keep the exercise's function name."
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        passed = _checker(exercise)(replay(exercise.function, recorded.get("calls", [])), *extras)
    return passed is True, printed.getvalue().strip()[:HINT_LIMIT] or "❌ The checker did not pass."


def _tuning_extras(recorded: Any, cache: Path) -> tuple:
    """Exercise 7's ``train`` and baseline: trained here (``grading.tuning``), the baseline only when
    the notebook returned a recipe."""
    from nin_utils import Recipe

    from . import tuning

    answered = isinstance(recorded, dict) and any(isinstance(c, dict) and "value" in c
                                                  for c in recorded.get("calls", []))
    baseline = tuning.accuracies(Recipe(), cache) if answered else [math.nan]
    return (lambda recipe: tuning.accuracies(recipe, cache)), baseline


def main() -> None:
    """``python -m grading.exercises``: judge one notebook's answers (JSON on stdin:
    ``{"answers", "cache", "memory_gb"}``), one JSON line per exercise on stdout."""
    request = json.loads(sys.stdin.read())
    limit = int(float(request["memory_gb"]) * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import torch

    torch.set_num_threads(1)  # as exercise 7's training (grading.tuning)
    answers = request["answers"] if isinstance(request["answers"], dict) else {}
    for exercise in sorted(EXERCISES, key=lambda e: e.key == "ex7"):  # the slow one last
        recorded = answers.get(exercise.key)
        if exercise.key == "ex7":
            passed, message = judge(exercise, recorded, _tuning_extras(recorded, Path(request["cache"])))
        else:
            with time_limit(CHECK_SECONDS):
                passed, message = judge(exercise, recorded)
        print(json.dumps({"key": exercise.key, "passed": passed, "message": message}), flush=True)


if __name__ == "__main__":
    main()
