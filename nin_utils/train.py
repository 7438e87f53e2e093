"""Training and evaluation: one loop, a progress bar, checkpoints that resume.

``fit`` trains with this course's default recipe, chosen because it learns
reliably where d2l's stalls (chapter 4 shows the stall and each fix):

* inputs normalised with the training set's mean and std (``normalize=True``);
* Kaiming initialisation and no ReLU before GAP (see ``nin_utils.models``);
* AdamW with a one-cycle schedule peaking at ``lr=2e-3``, weight decay 1e-4,
  and gradient-norm clipping at 2 (early steps on fresh weights can be large);
* bf16 autocast where the hardware has it (CUDA; CPUs with AVX-512 BF16 or
  AMX), fp16 with loss scaling on older GPUs, and channels-last tensors.

d2l's recipe is ``fit(..., optimizer="sgd", lr=0.1, momentum=0, weight_decay=0,
schedule="constant", grad_clip=None, normalize=False)`` on ``NiN(init="xavier",
final_relu=True)``.

Run the main job from a shell: ``python -m nin_utils.train --mode quick``.
"""

from __future__ import annotations

import argparse
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .config import get_device, get_mode, seed_everything
from .data import FashionMNISTData, load_fashion_mnist
from .models import NiN

LN_10 = math.log(10)  # the cross-entropy of a uniform guess over 10 classes


@dataclass
class EpochStats:
    epoch: int  # 1-based
    train_loss: float
    train_acc: float  # on the training batches as seen, dropout on
    test_acc: float
    examples_per_s: float  # training throughput, evaluation excluded
    seconds: float  # the whole epoch, evaluation included
    step_losses: list[float]  # mean training loss of every 20 steps, for curves within an epoch


class PlateauWarning(UserWarning):
    """The loss has sat at ln 10: the network is guessing uniformly."""


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read or does not match this run."""


def fit(model: nn.Module, data: FashionMNISTData, *, epochs: int, resolution: int = 96,
        batch_size: int = 128, lr: float = 2e-3,
        optimizer: Literal["adamw", "sgd"] = "adamw", momentum: float = 0.9,
        weight_decay: float = 1e-4, schedule: Literal["onecycle", "constant"] = "onecycle",
        grad_clip: float | None = 2.0, normalize: bool = True, mixed_precision: bool = True,
        channels_last: bool = True, seed: int = 0,
        checkpoint: str | os.PathLike | None = None, resume: bool = False,
        on_epoch_end: Callable[[list[EpochStats]], None] | None = None,
        progress: bool = True) -> list[EpochStats]:
    """Train ``model`` on ``data`` for ``epochs`` epochs; return one ``EpochStats`` per epoch.

    Images are resized to ``resolution`` px on the device. With ``checkpoint``
    set, the model, optimizer, schedule, random state and history are written
    there (atomically) after every epoch; ``resume=True`` continues from that
    file, so an interrupted run loses at most the epoch in progress and ends
    with the same weights as an uninterrupted one. ``on_epoch_end(history)``
    is called after each epoch (e.g. ``nin_utils.plotting`` draws live curves).
    Warns with ``PlateauWarning`` when the loss sits at ln 10 for 100 steps.
    """
    device = next(model.parameters()).device
    if device != data.device:
        raise ValueError(f"The model is on {device} but the data is on {data.device}: "
                         f"move one, e.g. model.to({str(data.device)!r}).")
    settings = dict(epochs=epochs, resolution=resolution, batch_size=batch_size, lr=lr,
                    optimizer=optimizer, momentum=momentum, weight_decay=weight_decay,
                    schedule=schedule, grad_clip=grad_clip, normalize=normalize, seed=seed,
                    train_size=len(data.train_labels))
    steps_per_epoch = data.num_batches("train", batch_size)
    opt = _make_optimizer(model, optimizer, lr, momentum, weight_decay)
    scheduler = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
                 if schedule == "onecycle" else torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0))
    amp_dtype = autocast_dtype(device) if mixed_precision else None
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)

    history: list[EpochStats] = []
    if checkpoint is not None and resume and Path(checkpoint).exists():
        history = _load_training_state(checkpoint, settings, model, opt, scheduler, scaler)
    else:
        seed_everything(seed)
    plateau = _PlateauWatch()
    for epoch in range(len(history) + 1, epochs + 1):
        model.train()
        start = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        step_losses: list[float] = []
        batches = data.batches("train", batch_size, resolution, normalize=normalize,
                               shuffle_seed=seed * 100_003 + epoch)
        bar = tqdm(batches, total=steps_per_epoch, desc=f"epoch {epoch}/{epochs}",
                   disable=not progress, leave=True)
        for step, (x, y) in enumerate(bar, start=1):
            x = x.contiguous(memory_format=memory_format)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(x)
                loss = F.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if grad_clip is not None:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(opt)
            scaler.update()
            scheduler.step()
            loss_sum += loss.detach() * len(y)  # device tensors: no host sync per step
            correct += (logits.argmax(1) == y).sum()
            plateau.add(loss.detach())
            if step % 20 == 0:
                step_losses.append(plateau.check())
                bar.set_postfix(loss=f"{step_losses[-1]:.3f}")
        train_seconds = time.perf_counter() - start
        seen = len(data.train_labels)
        test_acc = evaluate(model, data, resolution=resolution, normalize=normalize,
                            mixed_precision=mixed_precision)
        history.append(EpochStats(epoch, loss_sum.item() / seen, correct.item() / seen, test_acc,
                                  seen / train_seconds, time.perf_counter() - start, step_losses))
        bar.set_postfix(loss=f"{history[-1].train_loss:.3f}", test_acc=f"{test_acc:.3f}")
        bar.close()
        if checkpoint is not None:
            _save_training_state(checkpoint, settings, model, opt, scheduler, scaler, history)
        if on_epoch_end is not None:
            on_epoch_end(history)
    return history


@torch.inference_mode()
def predictions(model: nn.Module, data: FashionMNISTData, *, split: str = "test", resolution: int = 96,
                batch_size: int = 512, normalize: bool = True, mixed_precision: bool = True) -> torch.Tensor:
    """Predicted class of every image of a split (images resized to ``resolution`` px), int64 ``(N,)``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    amp_dtype = autocast_dtype(device) if mixed_precision else None
    guesses = []
    for x, _ in data.batches(split, batch_size, resolution, normalize=normalize):
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            guesses.append(model(x.contiguous(memory_format=torch.channels_last)).argmax(1))
    model.train(was_training)
    return torch.cat(guesses)


def evaluate(model: nn.Module, data: FashionMNISTData, *, split: str = "test", resolution: int = 96,
             normalize: bool = True, mixed_precision: bool = True) -> float:
    """Accuracy of ``model`` on a split of ``data`` (images resized to ``resolution`` px)."""
    guesses = predictions(model, data, split=split, resolution=resolution, normalize=normalize,
                          mixed_precision=mixed_precision)
    return (guesses == data.split(split)[1]).sum().item() / len(guesses)


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The reduced precision this device computes fast in, or ``None`` for plain float32."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    if device.type == "cpu" and _cpu_has_native_bf16():
        return torch.bfloat16
    return None


def _cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _make_optimizer(model: nn.Module, name: str, lr: float, momentum: float,
                    weight_decay: float) -> torch.optim.Optimizer:
    if name == "adamw":
        # The fused kernel (CPU and CUDA) is ~6x faster than foreach for a 20M-parameter FC head.
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay,
                                 fused=next(model.parameters()).device.type in ("cpu", "cuda"))
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"Unknown optimizer {name!r}: use 'adamw' or 'sgd'.")


class _PlateauWatch:
    """Warns once when the mean loss of the last 100 steps is within 0.02 of ln 10."""

    window = 100

    def __init__(self) -> None:
        self.losses: list[torch.Tensor] = []
        self.warned = False

    def add(self, loss: torch.Tensor) -> None:
        self.losses = (self.losses + [loss])[-self.window:]

    def check(self) -> float:
        """Mean of the recent losses (one host sync); warns if it sits at ln 10."""
        recent = torch.stack(self.losses[-20:]).mean().item()
        if not self.warned and len(self.losses) == self.window:
            mean = torch.stack(self.losses).mean().item()
            if abs(mean - LN_10) < 0.02:
                self.warned = True
                warnings.warn(
                    f"The loss has stayed at ln 10 = {LN_10:.3f} for {self.window} steps: the "
                    "network predicts every class with probability 1/10 and is not learning. "
                    "Usual causes: Xavier or default init in a deep ReLU network (try "
                    "init='kaiming'), a learning rate too high or too low, a ReLU before global "
                    "average pooling that zeroes whole class channels (final_relu=False), or "
                    "unnormalised input (normalize=True).", PlateauWarning, stacklevel=3)
        return recent


def _save_training_state(path: str | os.PathLike, settings: dict[str, Any], model: nn.Module,
                         opt: torch.optim.Optimizer, scheduler: Any, scaler: torch.amp.GradScaler,
                         history: list[EpochStats]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "settings": settings, "model": model.state_dict(), "optimizer": opt.state_dict(),
        "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
        "history": [asdict(stats) for stats in history], "cpu_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    partial.replace(path)  # atomic: a crash mid-write never leaves a half checkpoint


def _load_training_state(path: str | os.PathLike, settings: dict[str, Any], model: nn.Module,
                         opt: torch.optim.Optimizer, scheduler: Any, scaler: torch.amp.GradScaler
                         ) -> list[EpochStats]:
    state = load_checkpoint(path)
    stored = state["settings"]
    changed = {k: (stored.get(k), v) for k, v in settings.items() if stored.get(k) != v}
    if changed:
        details = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
        raise CheckpointError(f"Checkpoint {path} was written by a run with other settings "
                              f"({details}). Resume with the same settings, or use another "
                              f"checkpoint path to start afresh.")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["cpu_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return [EpochStats(**stats) for stats in state["history"]]


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by ``fit``; ``CheckpointError`` if it is damaged or foreign."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise
    except Exception as error:  # truncated zip, bad pickle, not a torch file...
        raise CheckpointError(f"Checkpoint {path} is damaged or incomplete ({type(error).__name__}: "
                              f"{error}). Delete it to start training afresh, or point to "
                              f"another file.") from error
    if not isinstance(state, dict) or "model" not in state or "history" not in state:
        raise CheckpointError(f"{path} is not a checkpoint written by nin_utils.fit.")
    return state


def main(argv: list[str] | None = None) -> list[EpochStats]:
    """``python -m nin_utils.train``: train NiN with a mode's recipe and save a checkpoint."""
    parser = argparse.ArgumentParser(prog="python -m nin_utils.train", description=main.__doc__)
    parser.add_argument("--mode", choices=["quick", "full"], help="default: $NIN_MODE, else by device")
    parser.add_argument("--epochs", type=int, help="default: the mode's")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    parser.add_argument("--batch-size", type=int, help="default: the mode's")
    parser.add_argument("--train-subset", type=int, help="training images (default: the mode's)")
    parser.add_argument("--test-subset", type=int, help="test images (default: the mode's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", help="default: checkpoints/nin_<mode>.pt")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    args = parser.parse_args(argv)

    mode = get_mode(args.mode)
    device = get_device()
    epochs = args.epochs or mode.epochs
    batch_size = args.batch_size or mode.batch_size
    checkpoint = Path(args.checkpoint or f"checkpoints/nin_{mode.name}.pt")
    print(f"{mode.describe()}; this run: {epochs} epochs, batch {batch_size}, on {device}")
    seed_everything(args.seed)
    data = load_fashion_mnist(device=device, train_subset=args.train_subset or mode.train_subset,
                              test_subset=args.test_subset or mode.test_subset, seed=args.seed)
    model = NiN().to(device)
    history = fit(model, data, epochs=epochs, resolution=mode.resolution, batch_size=batch_size,
                  lr=args.lr, seed=args.seed, checkpoint=checkpoint, resume=args.resume)
    print(f"{'epoch':>5} {'train loss':>10} {'train acc':>9} {'test acc':>8} {'examples/s':>10} {'s':>6}")
    for s in history:
        print(f"{s.epoch:>5} {s.train_loss:>10.4f} {s.train_acc:>9.4f} {s.test_acc:>8.4f} "
              f"{s.examples_per_s:>10.0f} {s.seconds:>6.1f}")
    print(f"Final test accuracy {history[-1].test_acc:.4f} ({mode.name} mode, {device}); "
          f"checkpoint: {checkpoint}")
    return history


if __name__ == "__main__":
    main()
