"""Training throughput: d2l's code vs the course's ``train_step``, side by side in one process.

    .venv/bin/python benchmarks/throughput.py                      # 96 and 224 px
    .venv/bin/python benchmarks/throughput.py --resolutions 96 --rounds 8 --seconds 10

Both contenders train d2l's NiN (1,992,166 parameters) at batch 128:

* ``d2l``       -- d2l's own code, copied below as d2l writes it (it is the baseline, not
                   course code): PIL ``Resize`` + ``ToTensor`` in a 4-worker ``DataLoader``,
                   Xavier init, SGD at lr 0.1, float32, NCHW, ``train_ch6``'s inner loop;
* ``nin_utils`` -- ``nin_utils.train_step`` with ``Recipe()`` on ``NiN()``: uint8 data on
                   the device, resized there, channels-last, autocast where the hardware has
                   a fast low precision.

They run in alternating timed windows (ABBA, after a warm-up), so noise from other jobs
hits both; the report gives the median of per-round ratios. It also measures the CPU's
(or GPU's) matmul peak with a large ``torch.mm`` in the same run and reports each
contender's achieved FLOP/s (3x the forward FLOPs per example: forward + backward) as a
fraction of it.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import torch
import torchvision
from torch import nn
from torch.utils import data
from torchvision import transforms

from machine import describe_machine, synchronize
from nin_utils import NiN, Recipe, count_flops, fashion_mnist_root, get_device, load_fashion_mnist, train_step
from nin_utils.training import autocast_dtype, make_optimization

# ----------------------------------------------------------------------------------------
# d2l's code (d2l.ai, "Network in Network", load_data_fashion_mnist and train_ch6), as written.

def load_data_fashion_mnist(batch_size, resize=None):
    trans = [transforms.ToTensor()]
    if resize:
        trans.insert(0, transforms.Resize(resize))
    trans = transforms.Compose(trans)
    mnist_train = torchvision.datasets.FashionMNIST(root=fashion_mnist_root(), train=True,
                                                    transform=trans, download=False)
    return data.DataLoader(mnist_train, batch_size, shuffle=True, num_workers=4)


def nin_block(in_channels, out_channels, kernel_size, strides, padding):
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, strides, padding), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU())


def d2l_net():
    return nn.Sequential(
        nin_block(1, 96, kernel_size=11, strides=4, padding=0), nn.MaxPool2d(3, stride=2),
        nin_block(96, 256, kernel_size=5, strides=1, padding=2), nn.MaxPool2d(3, stride=2),
        nin_block(256, 384, kernel_size=3, strides=1, padding=1), nn.MaxPool2d(3, stride=2),
        nn.Dropout(0.5), nin_block(384, 10, kernel_size=3, strides=1, padding=1),
        nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())


def d2l_step(resolution: int, device: torch.device) -> Callable[[], int]:
    """One iteration of ``train_ch6``'s inner loop (its Animator and Timer left out)."""
    net = d2l_net()
    net.apply(lambda m: nn.init.xavier_uniform_(m.weight) if type(m) in (nn.Linear, nn.Conv2d) else None)
    net.to(device).train()
    optimizer, loss = torch.optim.SGD(net.parameters(), lr=0.1), nn.CrossEntropyLoss()
    loader = load_data_fashion_mnist(128, resize=resolution)
    batches = iter(loader)
    metric = [0.0, 0.0, 0]  # d2l.Accumulator(3): loss sum, correct, examples

    def step() -> int:
        nonlocal batches
        try:
            X, y = next(batches)
        except StopIteration:  # a new epoch, as train_ch6's `for` loop starts one
            batches = iter(loader)
            X, y = next(batches)
        optimizer.zero_grad()
        X, y = X.to(device), y.to(device)
        y_hat = net(X)
        l = loss(y_hat, y)
        l.backward()
        optimizer.step()
        with torch.no_grad():  # d2l reads these back to the host every step
            metric[0] += float(l * X.shape[0])
            metric[1] += float((y_hat.argmax(axis=1).type(y.dtype) == y).type(y.dtype).sum())
            metric[2] += X.shape[0]
        return X.shape[0]
    return step


# ----------------------------------------------------------------------------------------
# The course: nin_utils.train_step, the step fit() runs.

def course_step(resolution: int, device: torch.device, recipe: Recipe,
                compiled: bool = False) -> Callable[[], int]:
    fashion = load_fashion_mnist(device=device)
    model = NiN().to(device).train()
    optim = make_optimization(model, recipe, total_steps=10**9)  # the schedule never ends here
    forward = torch.compile(model) if compiled else model  # same weights; compiled on the first steps
    epoch, batches = 0, iter(())

    def step() -> int:
        nonlocal epoch, batches
        try:
            x, y = next(batches)
        except StopIteration:
            epoch += 1
            batches = fashion.batches("train", recipe.batch_size, resolution, shuffle_seed=epoch)
            x, y = next(batches)
        train_step(forward, x, y, recipe, optim)
        return len(y)
    return step


# ----------------------------------------------------------------------------------------

def timed_window(step: Callable[[], int], seconds: float, device: torch.device) -> float:
    """Examples/s over whole steps until ``seconds`` have passed."""
    synchronize(device)
    examples, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        examples += step()
    synchronize(device)
    return examples / (time.perf_counter() - start)


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 4096, seconds: float = 4.0) -> float:
    """FLOP/s of repeated ``n x n`` matmuls: the practical peak of this device in ``dtype``."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    torch.mm(a, b)
    return timed_window(lambda: (torch.mm(a, b), 2 * n**3)[1], seconds, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[96, 224])
    parser.add_argument("--rounds", type=int, default=6, help="timed windows per contender")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of one window")
    parser.add_argument("--compile", action="store_true",
                        help="add a third contender: the course's step on a torch.compile'd model (not the default)")
    parser.add_argument("--float32", action="store_true",
                        help="the course's step without autocast, as on a CPU without bf16")
    args = parser.parse_args()
    recipe = Recipe(autocast=not args.float32)
    warnings.filterwarnings("ignore", message="This DataLoader will create")  # d2l's 4 workers on 2 cores
    device = get_device()
    print(describe_machine(device), flush=True)
    fast_dtype = autocast_dtype(device, recipe.autocast) or torch.float32
    peaks = {torch.float32: matmul_peak(device, torch.float32), fast_dtype: matmul_peak(device, fast_dtype)}
    print("matmul peak: " + ", ".join(f"{str(d).removeprefix('torch.')} {p / 1e9:,.0f} GFLOP/s"
                                      for d, p in peaks.items()), flush=True)
    for resolution in args.resolutions:
        flops_per_example = 3 * count_flops(NiN(), resolution)  # forward + backward
        contenders = {"d2l": (d2l_step(resolution, device), torch.float32),
                      "nin_utils": (course_step(resolution, device, recipe), fast_dtype)}
        if args.compile:
            contenders["nin_utils compiled"] = (course_step(resolution, device, recipe, compiled=True), fast_dtype)
        for step, _ in contenders.values():  # warm-up: kernels chosen, loader workers started, compiled
            for _ in range(3):
                step()
        rates: dict[str, list[float]] = {name: [] for name in contenders}
        for round_ in range(args.rounds):
            order = list(contenders) if round_ % 2 == 0 else list(contenders)[::-1]  # ABBA
            for name in order:
                rates[name].append(timed_window(contenders[name][0], args.seconds, device))
            print(f"  {resolution} px, round {round_ + 1}: "
                  + ", ".join(f"{n} {r[-1]:.1f} ex/s" for n, r in rates.items()), flush=True)
        for name, (_, dtype) in contenders.items():
            median = statistics.median(rates[name])
            print(f"{resolution:>4} px  {name:<10} {median:>9.1f} ex/s (windows {min(rates[name]):.1f}-"
                  f"{max(rates[name]):.1f})  {median * flops_per_example / 1e9:>7.1f} GFLOP/s = "
                  f"{median * flops_per_example / peaks[dtype]:.0%} of the {str(dtype).removeprefix('torch.')} matmul peak")
        for name in list(contenders)[1:]:
            paired = [b / a for a, b in zip(rates["d2l"], rates[name])]
            print(f"{resolution:>4} px  ratio {name}/d2l: {statistics.median(paired):.2f}x median per round "
                  f"(rounds {min(paired):.2f}-{max(paired):.2f})", flush=True)


if __name__ == "__main__":
    main()
