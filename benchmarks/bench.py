"""Training throughput of NiN on Fashion-MNIST: d2l's code vs nin_utils, plus time to 85%.

Two contenders train the same network (d2l's NiN, 1,992,166 parameters) at the
same batch size, resolution and torch thread count:

* ``d2l``       -- d2l's own code, copied below as d2l writes it: torchvision dataset
                   with PIL ``Resize`` + ``ToTensor``, a 4-worker ``DataLoader``,
                   Xavier init, SGD at lr 0.1, float32, NCHW, ``train_ch6``'s loop;
* ``nin_utils`` -- the step ``nin_utils.fit`` runs: uint8 data already on the
                   device, resized there, channels-last, autocast where the
                   hardware has a fast low precision, fused AdamW, grad clip 2.

They run in alternating timed windows (ABBA order, after a warm-up) so that
noise from other jobs on the machine hits both; each window gives examples/s
and the table reports the median. Usage (from the repository root)::

    .venv/bin/python benchmarks/bench.py                       # 96 and 224 px
    .venv/bin/python benchmarks/bench.py --resolutions 224 --windows 4 --seconds 5
    .venv/bin/python benchmarks/bench.py --experiments nchw compile
    .venv/bin/python benchmarks/bench.py --time-to-accuracy    # the quick recipe to 85%
    .venv/bin/python benchmarks/bench.py --fixed-budget        # accuracy with each option off
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils import data
from torchvision import transforms

import nin_utils
from nin_utils.train import autocast_dtype

BATCH_SIZE = 128  # d2l's NiN chapter: lr, num_epochs, batch_size = 0.1, 10, 128
D2L_ROOT = Path.home() / ".cache" / "nin_utils"  # FashionMNIST/raw, placed by load_fashion_mnist()


# ----------------------------------------------------------------------------------------
# d2l's code (d2l.ai, "Network in Network" and d2l.load_data_fashion_mnist / train_ch6),
# kept as d2l writes it so the baseline is what a reader of d2l actually runs.

def get_dataloader_workers() -> int:
    """Use 4 processes to read the data."""
    return 4


def load_data_fashion_mnist(batch_size: int, resize: int | None = None) -> data.DataLoader:
    """d2l's loader, training half only; root points at nin_utils' copy, download off (offline)."""
    trans = [transforms.ToTensor()]
    if resize:
        trans.insert(0, transforms.Resize(resize))
    trans = transforms.Compose(trans)
    mnist_train = torchvision.datasets.FashionMNIST(root=D2L_ROOT, train=True, transform=trans,
                                                    download=False)
    return data.DataLoader(mnist_train, batch_size, shuffle=True,
                           num_workers=get_dataloader_workers())


def nin_block(in_channels: int, out_channels: int, kernel_size: int, strides: int,
              padding: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, strides, padding), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU())


def d2l_nin() -> nn.Sequential:
    return nn.Sequential(
        nin_block(1, 96, kernel_size=11, strides=4, padding=0),
        nn.MaxPool2d(3, stride=2),
        nin_block(96, 256, kernel_size=5, strides=1, padding=2),
        nn.MaxPool2d(3, stride=2),
        nin_block(256, 384, kernel_size=3, strides=1, padding=1),
        nn.MaxPool2d(3, stride=2),
        nn.Dropout(0.5),
        # There are 10 label classes
        nin_block(384, 10, kernel_size=3, strides=1, padding=1),
        nn.AdaptiveAvgPool2d((1, 1)),
        # Transform the four-dimensional output into two-dimensional output with a shape of
        # (batch size, 10)
        nn.Flatten())


def accuracy(y_hat: torch.Tensor, y: torch.Tensor) -> float:
    """Compute the number of correct predictions."""
    if len(y_hat.shape) > 1 and y_hat.shape[1] > 1:
        y_hat = y_hat.argmax(axis=1)
    cmp = y_hat.type(y.dtype) == y
    return float(cmp.type(y.dtype).sum())


class D2LStep:
    """One iteration of d2l's ``train_ch6`` inner loop (its Animator and Timer left out)."""

    name = "d2l"

    def __init__(self, resolution: int, device: torch.device) -> None:
        def init_weights(m: nn.Module) -> None:
            if type(m) == nn.Linear or type(m) == nn.Conv2d:
                nn.init.xavier_uniform_(m.weight)

        self.device = device
        self.net = d2l_nin()
        self.net.apply(init_weights)
        self.net.to(device)
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=0.1)
        self.loss = nn.CrossEntropyLoss()
        self.train_iter = load_data_fashion_mnist(BATCH_SIZE, resize=resolution)
        self.batches = iter(self.train_iter)
        self.metric = [0.0, 0.0, 0]  # d2l.Accumulator(3): loss sum, correct, examples
        self.net.train()

    def __call__(self) -> int:
        try:
            X, y = next(self.batches)
        except StopIteration:  # a new epoch, as train_ch6's `for` loop starts one
            self.batches = iter(self.train_iter)
            X, y = next(self.batches)
        self.optimizer.zero_grad()
        X, y = X.to(self.device), y.to(self.device)
        y_hat = self.net(X)
        l = self.loss(y_hat, y)
        l.backward()
        self.optimizer.step()
        with torch.no_grad():  # d2l syncs with the host here every step (float())
            self.metric[0] += float(l * X.shape[0])
            self.metric[1] += accuracy(y_hat, y)
            self.metric[2] += X.shape[0]
        return X.shape[0]

    def close(self) -> None:
        del self.batches  # shuts the 4 loader workers down before the next resolution


# ----------------------------------------------------------------------------------------
# nin_utils: the body of nin_utils.fit's loop, minus the progress bar and the schedule
# (OneCycleLR costs microseconds and does not change throughput).

class NinUtilsStep:
    def __init__(self, dataset: nin_utils.FashionMNISTData, resolution: int, *,
                 channels_last: bool = True, compiled: bool = False, label: str = "") -> None:
        device = dataset.device
        self.name = "nin_utils" + (f" {label}" if label else "")
        self.dataset, self.resolution = dataset, resolution
        self.model = nin_utils.NiN().to(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        self.forward = torch.compile(self.model) if compiled else self.model
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=2e-3, weight_decay=1e-4,
                                     fused=device.type in ("cpu", "cuda"))
        self.amp_dtype = autocast_dtype(device)  # None on CPUs without AVX-512 BF16 / AMX
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.recent: list[torch.Tensor] = []
        self.epoch, self.step = 0, 0
        self.batches = self._next_epoch()
        self.model.train()

    def _next_epoch(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.epoch += 1
        return self.dataset.batches("train", BATCH_SIZE, self.resolution,
                                    shuffle_seed=100_003 + self.epoch)  # fit's seed 0 formula

    def __call__(self) -> int:
        try:
            x, y = next(self.batches)
        except StopIteration:
            self.batches = self._next_epoch()
            x, y = next(self.batches)
        device_type = x.device.type
        x = x.contiguous(memory_format=self.memory_format)
        with torch.autocast(device_type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            logits = self.forward(x)
            loss = F.cross_entropy(logits.float(), y)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        nn.utils.clip_grad_norm_(self.model.parameters(), 2.0)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.loss_sum += loss.detach() * len(y)  # device tensors: no host sync per step
        self.correct += (logits.argmax(1) == y).sum()
        self.recent = (self.recent + [loss.detach()])[-20:]
        self.step += 1
        if self.step % 20 == 0:  # fit's progress bar reads the loss (one sync) every 20 steps
            torch.stack(self.recent).mean().item()
        return len(y)

    def close(self) -> None:
        pass


Step = D2LStep | NinUtilsStep


# ----------------------------------------------------------------------------------------
# Measuring: memory high-water per window, timed windows, alternation.

def _proc_status_kb(field_name: str) -> int | None:
    """A field of /proc/self/status (VmRSS, VmHWM) in kB; None where there is no /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakMemory:
    """Peak memory of one window, in MB.

    CUDA: ``torch.cuda.max_memory_allocated`` (reset before each window).
    CPU: the process's RSS high-water. Linux lets a process reset it (write 5 to
    /proc/self/clear_refs), so each window gets its own VmHWM; elsewhere we fall back
    to ``getrusage`` ru_maxrss, which never goes down (then only the first contender
    to reach a level shows it). ``rise`` is the peak minus the RSS at the window's start:
    the step's working set (activations, gradients), without what was already resident.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.resettable = False
        if not self.cuda:
            try:
                Path("/proc/self/clear_refs").write_text("5")
                self.resettable = _proc_status_kb("VmHWM") is not None
            except OSError:
                pass
        self.start_mb = 0.0

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            self.start_mb = torch.cuda.memory_allocated() / 2**20
        elif self.resettable:
            Path("/proc/self/clear_refs").write_text("5")
            self.start_mb = _proc_status_kb("VmRSS") / 1024
        else:
            self.start_mb = self._maxrss_mb()

    def read(self) -> tuple[float, float]:
        """(peak, rise over the window's start) in MB."""
        if self.cuda:
            peak = torch.cuda.max_memory_allocated() / 2**20
        elif self.resettable:
            peak = _proc_status_kb("VmHWM") / 1024
        else:
            peak = self._maxrss_mb()
        return peak, peak - self.start_mb

    @staticmethod
    def _maxrss_mb() -> float:
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024  # bytes vs kB


def _children() -> list[str]:
    """Pids of this process's children (d2l's loader workers); Linux only, else none."""
    return [pid for task in Path("/proc/self/task").glob("*/children")
            for pid in task.read_text().split()]


def children_pss_mb() -> float:
    """Proportional set size of the loader workers: PSS splits the pages they share after
    fork() (torch itself, the dataset), so the sum is not inflated by every worker's copy."""
    total = 0.0
    for pid in _children():
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


def cpu_seconds() -> tuple[float, float]:
    """(this process, its children) CPU seconds so far. On a shared machine the wall-clock
    rate depends on what the scheduler gives us; CPU time per example much less so, and it
    shows what d2l's loader workers cost on a machine with few cores."""
    ticks = 0
    for pid in _children():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return time.process_time(), ticks / os.sysconf("SC_CLK_TCK") if ticks else 0.0


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@dataclass
class Window:
    rate: float  # examples/s, wall clock
    peak_mb: float
    rise_mb: float
    cpu_ms: float  # CPU milliseconds per example, this process
    worker_cpu_ms: float  # CPU milliseconds per example, loader workers


@dataclass
class Result:
    name: str
    windows: list[Window] = field(default_factory=list)
    workers_mb: float = 0.0  # d2l's loader workers (PSS), CPU memory

    @property
    def rates(self) -> list[float]:
        return [w.rate for w in self.windows]

    def median(self, attr: str = "rate") -> float:
        return statistics.median(getattr(w, attr) for w in self.windows)


def timed_window(step: Step, seconds: float, device: torch.device, memory: PeakMemory) -> Window:
    """Run whole steps until ``seconds`` have passed."""
    synchronize(device)
    memory.reset()
    examples, (cpu0, workers0), start = 0, cpu_seconds(), time.perf_counter()
    while True:
        examples += step()
        if time.perf_counter() - start >= seconds:
            break
    synchronize(device)  # CUDA: count the queued work in this window, not the next one
    elapsed = time.perf_counter() - start
    cpu1, workers1 = cpu_seconds()
    return Window(examples / elapsed, *memory.read(), 1000 * (cpu1 - cpu0) / examples,
                  1000 * max(workers1 - workers0, 0.0) / examples)


def warm_up(step: Step, seconds: float, device: torch.device, min_steps: int = 2) -> float:
    """Steps until both ``min_steps`` and ``seconds`` are done: kernels chosen, workers started."""
    start, steps = time.perf_counter(), 0
    while steps < min_steps or time.perf_counter() - start < seconds:
        step()
        steps += 1
    synchronize(device)
    return time.perf_counter() - start


def bench_resolution(resolution: int, device: torch.device, dataset: nin_utils.FashionMNISTData,
                     windows: int, seconds: float, warmup: float,
                     experiments: list[str]) -> list[Result]:
    steps: list[Step] = [D2LStep(resolution, device), NinUtilsStep(dataset, resolution)]
    if "nchw" in experiments:  # what channels-last buys: the same step in NCHW
        steps.append(NinUtilsStep(dataset, resolution, channels_last=False, label="nchw"))
    if "compile" in experiments:  # torch.compile of the model (compiles in the warm-up)
        steps.append(NinUtilsStep(dataset, resolution, compiled=True, label="compile"))
    memory = PeakMemory(device)
    results = [Result(s.name) for s in steps]
    for s in steps:
        print(f"  {resolution} px: warm-up {s.name:<18} {warm_up(s, warmup, device):6.1f} s",
              flush=True)
    for round_ in range(windows):
        order = list(range(len(steps)))
        if round_ % 2:  # ABBA: neither contender always runs right after the other
            order.reverse()
        for i in order:
            results[i].windows.append(timed_window(steps[i], seconds, device, memory))
            if isinstance(steps[i], D2LStep) and device.type == "cpu":
                results[i].workers_mb = max(results[i].workers_mb, children_pss_mb())
        print(f"  {resolution} px: window {round_ + 1}/{windows}: " + ", ".join(
            f"{r.name} {r.rates[-1]:.1f}" for r in results) + " ex/s", flush=True)
    for s in steps:
        s.close()
    return results


def print_table(table: dict[int, list[Result]], device: torch.device) -> None:
    """One row per contender and resolution, then nin_utils/d2l ratios.

    Ratios: of the medians, and the median of per-round ratios (each round's two windows
    ran back to back, so they saw nearly the same machine load)."""
    cpu = device.type == "cpu"
    memory = "peak RSS MB  rise MB  workers MB" if cpu else "peak alloc MB  rise MB"
    print(f"\n{'res':>4}  {'contender':<18} {'win':>3} {'ex/s median':>11} {'min-max':>13}  "
          f"{'CPU ms/ex':>9} {'(workers)':>9}  {memory}")
    for resolution, results in table.items():
        for r in results:
            peak = max(w.peak_mb for w in r.windows)
            rise = max(w.rise_mb for w in r.windows)
            workers = f"{r.workers_mb:>11.0f}" if r.workers_mb else f"{'-':>11}"
            spread = f"{min(r.rates):.1f}-{max(r.rates):.1f}"
            cpu_ms = r.median("cpu_ms") + r.median("worker_cpu_ms")
            print(f"{resolution:>4}  {r.name:<18} {len(r.windows):>3} {r.median():>11.1f} "
                  f"{spread:>13}  {cpu_ms:>9.1f} {r.median('worker_cpu_ms'):>9.1f}  "
                  + (f"{peak:>11.0f} {rise:>8.0f} {workers}" if cpu else f"{peak:>13.0f} {rise:>8.0f}"))
        base = results[0]
        for r in results[1:]:
            paired = [b / a for a, b in zip(base.rates, r.rates)]
            print(f"{'':>4}  ratio {r.name}/d2l: {r.median() / base.median():.2f}x of medians, "
                  f"{statistics.median(paired):.2f}x median per round "
                  f"(rounds {min(paired):.2f}-{max(paired):.2f})")
    if cpu:
        print("CPU ms/ex: CPU time per example, this process plus (workers) d2l's loader workers; "
              "peak RSS: this process's high-water during the contender's windows; rise: peak "
              "minus RSS at the window's start; workers MB: loader workers' PSS.")


# ----------------------------------------------------------------------------------------
# Time to accuracy: nin_utils' own recipe, from a fresh model, on all 60,000 / 10,000 images.

def time_to_accuracy(device: torch.device, resolution: int, epochs: int, batch_size: int,
                     lr: float, target: float) -> None:
    print(f"time to accuracy: nin_utils.fit, NiN(), all 60,000 training / 10,000 test images, "
          f"{resolution} px, {epochs} epochs, batch {batch_size}, AdamW one-cycle lr {lr}, "
          f"target {target:.0%}", flush=True)
    start = time.perf_counter()  # from here: data loading, model, training, evaluation
    nin_utils.seed_everything(0)
    dataset = nin_utils.load_fashion_mnist(device=device)
    model = nin_utils.NiN().to(device)
    print(f"  data and model ready after {time.perf_counter() - start:.1f} s; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    print(f"{'epoch':>5} {'train loss':>10} {'train acc':>9} {'test acc':>8} {'examples/s':>10} "
          f"{'epoch s':>8} {'wall s':>7} {'CPU s':>7}", flush=True)
    cpu0 = time.process_time()  # CPU time too: on a shared machine wall time depends on others
    reached: list[float] = []

    def report(history: list[nin_utils.EpochStats]) -> None:
        s, wall = history[-1], time.perf_counter() - start
        if s.test_acc >= target and not reached:
            reached.append(wall)
        print(f"{s.epoch:>5} {s.train_loss:>10.4f} {s.train_acc:>9.4f} {s.test_acc:>8.4f} "
              f"{s.examples_per_s:>10.1f} {s.seconds:>8.1f} {wall:>7.1f} "
              f"{time.process_time() - cpu0:>7.1f}", flush=True)

    nin_utils.fit(model, dataset, epochs=epochs, resolution=resolution, batch_size=batch_size,
                  lr=lr, progress=False, on_epoch_end=report)
    total = time.perf_counter() - start
    print(f"load average now {os.getloadavg()[0]:.1f}")
    if reached:
        print(f"reached {target:.0%} test accuracy after {reached[0]:.1f} s wall "
              f"(whole run {total:.1f} s)")
    else:
        print(f"did NOT reach {target:.0%} test accuracy (whole run {total:.1f} s)")



# ----------------------------------------------------------------------------------------
# Fixed budget: an optimisation stays only if accuracy is unchanged at the same budget.

def fixed_budget(device: torch.device, train_images: int, resolution: int, batch_size: int,
                 seeds: int) -> None:
    """Train nin_utils' recipe with each speed option switched off in turn, same data and seeds.

    Bit-level differences (memory layout, precision) grow into different runs, so one
    seed per variant says little: compare the mean and spread over ``seeds`` seeds.
    """
    variants = {"default": {}, "nchw (channels-last off)": dict(channels_last=False)}
    if autocast_dtype(device) is not None:
        variants["float32 (autocast off)"] = dict(mixed_precision=False)
    dataset = nin_utils.load_fashion_mnist(device=device, train_subset=train_images)
    print(f"fixed budget: {train_images:,} training images, 1 epoch, {resolution} px, batch "
          f"{batch_size}, seeds 0-{seeds - 1}; test accuracy on all 10,000 test images", flush=True)
    print(f"{'variant':<26} {'test acc per seed':<26} {'mean':>6} {'examples/s':>10}", flush=True)
    for name, options in variants.items():
        accuracies, rates = [], []
        for seed in range(seeds):
            nin_utils.seed_everything(seed)  # the same initial weights for every variant
            model = nin_utils.NiN().to(device)
            (stats,) = nin_utils.fit(model, dataset, epochs=1, resolution=resolution,
                                     batch_size=batch_size, seed=seed, progress=False, **options)
            accuracies.append(stats.test_acc)
            rates.append(stats.examples_per_s)
        print(f"{name:<26} {' '.join(f'{a:.4f}' for a in accuracies):<26} "
              f"{statistics.mean(accuracies):>6.4f} {statistics.median(rates):>10.1f}", flush=True)


# ----------------------------------------------------------------------------------------

def cpu_name() -> str:
    try:  # platform.processor() is empty on most Linux systems
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def default_windows(resolution: int, device: torch.device) -> tuple[int, float]:
    """CPU at 224 px takes seconds per step, so fewer, longer windows there."""
    if device.type == "cuda":
        return 6, 5.0
    return (6, 8.0) if resolution <= 128 else (3, 12.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[96, 224])
    parser.add_argument("--windows", type=int, help="timed windows per contender "
                        "(default: CPU 6 at <=128 px, 3 above; CUDA 6)")
    parser.add_argument("--seconds", type=float, help="length of one window "
                        "(default: CPU 8 s at <=128 px, 12 s above; CUDA 5 s)")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds (>= 2 steps)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--experiments", nargs="*", default=[], choices=["nchw", "compile"],
                        help="extra nin_utils variants in the alternation")
    parser.add_argument("--time-to-accuracy", action="store_true",
                        help="run nin_utils' quick recipe to --target instead of the windows")
    parser.add_argument("--tta-resolution", type=int, default=72)
    parser.add_argument("--tta-epochs", type=int, default=1)
    parser.add_argument("--tta-batch-size", type=int, default=64)
    parser.add_argument("--tta-lr", type=float, default=2e-3)
    parser.add_argument("--target", type=float, default=0.85)
    parser.add_argument("--fixed-budget", action="store_true",
                        help="accuracy with each speed option off, at one fixed budget")
    parser.add_argument("--budget-images", type=int, default=10_000)
    parser.add_argument("--budget-seeds", type=int, default=3)
    args = parser.parse_args()

    # d2l asks for 4 loader workers whatever the CPU count; torch warns on a 2-CPU machine.
    warnings.filterwarnings("ignore", message="This DataLoader will create")
    torch.set_num_threads(args.threads)  # both contenders share it (loader workers use 1 each)
    device = nin_utils.get_device()
    name = torch.cuda.get_device_name() if device.type == "cuda" else cpu_name()
    print(f"device {device} ({name}), {os.cpu_count()} CPUs, {torch.get_num_threads()} torch "
          f"threads, torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    if args.time_to_accuracy:
        time_to_accuracy(device, args.tta_resolution, args.tta_epochs, args.tta_batch_size,
                         args.tta_lr, args.target)
        return
    if args.fixed_budget:
        fixed_budget(device, args.budget_images, args.tta_resolution, args.tta_batch_size,
                     args.budget_seeds)
        return

    start = time.perf_counter()
    dataset = nin_utils.load_fashion_mnist(device=device)  # also places d2l's FashionMNIST/raw
    print(f"autocast dtype for nin_utils: {autocast_dtype(device)}; batch {BATCH_SIZE}", flush=True)
    table: dict[int, list[Result]] = {}
    for resolution in args.resolutions:
        windows, seconds = default_windows(resolution, device)
        windows, seconds = args.windows or windows, args.seconds or seconds
        print(f"{resolution} px: {windows} windows of >= {seconds:g} s per contender", flush=True)
        table[resolution] = bench_resolution(resolution, device, dataset, windows, seconds,
                                             args.warmup, args.experiments)
    print_table(table, device)
    print(f"\ntotal {time.perf_counter() - start:.0f} s, load average now "
          f"{os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
