"""Training and evaluation: the recipe, one training step, and the loop around it.

``Recipe`` holds every choice about *how* to train, with one default each;
``fit`` adds the budget (epochs, resolution, seed) and the plumbing: progress
bar, history, checkpoint and resume. ``train_step`` is the only place a
gradient step happens: ``fit`` and the benchmarks use it, and chapter 4 shows it.

The course recipe (``Recipe()``) differs from d2l's (``Recipe.d2l()``) because
d2l's stalls at loss ln 10 on a small budget (chapter 4 shows it):

* inputs normalised with the training set's mean and std;
* AdamW with a one-cycle schedule (warm up, then anneal), weight decay, and
  gradient-norm clipping (early steps on fresh weights can be large);
* bf16 autocast where the hardware has it (CUDA; CPUs with AVX-512 BF16 or
  AMX), fp16 with loss scaling on older GPUs, and channels-last tensors.

The network side of the fix (Kaiming init, no ReLU before GAP, a zero-initialised
logit layer) lives in ``nin_utils.models``.
"""

from __future__ import annotations

import functools
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import distributed
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import cpu_flags, seed_everything
from .data import CHANCE_LOSS, FashionMNISTData

LOG_EVERY = 20  # steps per point of the within-epoch loss curve (one host sync each)
PLATEAU_STEPS = 100  # a loss at ln 10 for this many steps warns


@dataclass(frozen=True)
class Recipe:
    """How to train, apart from the budget: ``Recipe()`` is the course's, ``Recipe.d2l()`` d2l's.

    Change a field with ``dataclasses.replace(Recipe(), lr=1e-3)``. Invalid values
    raise ``ValueError`` when the recipe is made.
    """

    batch_size: int = 128
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 2e-3  # the peak learning rate under "onecycle"
    momentum: float = 0.9  # SGD only
    weight_decay: float = 1e-4
    schedule: Literal["onecycle", "constant"] = "onecycle"
    warmup: float = 0.3  # onecycle: fraction of the steps spent rising to lr
    grad_clip: float | None = 2.0  # max gradient norm; None: no clipping
    label_smoothing: float = 0.1  # targets 0.91 / 0.01 instead of 1 / 0: a better network on a short budget
    normalize: bool = True  # inputs to zero mean, unit variance (training-set statistics)
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
                raise ValueError(f"Recipe {name}={getattr(self, name)!r} is invalid: it must be "
                                 f"{allowed[name]}.")

    @classmethod
    def d2l(cls) -> Recipe:
        """d2l's NiN recipe: SGD at a constant 0.1, no momentum, decay, clipping or label
        smoothing, pixels in [0, 1], float32, batch 128."""
        return cls(optimizer="sgd", lr=0.1, momentum=0.0, weight_decay=0.0, schedule="constant",
                   grad_clip=None, label_smoothing=0.0, normalize=False, autocast=False,
                   channels_last=False)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Recipe:
        """The recipe stored in a checkpoint (``dataclasses.asdict``); unknown keys are an error."""
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"Unknown recipe fields {sorted(unknown)}.")
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
                                                        pct_start=recipe.warmup)
    else:
        scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype(device, recipe) == torch.float16)
    return Optimization(optimizer, scheduler, scaler)


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: Recipe,
               optim: Optimization) -> tuple[torch.Tensor, torch.Tensor]:
    """One update on a batch: forward and loss, backward, clip, optimizer and schedule step.

    ``x`` is ``(B, C, H, W)`` model input, ``y`` the ``(B,)`` labels. Returns the
    loss and the ``(B, classes)`` logits, detached and on the device (no host sync).
    """
    if recipe.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(x.device, recipe):
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


def fit(model: nn.Module, data: FashionMNISTData, recipe: Recipe | None = None, *, epochs: int,
        resolution: int, seed: int = 0, checkpoint: str | os.PathLike | None = None,
        resume: bool = False, on_epoch_end: Callable[[list[EpochStats]], None] | None = None,
        progress: bool = True) -> list[EpochStats]:
    """Train ``model`` on ``data`` with ``recipe`` (default: ``Recipe()``); one ``EpochStats`` per epoch.

    Images are resized to ``resolution`` px on the device; ``seed`` fixes the
    initial random state and the batch order. With ``checkpoint`` set, the model,
    optimizer, schedule, random state, recipe and history are written there after
    every epoch; ``resume=True`` continues from that file, so an interrupted run
    loses at most the epoch in progress and ends with the same weights as an
    uninterrupted one. ``on_epoch_end(history)`` is called after each epoch (e.g.
    ``nin_utils.LivePlot`` draws live curves). Warns with ``PlateauWarning`` when
    the loss sits at ln 10 for 100 steps.

    Under torchrun (a process group set up by ``nin_utils.distributed.setup``) every
    process trains on its own part of each global batch of ``recipe.batch_size x
    world_size`` images, ``DistributedDataParallel`` averages the gradients, and rank 0
    alone evaluates, shows the progress bar and writes the checkpoint (the others wait).
    The learning rate is not rescaled: N processes with batch B take exactly the steps
    one process with batch N x B takes. Every process returns the same history, with
    loss and accuracy over all processes' batches; ``on_epoch_end`` runs in every process.
    A checkpoint can be resumed with another number of processes if the global batch
    (``batch_size`` x processes) stays the same.
    """
    recipe = recipe or Recipe()
    device = next(model.parameters()).device
    if device != data.device:
        raise ValueError(f"The model is on {device} but the data is on {data.device}: "
                         f"move one, e.g. model.to({str(data.device)!r}).")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs={epochs!r} is invalid: train for at least 1 epoch.")
    smallest = getattr(model, "min_resolution", 1)
    if resolution < smallest:
        raise ValueError(f"resolution={resolution} is below the smallest input this network accepts "
                         f"({smallest} px).")
    budget = {"epochs": epochs, "resolution": resolution, "seed": seed, "train_size": len(data.train_labels)}
    distributed.check_joined()
    world, main = distributed.world_size(), distributed.is_main()  # 1 and True without torchrun
    distributed.check_divisible(len(data.train_labels), world)
    steps_per_epoch = data.num_batches("train", recipe.batch_size * world)  # global batches
    optim = make_optimization(model, recipe, epochs * steps_per_epoch)

    history: list[EpochStats] = []
    if checkpoint is not None and resume and distributed.from_main(Path(checkpoint).exists()):
        history = _resume(checkpoint, recipe, budget, model, optim)
    else:
        seed_everything(seed)
    net = distributed.wrap(model)  # DistributedDataParallel under torchrun, else the model itself
    warned = False
    for epoch in range(len(history) + 1, epochs + 1):
        if world > 1:
            torch.manual_seed(distributed.process_seed(_shuffle_seed(seed, epoch)))  # its own dropout
        model.train()
        start = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        recent: list[torch.Tensor] = []
        step_losses: list[float] = []
        batches = distributed.shard_batches(data, recipe.batch_size, resolution, normalize=recipe.normalize,
                                            shuffle_seed=_shuffle_seed(seed, epoch))
        bar = tqdm(batches, total=steps_per_epoch, desc=f"epoch {epoch}/{epochs}", disable=not (progress and main))
        for step, (x, y) in enumerate(bar, start=1):
            loss, logits = train_step(net, x, y, recipe, optim)
            loss_sum += loss * len(y)  # device tensors: no host sync per step
            correct += (logits.argmax(1) == y).sum()
            recent.append(loss)
            if step % LOG_EVERY == 0:
                step_losses.append(torch.stack(recent).mean().item())
                recent.clear()
                bar.set_postfix(loss=f"{step_losses[-1]:.3f}")
                if main:
                    warned = warned or _warn_if_stalled([*(l for s in history for l in s.step_losses), *step_losses])
        train_seconds = time.perf_counter() - start
        seen = len(data.train_labels)  # by all processes together
        if world > 1:  # each process saw its own batches: add up the sums of all of them
            loss_sum, correct = distributed.sum_over_processes(loss_sum), distributed.sum_over_processes(correct)
            if step_losses:  # the mean over the processes of each point of the loss curve
                step_losses = (distributed.sum_over_processes(torch.tensor(step_losses, device=device)) / world).tolist()
        stats = None
        if main:
            test_acc = evaluate(model, data, resolution=resolution, recipe=recipe)
            stats = EpochStats(epoch, loss_sum.item() / seen, correct.item() / seen, test_acc,
                               seen / train_seconds, time.perf_counter() - start, step_losses)
        history.append(distributed.from_main(stats))  # the others wait here while rank 0 evaluates
        bar.set_postfix(loss=f"{history[-1].train_loss:.3f}", test_acc=f"{history[-1].test_acc:.3f}")
        bar.close()
        if checkpoint is not None and main:
            save_checkpoint(checkpoint, _training_state(recipe, budget, model, optim, history))
        distributed.barrier()  # the others wait for the checkpoint
        if on_epoch_end is not None:
            on_epoch_end(history)
    return history


@torch.inference_mode()
def predictions(model: nn.Module, data: FashionMNISTData, *, resolution: int, recipe: Recipe | None = None,
                split: str = "test", batch_size: int = 500) -> torch.Tensor:
    """Predicted class of every image of a split, int64 ``(N,)``.

    Images are resized to ``resolution`` px and normalised as ``recipe`` (default
    ``Recipe()``) trained the model; the model is in eval mode meanwhile.
    """
    recipe = recipe or Recipe()
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    guesses = []
    for x, _ in data.batches(split, batch_size, resolution, normalize=recipe.normalize):
        if recipe.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, recipe):
            guesses.append(model(x).argmax(1))
    model.train(was_training)
    return torch.cat(guesses)


def evaluate(model: nn.Module, data: FashionMNISTData, *, resolution: int, recipe: Recipe | None = None,
             split: str = "test") -> float:
    """Accuracy of ``model`` on a split of ``data`` (see ``predictions``)."""
    guesses = predictions(model, data, resolution=resolution, recipe=recipe, split=split)
    return (guesses == data.split(split)[1]).sum().item() / len(guesses)


def autocast(device: torch.device, recipe: Recipe) -> torch.autocast:
    """The autocast context ``recipe`` asks for on ``device`` (a no-op where float32 is used)."""
    dtype = autocast_dtype(device, recipe)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def autocast_dtype(device: torch.device, recipe: Recipe) -> torch.dtype | None:
    """The reduced precision ``device`` computes fast in, or ``None`` for plain float32
    (also when ``recipe.autocast`` is off)."""
    if not recipe.autocast:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    if device.type == "cpu" and _cpu_has_native_bf16():
        return torch.bfloat16
    return None


@functools.cache
def _cpu_has_native_bf16() -> bool:
    """True where the CPU multiplies bf16 in hardware (AVX-512 BF16 or AMX)."""
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_flags()))


def _shuffle_seed(seed: int, epoch: int) -> int:
    """A different batch order every epoch, and for every seed."""
    return seed * 100_003 + epoch  # a prime stride: (seed, epoch) pairs never collide


def _warn_if_stalled(step_losses: list[float]) -> bool:
    """Warn with ``PlateauWarning`` and return True if the last ``PLATEAU_STEPS`` steps sat at ln 10."""
    window = PLATEAU_STEPS // LOG_EVERY
    if len(step_losses) < window or abs(sum(step_losses[-window:]) / window - CHANCE_LOSS) >= 0.02:
        return False
    warnings.warn(
        f"The loss has stayed at ln 10 = {CHANCE_LOSS:.3f} for {PLATEAU_STEPS} steps: the network "
        "predicts every class with probability 1/10 and is not learning. Usual causes: Xavier "
        "init in a deep ReLU network (NiN's default init='kaiming' avoids it), a learning rate too "
        "high or too low, a ReLU before global average pooling that zeroes whole class channels "
        "(final_relu=False), or unnormalised input (Recipe(normalize=True)).", PlateauWarning, stacklevel=3)
    return True


def _training_state(recipe: Recipe, budget: dict[str, int], model: nn.Module, optim: Optimization,
                    history: list[EpochStats]) -> dict[str, Any]:
    """Everything a resumed run needs, as tensors and plain data only (safe to load)."""
    return {
        "recipe": asdict(recipe), "budget": budget, "model": model.state_dict(), **optim.state_dict(),
        "history": [asdict(stats) for stats in history], "cpu_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "world_size": distributed.world_size(),  # recipe["batch_size"] is per process
    }


def _resume(path: str | os.PathLike, recipe: Recipe, budget: dict[str, int], model: nn.Module,
            optim: Optimization) -> list[EpochStats]:
    state = load_checkpoint(path, required=("recipe", "budget", "model", "optimizer", "history"))
    stored = {**state["recipe"], **state["budget"]}
    wanted = {**asdict(recipe), **budget}
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
