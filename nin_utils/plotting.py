"""Figures for the notebooks: training curves (also live), seed spreads, means ± sd over seeds,
image grids, channel maps, class maps, NiN's architecture and a ring all-reduce."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from .counting import layer_table
from .data import CHANCE_LOSS, FASHION_CLASSES
from .evidence import mean_and_sd
from .training import Callback, EpochStats


def plot_history(histories: dict[str, list[EpochStats]] | list[EpochStats], title: str = "") -> Figure:
    """Loss and accuracy per epoch; pass ``{"label": history, ...}`` to compare runs."""
    if not isinstance(histories, dict):
        histories = {"": histories}
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.5))
    for (label, history), color in zip(histories.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        epochs = [s.epoch for s in history]
        prefix = f"{label} " if label else ""
        # The within-epoch loss points, each at its fraction of the epoch; accuracy once per epoch.
        steps = [(s.epoch - 1 + (i + 1) / len(s.step_losses), loss)
                 for s in history for i, loss in enumerate(s.step_losses)]
        loss_ax.plot([x for x, _ in steps], [y for _, y in steps], "-", color=color, alpha=0.5, lw=1)
        loss_ax.plot(epochs, [s.train_loss for s in history], "o-", color=color, label=f"{prefix}train (epoch mean)")
        acc_ax.plot(epochs, [s.train_acc for s in history], "o--", color=color, label=f"{prefix}train")
        acc_ax.plot(epochs, [s.test_acc for s in history], "o-", color=color, label=f"{prefix}test")
    loss_ax.axhline(CHANCE_LOSS, color="gray", lw=0.8, ls=":", label="ln 10 (uniform guess)")
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy", title="training loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1))
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


class LivePlot(Callback):
    """A ``fit`` callback that redraws the curves in place in a notebook after every epoch."""

    def __init__(self, title: str = "") -> None:
        self.title = title
        self.handle = None

    def on_epoch_end(self, history: list[EpochStats]) -> None:
        from IPython.display import display

        fig = plot_history(history, self.title)
        if self.handle is None:
            self.handle = display(fig, display_id=True)
        else:
            self.handle.update(fig)
        plt.close(fig)


def plot_confusion(confusion: torch.Tensor, title: str = "") -> Figure:
    """A 10 x 10 confusion matrix: rows are true classes, columns predictions, counts in the cells."""
    confusion = confusion.detach().cpu()
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    ax.imshow(confusion.numpy(), cmap="Blues")
    for (true, guess), count in zip(torch.cartesian_prod(torch.arange(10), torch.arange(10)).tolist(),
                                    confusion.flatten().tolist()):
        if count:
            ax.text(guess, true, count, ha="center", va="center", fontsize=7,
                    color="white" if count > confusion.max() / 2 else "black")
    ax.set_xticks(range(10), FASHION_CLASSES, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(10), FASHION_CLASSES, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    return fig


def show_images(images: torch.Tensor, labels: Sequence[int], predictions: Sequence[int] | None = None,
                ncols: int = 8, scale: float = 1.4) -> Figure:
    """A grid of ``(N, H, W)`` or ``(N, 1, H, W)`` images titled with class names.

    With ``predictions``, titles read "predicted (true)" and mistakes are red.
    """
    images = images.detach().float().cpu().reshape(len(images), *images.shape[-2:])
    nrows = -(-len(images) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * scale, nrows * scale * 1.15), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= len(images):
            continue
        ax.imshow(images[i].numpy(), cmap="gray_r")
        true = FASHION_CLASSES[int(labels[i])]
        if predictions is None:
            ax.set_title(true, fontsize=8)
        else:
            guess = FASHION_CLASSES[int(predictions[i])]
            ax.set_title(f"{guess}\n({true})", fontsize=8, color="black" if guess == true else "red")
    fig.tight_layout()
    return fig


def show_maps(maps: torch.Tensor, titles: Sequence[str] | None = None, ncols: int = 10,
              cmap: str = "viridis", scale: float = 1.3) -> Figure:
    """A grid of 2-D maps ``(N, H, W)``: feature maps, class maps, weights."""
    maps = maps.detach().float().cpu()
    nrows = -(-len(maps) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * scale, nrows * scale * 1.1), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(maps):
            ax.imshow(maps[i].numpy(), cmap=cmap)
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    return fig


def overlay_maps(images: torch.Tensor, maps: torch.Tensor, titles: Sequence[str] | None = None,
                 alpha: float = 0.5, scale: float = 1.6) -> Figure:
    """Class maps as heat over their images, one panel each, on one shared colour scale.

    ``images`` is ``(N, 1, H, W)`` (model input), ``maps`` is ``(N, h, w)``: each map is
    upsampled bilinearly to ``H x W`` so coarse evidence lands where it came from. All
    panels share one colour scale (the colour bar gives the logit values), so a flat
    map looks flat instead of being stretched to full contrast.
    """
    images = images.detach().float().cpu()
    heat = torch.nn.functional.interpolate(maps.detach().float().cpu()[:, None], size=images.shape[-2:],
                                           mode="bilinear", align_corners=False)
    low, high = heat.min().item(), heat.max().item()
    fig, axes = plt.subplots(1, len(images), figsize=(len(images) * scale + 0.8, scale * 1.15), squeeze=False,
                             layout="constrained")
    for i, ax in enumerate(axes.flat):
        ax.imshow(images[i, 0].numpy(), cmap="gray_r")
        shown = ax.imshow(heat[i, 0].numpy(), cmap="jet", alpha=alpha, vmin=low, vmax=high)
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
        ax.axis("off")
    fig.colorbar(shown, ax=axes.ravel().tolist(), shrink=0.8, label="class score (logit)")
    return fig


def plot_seed_spread(results: dict[str, list[float]], title: str = "", quantity: str = "test accuracy") -> Figure:
    """One row per variant: every seed's value as a dot, the mean ± standard deviation as a bar.

    Two variants differ only where their bars do not overlap; overlapping bars mean
    the seeds cannot tell them apart at that budget.
    """
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(results) + 1.2), layout="constrained")
    for row, (label, values) in enumerate(results.items()):
        mean, sd = mean_and_sd(values)
        ax.errorbar(mean, row, xerr=sd, fmt="s", color="C0", capsize=4, ms=6, zorder=2)
        ax.plot(values, [row] * len(values), "o", color="C1", alpha=0.7, ms=4, zorder=3)
    ax.set_yticks(range(len(results)), list(results))
    ax.invert_yaxis()
    ax.set(xlabel=f"{quantity} (dots: seeds; square and bar: mean ± sd)", title=title)
    ax.grid(axis="x", alpha=0.3)
    return fig


def plot_mean_sd(series: dict[str, dict[float, list[float]]], xlabel: str, ylabel: str = "test accuracy",
                 title: str = "", ax: plt.Axes | None = None) -> Figure:
    """One line per series through its mean at each x, with a bar of ± one sample standard
    deviation where there are several values (one per seed): ``{label: {x: [values]}}``.

    ``x`` may be a number or a number's string (JSON keys). Draws into ``ax`` when given
    (for panels side by side) and returns its figure.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    for label, points in series.items():
        xs = sorted(points, key=float)
        means, sds = zip(*(mean_and_sd(points[x]) for x in xs))
        ax.errorbar([float(x) for x in xs], means, yerr=sds, fmt="o-", ms=4, capsize=3, label=label)
    if all(float(x).is_integer() for points in series.values() for x in points):
        ax.xaxis.get_major_locator().set_params(integer=True)  # epochs, pixels: no 0.5 ticks
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax.figure


def draw_ring_all_reduce(processes: int = 4) -> Figure:
    """A ring all-reduce step by step: one grid per step (rows: processes, columns: the chunks of
    the gradient), each cell listing whose gradients that copy of the chunk sums so far. The
    schedule is chapter 6's exercise 2, so it lives here and not in the student's notebook."""
    n = processes
    held = [[{p} for _ in range(n)] for p in range(n)]  # held[p][c]: whose chunk c p's copy sums
    states = [("start", [[set(s) for s in row] for row in held])]
    for phase, chunk_sent in (("reduce-scatter", lambda p, step: (p - step) % n),
                              ("all-gather", lambda p, step: (p + 1 - step) % n)):
        for step in range(n - 1):
            messages = [(p, chunk_sent(p, step), set(held[p][chunk_sent(p, step)])) for p in range(n)]
            for p, c, values in messages:  # all send at once, each to the next process
                receiver = held[(p + 1) % n]
                receiver[c] = receiver[c] | values if phase == "reduce-scatter" else values
            states.append((f"{phase} {step + 1}", [[set(s) for s in row] for row in held]))
    fig, axes = plt.subplots(1, len(states), figsize=(2.1 * len(states), 2.6), layout="constrained")
    for ax, (title, grid) in zip(axes, states):
        ax.imshow([[len(s) for s in row] for row in grid], cmap="Blues", vmin=0, vmax=n + 1)
        for p, row in enumerate(grid):
            for c, s in enumerate(row):
                ax.text(c, p, "".join(map(str, sorted(s))), ha="center", va="center", fontsize=8,
                        color="white" if len(s) == n else "black")  # white: the whole sum
        ax.set(xticks=range(n), yticks=range(n), xlabel="chunk")
        ax.set_title(title, fontsize=9)
    axes[0].set_ylabel("process")
    return fig


def draw_architecture(model: torch.nn.Module, resolution: int, title: str = "") -> Figure:
    """A diagram of ``model``'s layers at ``resolution`` px: one box per conv or pooling layer,
    its height growing with the map side and its width with the channels, the output shape
    below it; a bracket marks each NiN (mlpconv) block: a k x k conv and its 1 x 1 convs."""
    table = layer_table(model, resolution)
    modules = dict(model.named_modules())
    colours = {"conv": "tab:blue", "1x1": "tab:orange", "pool": "tab:green", "gap": "tab:red"}
    boxes = [("input", table.input_shape, "lightgray")]
    for row in table.rows:
        module = modules[row.name]
        if isinstance(module, torch.nn.Conv2d):
            boxes.append((row.layer.removeprefix("Conv2d"), row.output_shape,
                          colours["1x1" if module.kernel_size == (1, 1) else "conv"]))
        elif isinstance(module, torch.nn.MaxPool2d):
            boxes.append((f"max pool {module.kernel_size}x{module.kernel_size}, s{module.stride}",
                          row.output_shape, colours["pool"]))
        elif isinstance(module, torch.nn.AdaptiveAvgPool2d):
            boxes.append(("global avg pool", row.output_shape, colours["gap"]))
    last_conv = max(i for i, row in enumerate(table.rows) if isinstance(modules[row.name], torch.nn.Conv2d))
    relu_after_last = any(isinstance(modules[row.name], torch.nn.ReLU) for row in table.rows[last_conv:])
    fig, ax = plt.subplots(figsize=(12, 3.8), layout="constrained")
    x, block_start, blocks = 0.0, None, 0
    for i, (label, shape, colour) in enumerate(boxes):
        channels, side = shape[0], shape[-1] if len(shape) == 3 else 1
        width = 0.15 + 0.08 * math.log2(channels)
        height = 0.6 + 0.5 * math.log2(side)
        ax.add_patch(plt.Rectangle((x, -height / 2), width, height, color=colour, alpha=0.85))
        ax.text(x + width / 2, -height / 2 - 0.3, " x ".join(map(str, shape)), ha="center", va="top",
                fontsize=7, rotation=90)
        ax.text(x + width / 2, height / 2 + 0.2, label, ha="center", va="bottom", fontsize=7, rotation=90)
        if colour == colours["conv"]:
            block_start = x
        last_of_block = i + 1 == len(boxes) or boxes[i + 1][2] != colours["1x1"]
        if colour == colours["1x1"] and block_start is not None and last_of_block:
            blocks += 1
            ax.plot([block_start, x + width], [-7.0, -7.0], color="gray", lw=2)
            ax.text((block_start + x + width) / 2, -7.2, f"NiN block {blocks}", ha="center", va="top", fontsize=8)
            block_start = None
        x += width + 0.35
    for kind, colour in colours.items():
        ax.plot([], [], "s", color=colour, label={"conv": "k x k conv + ReLU", "1x1": "1 x 1 conv + ReLU" + ("" if relu_after_last else " (not the last)"),
                                                   "pool": "max pooling", "gap": "global average pooling"}[kind])
    ax.legend(loc="upper right", fontsize=8, ncols=4, frameon=False)
    ax.set(xlim=(-0.3, x), ylim=(-8.2, 8.5), title=title or f"NiN at {resolution} x {resolution} px "
           f"(box height ~ log(side), width ~ log(channels))")
    ax.axis("off")
    return fig
