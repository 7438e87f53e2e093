"""``python -m nin_utils.train``: train ``mnist_nin()`` with the course recipe from a shell.

The package does not import this module, so running it prints nothing before
its own output. Every bad option or input (``UserError``), a missing data set and a
damaged checkpoint end in one sentence on stderr and exit status 2, with no traceback
unless ``NIN_DEBUG=1`` is set; any other error is a bug and shows its traceback.

Under torchrun it trains data-parallel, one process per GPU (or per share of the CPU
cores), and only rank 0 prints; ``--batch-size`` is then per process::

    torchrun --standalone --nproc_per_node=4 -m nin_utils.train --batch-size 32
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29400 \\
        -m nin_utils.train                       # the same command on each of two machines

A failed launch (a process that cannot reach the others, a training set that does not
split evenly among the processes) is one sentence from each process, exit status 2 (after
whatever torch logged about it).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

import torch

from . import distributed
from .checkpoint import CheckpointError
from .config import MODES, describe_device, get_mode, seed_everything
from .data import DataNotFoundError, load_fashion_mnist
from .distributed import DistributedError
from .errors import UserError
from .models import mnist_nin
from .training import EpochStats, Recipe, autocast_dtype, fit

PROG = "python -m nin_utils.train"
# What a user can fix: one sentence, exit status 2. Anything else is a bug: its traceback.
USER_ERRORS = (UserError, DataNotFoundError, CheckpointError, DistributedError)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, no usage dump: ``prog: error: <what is wrong>``."""
        _fail(message)


def _positive(kind: type) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number")
        if not value > 0:  # also refuses NaN
            raise argparse.ArgumentTypeError(f"{text} must be greater than 0")
        return value
    parse.__name__ = f"positive {kind.__name__}"
    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line's options (``argv``, else ``sys.argv``); a bad one exits 2 with one sentence."""
    default = Recipe()
    parser = _Parser(prog=PROG, description="Train NiN on Fashion-MNIST with the course recipe and "
                                            "save a checkpoint after every epoch.")
    parser.add_argument("--mode", choices=list(MODES), help="budget; default: $NIN_MODE, else by device")
    parser.add_argument("--epochs", type=_positive(int), help="default: the mode's")
    parser.add_argument("--resolution", type=_positive(int), help="input side in px; default: the mode's")
    parser.add_argument("--train-subset", type=_positive(int), help="training images; default: the mode's")
    parser.add_argument("--test-subset", type=_positive(int), help="test images; default: the mode's")
    parser.add_argument("--lr", type=_positive(float), default=default.lr, help="peak learning rate")
    parser.add_argument("--batch-size", type=_positive(int), default=default.batch_size,
                        help="per process under torchrun (the global batch is this x processes)")
    parser.add_argument("--weight-decay", type=float, default=default.weight_decay,
                        help="AdamW's decoupled weight decay (default: %(default)g)")
    parser.add_argument("--hflip", action="store_true",
                        help="augment: mirror each training image left-right with probability 1/2")
    parser.add_argument("--float32", action="store_true",
                        help="train in float32 even where the device computes bf16 fast (autocast off)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", type=Path, help="default: checkpoints/nin_<mode>.pt")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    parser.add_argument("--timeout", type=_positive(float), default=distributed.DEFAULT_TIMEOUT_S,
                        help="under torchrun: seconds a process waits for the others (default: %(default)g)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """The ``nin-train`` command and ``python -m nin_utils.train``: ``run(argv)``, exit status 0
    after training (a console script exits with what this returns)."""
    run(argv)


def run(argv: list[str] | None = None) -> list[EpochStats]:
    """Parse ``argv``, train, print the epoch table and return the history.

    A ``USER_ERRORS`` error exits 2 with one sentence (and its traceback too with
    ``NIN_DEBUG=1``); any other exception propagates with its traceback.
    """
    args = parse_args(argv)
    try:
        return _train(args)
    except USER_ERRORS as error:
        _fail(str(error), error)
    except KeyboardInterrupt as error:
        _fail("interrupted; rerun with --resume to continue from the last finished epoch.", error)


def _fail(message: str, error: BaseException | None = None) -> NoReturn:
    if error is not None and os.environ.get("NIN_DEBUG", "0") not in ("", "0"):
        traceback.print_exception(error)
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(2)


def _train(args: argparse.Namespace) -> list[EpochStats]:
    mode = get_mode(args.mode)
    budget = replace(mode.main, **{k: v for k, v in dict(
        epochs=args.epochs, resolution=args.resolution, train_subset=args.train_subset,
        test_subset=args.test_subset).items() if v is not None})
    recipe = Recipe(lr=args.lr, batch_size=args.batch_size, weight_decay=args.weight_decay, hflip=args.hflip,
                    autocast=not args.float32)
    checkpoint = args.checkpoint or Path(f"checkpoints/nin_{mode.name}.pt")
    with distributed.process_group(args.timeout) as device:  # alone: nothing to join, get_device()
        world, main = distributed.world_size(), distributed.is_main()
        seed_everything(args.seed)
        with distributed.main_first():  # one process places (or downloads) the files, then the others read
            data = load_fashion_mnist(device=device, train_subset=budget.train_subset,
                                      test_subset=budget.test_subset, seed=args.seed)
        where, batch = describe_device(device), f"batch {recipe.batch_size}"
        if world > 1:
            where = f"{world} processes ({distributed.backend_for(device)}, {device.type})"
            batch = f"batch {recipe.batch_size} per process ({recipe.batch_size * world} in all)"
        if main:
            precision = str(autocast_dtype(device, recipe.autocast) or torch.float32).removeprefix("torch.")
            print(f"{mode.name} mode on {where}: {budget.describe()}; {batch}, peak lr {recipe.lr:g}, "
                  f"{precision}")
        history = fit(mnist_nin().to(device), data, recipe, budget, seed=args.seed, checkpoint=checkpoint,
                      resume=args.resume)
    if not main:
        return history
    print(f"{'epoch':>5} {'train loss':>10} {'train acc':>9} {'test acc':>8} {'examples/s':>10} {'s':>6}")
    for s in history:
        print(f"{s.epoch:>5} {s.train_loss:>10.4f} {s.train_acc:>9.4f} {s.test_acc:>8.4f} "
              f"{s.examples_per_s:>10.0f} {s.seconds:>6.1f}")
    print(f"Final test accuracy {history[-1].test_acc:.4f} on {len(data.test_labels):,} test images "
          f"({mode.name} mode, {where}, {sum(s.seconds for s in history):.0f} s); checkpoint: {checkpoint}")
    return history


if __name__ == "__main__":
    main()
