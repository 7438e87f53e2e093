"""Checkers for chapter 6's exercises: sharding the batches, a ring all-reduce, and gradient
accumulation with ``no_sync``. Each prints ✅ or ❌ with a hint and returns True/False.

Like ``nin_utils.exercises`` (whose ``_checker`` wrapper they share): every ``check_*`` takes the
student's function as an argument and reads nothing else from the notebook, never raises on a
wrong or unfinished answer, and holds no answer key. Each checks the properties that define a
right answer (every image once per epoch, the same global batches as one process, equal parts;
the sum everywhere, built from what neighbours sent; the step of the whole batch, whatever the
gradients held before) on cases of its own.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .exercises import _checker, _expect, _Wrong

# ----------------------------------------------------------------------------- exercise 1

SHARD_CASES = [(24, 4, 3), (20, 3, 2), (10, 5, 1), (16, 8, 4)]  # (images, batch per process, processes)


@_checker
def check_shard(shard: Callable[[torch.Tensor, int, int, int], Sequence[torch.Tensor]]) -> str:
    """Exercise 1: ``shard(order, batch_size, rank, world_size)`` lists the index tensors process
    ``rank`` trains on, step by step: together the processes take the steps of one process with
    batch ``batch_size * world_size``, each an equal part of every step. Dealing like cards (as
    ``DistributedSampler``) and cutting each global batch into contiguous parts (as ``nin_utils``)
    both do; the message says which one ``shard`` does."""
    dealt = contiguous = True
    for images, batch, world in SHARD_CASES:
        order = torch.randperm(images, generator=torch.Generator().manual_seed(images + world))
        where = f"{images} images, batch {batch} per process, {world} processes"
        parts = []
        for rank in range(world):
            steps = shard(order.clone(), batch, rank, world)
            _expect(isinstance(steps, (list, tuple)) and all(isinstance(s, torch.Tensor) for s in steps),
                    f"shard(...) should return a list of index tensors, one per step; got {type(steps).__name__}.")
            parts.append([s.flatten().long() for s in steps])
        counts = [len(steps) for steps in parts]
        _expect(len(set(counts)) == 1, f"{where}: the processes take {counts} steps. Every process must "
                f"take the same number: each step ends in an all-reduce that waits for all of them.")
        global_batch = batch * world
        expected_steps = -(-images // global_batch)
        _expect(counts[0] == expected_steps, f"{where}: {counts[0]} steps; one process with batch "
                f"{global_batch} takes {expected_steps}: cut the order into global batches of "
                f"batch_size x world_size.")
        for step in range(counts[0]):
            sizes = [len(p[step]) for p in parts]
            _expect(len(set(sizes)) == 1, f"{where}: at step {step + 1} the processes have {sizes} images. "
                    f"Give each an equal part of the global batch (the last one is smaller than the others: "
                    f"split it evenly too), or the average of their gradients weighs images unequally.")
            together = torch.cat([p[step] for p in parts])
            wanted = order[step * global_batch:(step + 1) * global_batch]
            _expect(torch.equal(together.sort().values, wanted.sort().values),
                    f"{where}: at step {step + 1} the processes together do not have the images one process "
                    f"with batch {global_batch} would (order[{step * global_batch}:{(step + 1) * global_batch}]): "
                    f"an image is missing, repeated, or from another step.")
        for rank, steps in enumerate(parts):
            dealt &= torch.equal(torch.cat(steps), order[rank::world])
            contiguous &= all(torch.equal(s, order[i * global_batch:(i + 1) * global_batch].tensor_split(world)[rank])
                              for i, s in enumerate(steps))
    how = ("dealt like cards, as DistributedSampler does" if dealt else
           "each global batch cut into contiguous parts, as nin_utils does" if contiguous else
           "each global batch split into equal parts")
    return (f"right in all {len(SHARD_CASES)} cases ({how}): every image once per epoch, equal parts, and "
            f"the same steps as one process with batch_size x world_size.")


# ----------------------------------------------------------------------------- exercise 2

RING_CASES = [(4, 8), (3, 12), (2, 6), (5, 20)]  # (processes, gradient length)


class _Network:
    """Carries tensors between neighbours on a ring and counts what each process sends.

    Given the gradients, it checks that every message is what a ring carries: a partial sum (of
    chunks, or of whole gradients) over the sender and the processes before it. Given an ``offset``,
    it delivers every message that much off, to see whether the results are built from messages.
    """

    def __init__(self, world: int, grads: list[torch.Tensor] | None = None, offset: float = 0.0) -> None:
        self.world, self.sent, self.offset = world, [0] * world, offset
        parts = None if grads is None else [[g, *g.chunk(world)] for g in grads]  # whole, then chunks
        # self.sums[p]: what a message from p may carry, a part summed over p and the k processes before it
        self.sums = None if parts is None else [
            [sum(parts[(p - j) % world][c] for j in range(k + 1)) for c in range(world + 1) for k in range(world)]
            for p in range(world)]

    def send(self, src: int, dst: int, tensor: torch.Tensor) -> torch.Tensor:
        if not (isinstance(src, int) and isinstance(dst, int) and 0 <= src < self.world):
            raise _Wrong(f"send(src, dst, tensor) takes process numbers 0 to {self.world - 1}; got {src!r}, {dst!r}.")
        if dst != (src + 1) % self.world:
            raise _Wrong(f"Process {src} sent to process {dst}; on a ring each process sends only to the "
                         f"next one, (src + 1) % world_size = {(src + 1) % self.world}.")
        self.sent[src] += tensor.numel()
        if self.sums is not None and not any(
                tensor.shape == s.shape and torch.allclose(tensor.detach().float(), s) for s in self.sums[src]):
            raise _Wrong(f"Process {src} sent {tensor.detach().flatten()[:4].tolist()}..., which is not a sum of "
                         f"chunks of its own gradient and those of the processes before it: on a ring every "
                         f"message carries such a partial sum, built from what the sender received.")
        return tensor.detach().clone() + self.offset  # what arrives is a copy, like a message


@_checker
def check_ring_all_reduce(ring_all_reduce: Callable[[list[torch.Tensor], Callable], list[torch.Tensor]]) -> str:
    """Exercise 2: ``ring_all_reduce(grads, send)`` gives every process the sum of all ``grads``,
    moving data only with ``send(src, dst, tensor)`` to the next process on the ring: every message a
    partial sum, each process sending 2 (N - 1) / N times the length of its gradient, and every
    result built from what arrived (with messages delivered off, no result may still be right)."""
    for world, length in RING_CASES:
        generator = torch.Generator().manual_seed(world * 100 + length)
        grads = [torch.randint(-9, 10, (length,), generator=generator).float() for _ in range(world)]
        total = torch.stack(grads).sum(0)
        network = _Network(world, grads)
        result = ring_all_reduce([g.clone() for g in grads], network.send)
        where = f"{world} processes, gradients of {length}"
        _expect(isinstance(result, (list, tuple)) and len(result) == world,
                f"{where}: return a list with one tensor per process ({world}); got {result!r:.80}.")
        wrong = [p for p, r in enumerate(result) if not (isinstance(r, torch.Tensor) and r.shape == total.shape
                                                         and torch.allclose(r, total))]
        _expect(not wrong, f"{where}: processes {wrong} do not end with the sum of all gradients. After "
                f"N - 1 steps of reduce-scatter each process holds one whole summed chunk; N - 1 steps of "
                f"all-gather then pass the summed chunks round the ring.")
        ring = 2 * (world - 1) * length // world
        _expect(any(network.sent), f"{where}: nothing was sent, so the processes did not exchange their "
                f"gradients: move data between processes only with send(src, dst, tensor).")
        _expect(all(s == ring for s in network.sent), f"{where}: the processes sent {network.sent} numbers; "
                f"a ring all-reduce sends 2 (N - 1) / N x {length} = {ring} from each. Send one chunk "
                f"(length / N) per step, 2 (N - 1) steps in all.")
        altered = ring_all_reduce([g.clone() for g in grads], _Network(world, offset=0.5).send)
        unchanged = [p for p, r in enumerate(altered) if isinstance(r, torch.Tensor) and torch.allclose(r, total)]
        _expect(not unchanged, f"{where}: with every message delivered 0.5 off, processes {unchanged} still end "
                f"with the exact sum: they did not build it from what they received. Each process may only "
                f"use its own gradient and the chunks sent to it.")
    return (f"right in all {len(RING_CASES)} cases: every process ends with the sum, and each sent "
            f"2 (N - 1) / N of its gradient, however many processes there are.")


# ----------------------------------------------------------------------------- exercise 3

class _PretendDDP(nn.Module):
    """Stands in for ``DistributedDataParallel`` in one process: records, for each forward pass,
    whether its backward would all-reduce (outside ``no_sync``) or not."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.require_backward_grad_sync = True
        self.synced: list[bool] = []

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        previous, self.require_backward_grad_sync = self.require_backward_grad_sync, False
        try:
            yield
        finally:
            self.require_backward_grad_sync = previous

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.synced.append(self.require_backward_grad_sync)  # DDP decides at forward time
        return self.module(x)


@_checker
def check_accumulate(accumulate: Callable[[nn.Module, list, torch.optim.Optimizer], object]) -> str:
    """Exercise 3: ``accumulate(model, micro_batches, optimizer)`` takes one optimizer step from
    several micro-batches, equal to one step on all of them at once, with all but the last
    micro-batch's forward and backward inside ``model.no_sync()``. The gradients start as an
    earlier step left them, so a loop that does not zero them fails."""
    for count in (4, 2, 1):
        torch.manual_seed(count)
        reference = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
        student, start = _PretendDDP(copy.deepcopy(reference)), _flat(reference)
        x, y = torch.randn(4 * count, 6), torch.randint(0, 3, (4 * count,))
        micro_batches = list(zip(x.split(4), y.split(4)))

        optimizer = torch.optim.SGD(reference.parameters(), lr=0.5)
        F.cross_entropy(reference(x), y).backward()
        optimizer.step()

        for parameter in student.parameters():  # left over from an earlier step
            parameter.grad = torch.full_like(parameter, 0.5)
        optimizer = torch.optim.SGD(student.parameters(), lr=0.5)
        steps = []
        optimizer.register_step_post_hook(lambda *args: steps.append(1))
        accumulate(student, micro_batches, optimizer)
        where = f"{count} micro-batch{'es' if count > 1 else ''}"
        _expect(len(steps) == 1, f"{where}: optimizer.step() ran {len(steps)} times; accumulate the "
                f"gradients of all micro-batches, then step once.")
        _expect(len(student.synced) == count, f"{where}: the model ran {len(student.synced)} forward "
                f"passes; run it once per micro-batch.")
        _expect(student.synced[-1], f"{where}: the last micro-batch ran inside no_sync, so the gradients "
                f"would never be averaged over the processes: run only the others inside it.")
        early = [i + 1 for i, synced in enumerate(student.synced[:-1]) if synced]
        _expect(not early, f"{where}: micro-batches {early} ran outside no_sync, so each of their backward "
                f"passes would all-reduce. Put the forward and backward of every micro-batch but the last "
                f"inside `with model.no_sync():` (DDP decides at the forward pass).")
        got, wanted = _flat(student.module) - start, _flat(reference) - start  # the two steps
        if not torch.allclose(got, wanted, atol=1e-6):
            ratio = (got @ wanted / wanted.square().sum()).item()
            hint = (f"Your step is {ratio:.2f} times the right one: divide each micro-batch's loss by the "
                    f"number of micro-batches, so the gradients add up to the gradient of the mean loss."
                    if count > 1 and abs(ratio - count) < 0.01 * count else
                    "Zero the gradients once, before the first micro-batch (backward adds to them), and "
                    "average the loss over the micro-batches.")
            raise _Wrong(f"{where}: your step differs from one step on the whole batch. {hint}")
    return ("one step from several micro-batches equals one step on the whole batch, and only the last "
            "micro-batch's backward pass would all-reduce.")


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])
