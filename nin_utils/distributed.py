"""Data-parallel training on several processes: torchrun starts them, this module joins them up.

``torchrun --nproc_per_node=N -m nin_utils.train`` starts N copies of the same program, one
per GPU (or per share of the CPU cores), and tells each who it is through environment
variables: ``RANK`` (0 to N-1), ``WORLD_SIZE`` (N), ``LOCAL_RANK`` (its number on this
machine), ``MASTER_ADDR`` and ``MASTER_PORT`` (where they meet). ``setup`` reads them and
joins the process group: NCCL between GPUs, Gloo between CPUs. Then ``fit`` needs three
things from here (besides checks, seeds per process and sums over the processes for its
statistics), and nothing else in the loop changes:

* the batches: ``data.batches("train", batch_size x world_size, ..., shard=(rank, world))``.
  Every process shuffles the training set with the epoch's seed (so all agree on the order),
  cuts it into global batches and trains on its own equal part of each;
* ``wrap``: ``DistributedDataParallel`` around the model, which averages the gradients of all
  processes during ``backward`` (an all-reduce), so every process takes the same step and the
  copies of the model stay identical;
* ``is_main``, ``from_main``, ``barrier``: rank 0 evaluates, draws the progress bar and writes
  the checkpoint while the others wait.

``Recipe.batch_size`` is per process: N processes with batch B take the steps that one
process with batch N x B would (same batches, same number of steps, same learning rate).
Without torchrun (a notebook, plain ``python``) ``world_size()`` is 1 and every helper here
does nothing: a single process trains exactly as it always did.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .config import get_device

DEFAULT_TIMEOUT_S = 1800.0  # how long a process waits for the others: to meet, and at every collective
T = TypeVar("T")


class DistributedError(RuntimeError):
    """The processes of a distributed run could not be started or could not meet."""


# ----------------------------------------------------------------------------- who am I

def world_size() -> int:
    """How many processes train together: 1 unless a process group is set up."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's number, 0 to ``world_size() - 1``."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """True in the process that evaluates, prints and writes checkpoints (rank 0)."""
    return rank() == 0


def backend_for(device: torch.device) -> str:
    """NCCL between GPUs, Gloo between CPUs."""
    return "nccl" if device.type == "cuda" else "gloo"


# ----------------------------------------------------------------------------- joining up

def setup(timeout_s: float = DEFAULT_TIMEOUT_S) -> torch.device:
    """Join the process group torchrun's environment variables describe; return this process's device.

    Without those variables (or with ``WORLD_SIZE=1``) there is nothing to join and this
    returns ``get_device()``. On a GPU machine process ``LOCAL_RANK`` uses GPU ``LOCAL_RANK``.
    Raises ``DistributedError`` (one sentence) when the variables are incomplete or the
    processes do not meet within ``timeout_s`` seconds. Calling it again is harmless.
    """
    if world_size() > 1:
        return _device()
    launch = _launch_env()
    if launch is None or launch[1] == 1:
        return get_device()
    rank_, world, local_rank = launch
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing:
        raise DistributedError(
            f"This process was started as rank {rank_} of {world} (RANK and WORLD_SIZE are set) but "
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not: launch it with torchrun "
            f"(e.g. torchrun --standalone --nproc_per_node={world} -m nin_utils.train), or unset RANK "
            f"and WORLD_SIZE to train in one process.")
    device = _device(local_rank)
    where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    try:
        # torch logs each failed try on stderr (its C++ layer too): kept there, it shows why.
        dist.init_process_group(backend_for(device), init_method="env://", rank=rank_, world_size=world,
                                timeout=timedelta(seconds=timeout_s))
    except (RuntimeError, ValueError) as error:  # DistNetworkError, DistStoreError, ...
        raise DistributedError(
            f"Process {rank_} of {world} could not meet the others at {where} within {timeout_s:g} s "
            f"({type(error).__name__}: {_first_line(error)}): check that every process was started, "
            f"that MASTER_ADDR/MASTER_PORT (torchrun's --rdzv-endpoint) name the first machine and "
            f"that its port is reachable.") from error
    return device


def check_joined() -> None:
    """Raise ``DistributedError`` if torchrun started this process but it has not joined the others
    (``setup``): each process would then train alone on all the data, and all would write one file."""
    launch = _launch_env()
    if launch is not None and launch[1] > 1 and world_size() == 1:
        raise DistributedError(f"This process was started as rank {launch[0]} of {launch[1]} but has not "
                               f"joined the others: call nin_utils.distributed.setup() before training.")


def cleanup() -> None:
    """Leave the process group, if any (every process must call it)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def process_group(timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[torch.device]:
    """``with process_group() as device:`` joins torchrun's process group for the block and leaves
    it afterwards; a group that was already set up is used and left alone."""
    joined_here = world_size() == 1
    device = setup(timeout_s)
    try:
        yield device
    finally:
        if joined_here:
            cleanup()


def _launch_env() -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` from the environment, or None when none is set."""
    values = {name: os.environ.get(name) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    if not any(values.values()):
        return None
    if not values["RANK"] or not values["WORLD_SIZE"]:
        given = ", ".join(f"{k}={v}" for k, v in values.items() if v)
        raise DistributedError(f"Only {given} is set: a distributed launch sets RANK, WORLD_SIZE and "
                               f"LOCAL_RANK (torchrun does), and a single process sets none of them.")
    try:
        rank_, world = int(values["RANK"]), int(values["WORLD_SIZE"])
        local_rank = int(values["LOCAL_RANK"] or rank_)
    except ValueError:
        raise DistributedError(f"RANK={values['RANK']}, WORLD_SIZE={values['WORLD_SIZE']} and "
                               f"LOCAL_RANK={values['LOCAL_RANK']} must be whole numbers.") from None
    if not 0 <= rank_ < world:
        raise DistributedError(f"RANK={rank_} is out of range for WORLD_SIZE={world}: ranks run "
                               f"from 0 to {world - 1}.")
    return rank_, world, local_rank


def _device(local_rank: int | None = None) -> torch.device:
    """GPU ``LOCAL_RANK`` on a GPU machine (made the current one), else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    if local_rank is None:
        return torch.device("cuda", torch.cuda.current_device())
    if local_rank >= torch.cuda.device_count():
        raise DistributedError(f"Process {local_rank} on this machine has no GPU of its own: the machine "
                               f"has {torch.cuda.device_count()}, so start at most that many processes "
                               f"per machine (--nproc_per_node={torch.cuda.device_count()}).")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0]


# ----------------------------------------------------------------------------- what fit uses

def wrap(model: nn.Module) -> nn.Module:
    """``DistributedDataParallel(model)`` in a distributed run (gradients averaged over the
    processes during ``backward``), the model itself in a single process."""
    if world_size() == 1:
        return model
    device = next(model.parameters()).device
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def process_seed(shuffle_seed: int) -> int:
    """The random seed of this process for the epoch whose batch order ``shuffle_seed`` fixes:
    each process draws its own dropout masks, and a resumed run draws the same ones as an
    uninterrupted run."""
    return shuffle_seed * 1_009 + rank()


def sum_over_processes(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of ``tensor`` over all processes, in every process (an all-reduce)."""
    if world_size() > 1:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
    return tensor


def from_main(value: T) -> T:
    """``value`` as rank 0 has it, in every process; the others wait here until rank 0 arrives."""
    if world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait until every process has arrived here (nothing to wait for alone)."""
    if world_size() > 1:
        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Run the block in rank 0 first, then in the others: e.g. one process downloads or unpacks
    the data set while the others wait, and then they read the files it wrote."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()
