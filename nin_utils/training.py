"""Training and evaluation: the recipe, one training step, and the loop around it.

``Recipe`` holds every choice about *how* to train, with one default each;
``fit(model, data, recipe, budget)`` adds the budget (``config.Budget``: epochs,
resolution) and reads top to bottom: ``train_epoch`` (one ``train_step`` per batch),
``end_epoch`` (statistics over all processes, evaluation on rank 0), the checkpoint,
and ``Callback`` hooks for everything else (the plateau warning, live plots).
``train_step`` is the only place a gradient step happens: ``fit`` and the benchmarks
use it, and chapter 4 shows it.

The course recipe (``Recipe()``) differs from d2l's (``Recipe.d2l()``) because
d2l's stalls at loss ln 10 on a small budget (chapter 4 shows it):

* AdamW with a one-cycle schedule (warm up, then anneal), weight decay, and
  gradient-norm clipping (early steps on fresh weights can be large);
* bf16 autocast where the hardware has it (CUDA; CPUs with AVX-512 BF16 or
  AMX), fp16 with loss scaling on older GPUs, and channels-last tensors.

The network side of the fix (input normalisation, Kaiming init, no ReLU before
GAP, a zero-initialised logit layer) lives in ``nin_utils.models``: preprocessing
belongs to the network, so evaluating one needs no recipe.
"""

from __future__ import annotations

import os
import time
import warnings
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import distributed
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import Budget, cpu_has_native_bf16, seed_everything
from .counting import output_side
from .data import CHANCE_LOSS, FashionMNISTData
from .errors import UserError

LOG_EVERY = 20  # steps per point of the within-epoch loss curve (one host sync each)
PLATEAU_STEPS = 100  # a loss at ln 10 for this many steps warns


@dataclass(frozen=True)
class Recipe:
    """How to train, apart from the budget: ``Recipe()`` is the course's, ``Recipe.d2l()`` d2l's.

    Change a field with ``dataclasses.replace(Recipe(), lr=1e-3)``. Invalid values
    raise ``UserError`` (a ``ValueError``) when the recipe is made.
    """

    batch_size: int = 128
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 4e-3  # the peak learning rate under "onecycle" (measured best for mnist_nin())
    momentum: float = 0.9  # SGD only, and replaced by the cycle under onecycle with cycle_momentum
    weight_decay: float = 1e-4
    schedule: Literal["onecycle", "constant"] = "onecycle"
    warmup: float = 0.3  # onecycle: fraction of the steps spent rising to lr
    # onecycle: move SGD's momentum (AdamW's beta1) against the learning rate, 0.95 -> 0.85 -> 0.95
    # (OneCycleLR's default); False keeps momentum (beta1 0.9) fixed.
    cycle_momentum: bool = True
    grad_clip: float | None = 2.0  # max gradient norm; None: no clipping
    label_smoothing: float = 0.1  # targets 0.91 / 0.01 instead of 1 / 0: a better network on a short budget
    hflip: bool = False  # mirror each training image left-right with probability 1/2 (augmentation)
    autocast: bool = True  # reduced precision where the device computes it fast
    channels_last: bool = True

    def __post_init__(self) -> None:
        checks = {
            "batch_size": isinstance(self.batch_size, int) and self.batch_size >= 1,
            "optimizer": self.optimizer in ("adamw", "sgd"),
            "lr": self.lr > 0,
            "momentum": 0 <= self.momentum < 1,
            "weight_decay": self.weight_decay >= 0,
            "schedule": self.schedule in ("onecycle", "constant"),
            "warmup": 0 < self.warmup < 1,
            "grad_clip": self.grad_clip is None or self.grad_clip > 0,
            "label_smoothing": 0 <= self.label_smoothing < 1,
        }
        allowed = {"batch_size": "a positive integer", "optimizer": "'adamw' or 'sgd'",
                   "lr": "a positive number", "momentum": "in [0, 1)", "weight_decay": ">= 0",
                   "schedule": "'onecycle' or 'constant'", "warmup": "in (0, 1)",
                   "grad_clip": "positive or None", "label_smoothing": "in [0, 1)"}
        for name, ok in checks.items():
            if not ok:
                raise UserError(f"Recipe {name}={getattr(self, name)!r} is invalid: it must be "
                                 f"{allowed[name]}.")

    @classmethod
    def d2l(cls) -> Recipe:
        """d2l's NiN recipe: SGD at a constant 0.1, no momentum, decay, clipping or label
        smoothing, float32, batch 128 (d2l's pixels in [0, 1] are ``d2l_nin()``'s)."""
        return cls(optimizer="sgd", lr=0.1, momentum=0.0, weight_decay=0.0, schedule="constant",
                   grad_clip=None, label_smoothing=0.0, autocast=False,
                   channels_last=False)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Recipe:
        """The recipe stored in a checkpoint (``dataclasses.asdict``); unknown keys are an error."""
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise UserError(f"Unknown recipe fields {sorted(unknown)}.")
        return cls(**values)


@dataclass
class EpochStats:
    """What ``fit`` records after each epoch (its history is a list of these)."""

    epoch: int  # 1-based
    train_loss: float
    train_acc: float  # on the training batches as seen, dropout on
    test_acc: float
    examples_per_s: float  # training throughput, evaluation excluded
    seconds: float  # the whole epoch, evaluation included
    step_losses: list[float]  # mean training loss of every LOG_EVERY steps, for curves within an epoch


class PlateauWarning(UserWarning):
    """The loss has sat at ln 10: the network is guessing uniformly."""


MIN_GAP_SIDE = 5  # below 5 x 5, global average pooling has (almost) nothing to average


class SmallMapWarning(UserWarning):
    """The GAP head would average a map smaller than ``MIN_GAP_SIDE`` x ``MIN_GAP_SIDE``."""


@dataclass
class Optimization:
    """What a training step updates besides the weights."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler  # loss scaling, active only for float16

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's, scheduler's and scaler's states, for a checkpoint."""
        return {name: getattr(self, name).state_dict() for name in ("optimizer", "scheduler", "scaler")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` saved."""
        for name in ("optimizer", "scheduler", "scaler"):
            getattr(self, name).load_state_dict(state[name])


def make_optimization(model: nn.Module, recipe: Recipe, total_steps: int) -> Optimization:
    """The optimizer, schedule and loss scaler ``recipe`` asks for, for ``total_steps`` steps.

    Also puts the model in channels-last memory format when the recipe says so.
    """
    device = next(model.parameters()).device
    model.to(memory_format=torch.channels_last if recipe.channels_last else torch.contiguous_format)
    if recipe.optimizer == "adamw":
        # The fused kernel (CPU and CUDA) is ~6x faster than foreach for a 20M-parameter FC head.
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(
            model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay,
            fused=device.type in ("cpu", "cuda"))
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                    weight_decay=recipe.weight_decay)
    if recipe.schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=total_steps,
                                                        pct_start=recipe.warmup,
                                                        cycle_momentum=recipe.cycle_momentum)
    else:
        scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype(device, recipe.autocast) == torch.float16)
    return Optimization(optimizer, scheduler, scaler)


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: Recipe,
               optim: Optimization) -> tuple[torch.Tensor, torch.Tensor]:
    """One update on a batch: forward and loss, backward, clip, optimizer and schedule step.

    ``x`` is ``(B, C, H, W)`` model input, ``y`` the ``(B,)`` labels. Returns the
    loss and the ``(B, classes)`` logits, detached and on the device (no host sync).
    """
    if recipe.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast_context(x.device, recipe.autocast):
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing)
    optim.optimizer.zero_grad(set_to_none=True)
    optim.scaler.scale(loss).backward()  # scaled only under float16, so small gradients survive
    if recipe.grad_clip is not None:
        optim.scaler.unscale_(optim.optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
    optim.scaler.step(optim.optimizer)
    optim.scaler.update()
    optim.scheduler.step()
    return loss.detach(), logits.detach()


class Callback:
    """Hooks ``fit`` calls; subclass and override what you need (``LivePlot`` draws curves).

    Every process of a distributed run calls them.
    """

    def on_log(self, loss: float) -> None:
        """Every ``LOG_EVERY`` steps: the mean training loss of those steps (this process's)."""

    def on_epoch_end(self, history: list[EpochStats]) -> None:
        """After each epoch, its checkpoint written: every epoch so far."""


class PlateauWatch(Callback):
    """Warns once with ``PlateauWarning`` when the loss sits at ln 10 for ``PLATEAU_STEPS`` steps.

    ``fit`` always adds one.
    """

    def __init__(self) -> None:
        self.recent: deque[float] = deque(maxlen=PLATEAU_STEPS // LOG_EVERY)
        self.warned = False

    def on_log(self, loss: float) -> None:
        self.recent.append(loss)
        full = len(self.recent) == self.recent.maxlen
        if self.warned or not full or abs(sum(self.recent) / len(self.recent) - CHANCE_LOSS) >= 0.02:
            return
        self.warned = True
        if distributed.is_main():
            warnings.warn(
                f"The loss has stayed at ln 10 = {CHANCE_LOSS:.3f} for {PLATEAU_STEPS} steps: the "
                "network predicts every class with probability 1/10 and is not learning. Usual "
                "causes: Xavier init in a deep ReLU network (NiN's default init='kaiming' avoids it), "
                "a learning rate too high or too low, a ReLU before global average pooling that "
                "zeroes whole class channels (final_relu=False), or unnormalised input (NiN's "
                "default input_norm normalises).", PlateauWarning, stacklevel=2)


@dataclass
class EpochSums:
    """What one process saw in one epoch, summed on the device (no host sync per step)."""

    loss: torch.Tensor  # sum over examples
    correct: torch.Tensor
    step_losses: list[float]
    seconds: float


def fit(model: nn.Module, data: FashionMNISTData, recipe: Recipe | None, budget: Budget, *,
        seed: int = 0, checkpoint: str | os.PathLike | None = None, resume: bool = False,
        callbacks: Sequence[Callback] = (), progress: bool = True) -> list[EpochStats]:
    """Train ``model`` on ``data`` with ``recipe`` (None: ``Recipe()``) for ``budget.epochs`` epochs
    at ``budget.resolution`` px; returns one ``EpochStats`` per epoch.

    ``seed`` fixes the initial random state and the batch order. With ``checkpoint``
    set, everything a resumed run needs (model and its ``model_args``, optimizer,
    schedule, random state, recipe, budget, history) is written there after every
    epoch; ``resume=True`` continues from that file, so an interrupted run loses at
    most the epoch in progress and ends with the same weights as an uninterrupted one.
    ``callbacks`` (``Callback``) see the loss as it goes and the history after each
    epoch; a ``PlateauWatch`` is always added.

    Under torchrun (``nin_utils.distributed.setup``) every process trains on its own
    part of each global batch of ``recipe.batch_size x world_size`` images,
    ``DistributedDataParallel`` averages the gradients, and rank 0 alone evaluates,
    shows the progress bar and writes the checkpoint. N processes with batch B take
    exactly the steps one process with batch N x B takes (the learning rate is not
    rescaled), and every process returns the same history.
    """
    recipe = recipe or Recipe()
    _check_run(model, data, recipe, budget)
    _warn_small_map(model, budget.resolution)
    world = distributed.world_size()
    steps = data.num_batches("train", recipe.batch_size * world)  # global batches per epoch
    optim = make_optimization(model, recipe, budget.epochs * steps)
    run = {"budget": asdict(budget), "seed": seed, "train_size": len(data.train_labels)}
    history: list[EpochStats] = []
    if checkpoint is not None and resume and distributed.from_main(Path(checkpoint).exists()):
        history = _resume(checkpoint, recipe, run, model, optim)
    else:
        seed_everything(seed)
    callbacks = [PlateauWatch(), *callbacks]
    net = distributed.wrap(model)  # DistributedDataParallel under torchrun, else the model itself
    for epoch in range(len(history) + 1, budget.epochs + 1):
        bar = tqdm(total=steps, desc=f"epoch {epoch}/{budget.epochs}",
                   disable=not (progress and distributed.is_main()))
        sums = train_epoch(net, data, recipe, optim, budget.resolution, _shuffle_seed(seed, epoch),
                           bar, callbacks)
        history.append(end_epoch(model, data, budget.resolution, epoch, sums, recipe.autocast))
        bar.set_postfix(loss=f"{history[-1].train_loss:.3f}", test_acc=f"{history[-1].test_acc:.3f}")
        bar.close()
        if checkpoint is not None and distributed.is_main():
            save_checkpoint(checkpoint, _training_state(recipe, run, model, optim, history))
        distributed.barrier()  # the others wait for the checkpoint
        for callback in callbacks:
            callback.on_epoch_end(history)
    return history


def train_epoch(net: nn.Module, data: FashionMNISTData, recipe: Recipe, optim: Optimization,
                resolution: int, shuffle_seed: int, bar: tqdm, callbacks: Sequence[Callback]
                ) -> EpochSums:
    """One pass over this process's share of the training set, one ``train_step`` per batch."""
    world, rank = distributed.world_size(), distributed.rank()
    if world > 1:
        torch.manual_seed(distributed.process_seed(shuffle_seed))  # its own dropout masks
    net.train()
    device = data.device
    loss_sum, correct = torch.zeros((), device=device), torch.zeros((), device=device, dtype=torch.long)
    recent: list[torch.Tensor] = []
    step_losses: list[float] = []
    start = time.perf_counter()
    batches = data.batches("train", recipe.batch_size * world, resolution, shuffle_seed=shuffle_seed,
                           shard=(rank, world))
    for step, (x, y) in enumerate(batches, start=1):
        if recipe.hflip:
            x = torch.where(torch.rand(len(x), 1, 1, 1, device=device) < 0.5, x.flip(-1), x)
        loss, logits = train_step(net, x, y, recipe, optim)
        loss_sum += loss * len(y)
        correct += (logits.argmax(1) == y).sum()
        recent.append(loss)
        bar.update()
        if step % LOG_EVERY == 0:
            step_losses.append(torch.stack(recent).mean().item())
            recent.clear()
            bar.set_postfix(loss=f"{step_losses[-1]:.3f}")
            for callback in callbacks:
                callback.on_log(step_losses[-1])
    return EpochSums(loss_sum, correct, step_losses, time.perf_counter() - start)


def end_epoch(model: nn.Module, data: FashionMNISTData, resolution: int, epoch: int,
              sums: EpochSums, autocast: bool) -> EpochStats:
    """The epoch's statistics over all processes: sums added up, the test set evaluated on rank 0
    (in the training's precision: ``autocast`` as the recipe's), the result broadcast (the other
    processes wait meanwhile)."""
    world = distributed.world_size()
    seen = len(data.train_labels)  # by all processes together
    loss_sum, correct = distributed.sum_over_processes(sums.loss), distributed.sum_over_processes(sums.correct)
    step_losses = sums.step_losses
    if world > 1 and step_losses:  # the mean over the processes of each point of the loss curve
        step_losses = (distributed.sum_over_processes(torch.tensor(step_losses, device=data.device))
                       / world).tolist()
    stats = None
    if distributed.is_main():
        start = time.perf_counter()
        test_acc = evaluate(model, data, resolution=resolution, autocast=autocast)
        stats = EpochStats(epoch, loss_sum.item() / seen, correct.item() / seen, test_acc,
                           seen / sums.seconds, sums.seconds + time.perf_counter() - start, step_losses)
    return distributed.from_main(stats)


def _check_run(model: nn.Module, data: FashionMNISTData, recipe: Recipe, budget: Budget) -> None:
    """Raise ``UserError`` (one sentence, with the fix) for a run that cannot start."""
    device = next(model.parameters()).device
    if device != data.device:
        raise UserError(f"The model is on {device} but the data is on {data.device}: "
                        f"move one, e.g. model.to({str(data.device)!r}).")
    smallest = getattr(model, "min_resolution", 1)
    if budget.resolution < smallest:
        raise UserError(f"resolution={budget.resolution} is below the smallest input this network "
                        f"accepts ({smallest} px).")
    distributed.check_joined()
    world = distributed.world_size()
    data.check_shards("train", recipe.batch_size * world, world)


def _warn_small_map(model: nn.Module, resolution: int) -> None:
    """``SmallMapWarning`` when a GAP head would average fewer than 5 x 5 positions."""
    if getattr(model, "head", None) != "gap" or not distributed.is_main():
        return
    side = output_side(model, resolution)
    if side < MIN_GAP_SIDE:
        warnings.warn(
            f"At {resolution} px this network's last map is {side} x {side}, so global average "
            f"pooling averages {side * side} position(s): what is learnt here says little about "
            f"GAP. Train at a larger input (d2l's NiN has 5 x 5 at 224 px) or use mnist_nin(), "
            f"whose map is 7 x 7 at Fashion-MNIST's own 28 px.", SmallMapWarning, stacklevel=3)


@torch.inference_mode()
def predictions(model: nn.Module, data: FashionMNISTData, *, resolution: int, split: str = "test",
                autocast: bool = True, batch_size: int = 500) -> torch.Tensor:
    """Predicted class of every image of a split, int64 ``(N,)``.

    Images are resized to ``resolution`` px; the model does its own preprocessing
    (``NiN``'s ``input_norm``). ``autocast`` computes in reduced precision where the
    device is fast at it. The model is in eval mode meanwhile.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    guesses = []
    with autocast_context(device, autocast):
        for x, _ in data.batches(split, batch_size, resolution):
            guesses.append(model(x).argmax(1))
    model.train(was_training)
    return torch.cat(guesses)


def evaluate(model: nn.Module, data: FashionMNISTData, *, resolution: int, split: str = "test",
             autocast: bool = True) -> float:
    """Accuracy of ``model`` on a split of ``data`` (see ``predictions``)."""
    guesses = predictions(model, data, resolution=resolution, split=split, autocast=autocast)
    return (guesses == data.split(split)[1]).sum().item() / len(guesses)


def autocast_context(device: torch.device, enabled: bool = True) -> torch.autocast:
    """Autocast to the reduced precision ``device`` is fast at (a no-op where float32 is used)."""
    dtype = autocast_dtype(device, enabled)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def autocast_dtype(device: torch.device, enabled: bool = True) -> torch.dtype | None:
    """The reduced precision ``device`` computes fast in, or ``None`` for plain float32
    (also when ``enabled`` is False, e.g. ``Recipe.autocast`` off)."""
    if not enabled:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def _shuffle_seed(seed: int, epoch: int) -> int:
    """A different batch order every epoch, and for every seed."""
    return seed * 100_003 + epoch  # a prime stride: (seed, epoch) pairs never collide


def _training_state(recipe: Recipe, run: dict[str, Any], model: nn.Module, optim: Optimization,
                    history: list[EpochStats]) -> dict[str, Any]:
    """Everything a resumed run needs, as tensors and plain data only (safe to load)."""
    return {
        "recipe": asdict(recipe), **run, "model_args": getattr(model, "model_args", None),
        "model": model.state_dict(), **optim.state_dict(),
        "history": [asdict(stats) for stats in history], "cpu_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "world_size": distributed.world_size(),  # recipe["batch_size"] is per process
    }


def _resume(path: str | os.PathLike, recipe: Recipe, run: dict[str, Any], model: nn.Module,
            optim: Optimization) -> list[EpochStats]:
    state = load_checkpoint(path, required=("recipe", "budget", "model", "optimizer", "history"))
    stored = {**state["recipe"], **state["budget"], "seed": state.get("seed"),
              "train_size": state.get("train_size")}
    wanted = {**asdict(recipe), **run["budget"], "seed": run["seed"], "train_size": run["train_size"]}
    stored_world, world = state.get("world_size", 1), distributed.world_size()
    if (stored_world, world) != (1, 1):  # the batch per process may change with the number of processes
        stored["global batch"] = stored.pop("batch_size") * stored_world
        wanted["global batch"] = wanted.pop("batch_size") * world
    changed = {k: (stored.get(k), v) for k, v in wanted.items() if stored.get(k) != v}
    if changed:
        details = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
        raise CheckpointError(f"Checkpoint {path} was written by a run with other settings "
                              f"({details}): resume with the same settings, or use another "
                              f"checkpoint path to start afresh.")
    model.load_state_dict(state["model"])
    optim.load_state_dict(state)
    torch.set_rng_state(state["cpu_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return [EpochStats(**stats) for stats in state["history"]]
