"""Counting parameters and FLOPs: the analytic formulas, checked against torch.

Conventions, stated once:

* A *multiply-add* (MAC) is one multiplication plus one addition. A conv layer
  producing ``C_out x H' x W'`` from ``C_in`` channels with a ``k x k`` kernel does
  ``C_out * H' * W' * C_in * k * k`` MACs; a linear layer ``in -> out`` does ``in * out``.
* ``torch.utils.flop_counter.FlopCounterMode`` counts **2 FLOPs per MAC** and
  ignores biases, ReLU and pooling, so ``count_flops == 2 * total MACs``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def conv_output_size(n: int, kernel: int, stride: int = 1, padding: int = 0, ceil_mode: bool = False) -> int:
    """Output side of a conv or pool: ``floor((n + 2*padding - kernel) / stride) + 1``.

    ``ceil_mode`` (a pool's option, as cuda-convnet pooled) rounds up instead, keeping a last
    window that starts inside the input: 28 -> 14 -> 7 with 3x3 windows at stride 2.
    """
    if not ceil_mode:
        return (n + 2 * padding - kernel) // stride + 1
    side = -(-(n + 2 * padding - kernel) // stride) + 1
    return side - 1 if (side - 1) * stride >= n + padding else side


def output_side(model: nn.Module, resolution: int) -> int:
    """Side of the maps after every conv and pool of ``model``, for a square input.

    Applies ``conv_output_size`` layer by layer; stops early (returning a value < 1)
    once nothing is left, which is how an input below the smallest accepted size fails.

    >>> output_side(nn.Sequential(nn.Conv2d(1, 1, 5), nn.MaxPool2d(2)), 28)
    12
    """
    side = resolution
    for layer in model.modules():
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
            kernel, stride, padding = (_first(layer.kernel_size), _first(layer.stride),
                                       _first(layer.padding))
            side = conv_output_size(side, kernel, stride, padding, getattr(layer, "ceil_mode", False))
            if side < 1:
                break
    return side


def smallest_resolution(model: nn.Module) -> int:
    """The smallest square input whose maps stay at least 1 x 1 through every conv and pool."""
    resolution = 1
    while output_side(model, resolution) < 1:
        resolution += 1
    return resolution


def _first(value: int | tuple[int, ...]) -> int:
    """Conv2d stores ``(k, k)``, MaxPool2d stores ``k``: one side of either."""
    return value[0] if isinstance(value, tuple) else value


def count_params(model: nn.Module) -> int:
    """Total number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def params_by_layer(model: nn.Module) -> dict[str, int]:
    """Parameters of each layer that has any, keyed by the layer's dotted name."""
    return {name: sum(p.numel() for p in module.parameters(recurse=False))
            for name, module in model.named_modules()
            if any(True for _ in module.parameters(recurse=False))}


@dataclass(frozen=True)
class LayerRow:
    """One layer of a ``layer_table``: what it is, its output and its cost for one image."""

    name: str
    layer: str  # e.g. "Conv2d(1, 96, 11x11, s4)"
    output_shape: tuple[int, ...]  # (C, H, W) or (features,), batch dimension dropped
    params: int
    macs: int


@dataclass(frozen=True)
class LayerTable:
    """Per-layer shapes, parameters and multiply-adds; ``print()`` it for a table."""

    input_shape: tuple[int, ...]
    rows: tuple[LayerRow, ...]

    @property
    def total_params(self) -> int:
        return sum(row.params for row in self.rows)

    @property
    def total_macs(self) -> int:
        return sum(row.macs for row in self.rows)

    @property
    def total_flops(self) -> int:
        """FLOPs under FlopCounterMode's convention: 2 per multiply-add."""
        return 2 * self.total_macs

    def __str__(self) -> str:
        lines = [f"{'layer':<24}{'kind':<30}{'output shape':>16}{'params':>12}{'MACs':>16}",
                 f"{'input':<24}{'':<30}{_shape(self.input_shape):>16}"]
        lines += [f"{row.name:<24}{row.layer:<30}{_shape(row.output_shape):>16}"
                  f"{row.params:>12,}{row.macs:>16,}" for row in self.rows]
        lines.append(f"{'total':<24}{'':<30}{'':>16}{self.total_params:>12,}{self.total_macs:>16,}")
        lines.append(f"= {self.total_flops:,} FLOPs (2 per multiply-add) = "
                     f"{self.total_flops / 1e9:.2f} GFLOPs per image")
        return "\n".join(lines)


def layer_table(model: nn.Module, resolution: int | tuple[int, int], in_channels: int | None = None
                ) -> LayerTable:
    """Run one image through ``model`` and tabulate every leaf layer.

    ``resolution`` is a side length or ``(H, W)``; ``in_channels`` defaults to
    ``model.in_channels`` (or 1). Each row has the output shape (no batch
    dimension), the parameter count and the analytic multiply-adds.
    """
    height, width = (resolution, resolution) if isinstance(resolution, int) else resolution
    channels = in_channels or getattr(model, "in_channels", 1)
    rows: list[LayerRow] = []

    def record(name: str):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            rows.append(LayerRow(name, _describe(module), tuple(output.shape[1:]),
                                 sum(p.numel() for p in module.parameters()),
                                 _macs(module, output)))
        return hook

    leaves = [(name, m) for name, m in model.named_modules() if not list(m.children())]
    handles = [m.register_forward_hook(record(name)) for name, m in leaves]
    try:
        forward_zeros(model, (1, channels, height, width))
    finally:
        for handle in handles:
            handle.remove()
    return LayerTable((channels, height, width), tuple(rows))


def count_flops(model: nn.Module, resolution: int | tuple[int, int], in_channels: int | None = None
                ) -> int:
    """FLOPs of one forward pass on one image, by ``FlopCounterMode`` (2 per multiply-add)."""
    height, width = (resolution, resolution) if isinstance(resolution, int) else resolution
    channels = in_channels or getattr(model, "in_channels", 1)
    counter = FlopCounterMode(display=False)
    with counter:
        forward_zeros(model, (1, channels, height, width))
    return counter.get_total_flops()


def forward_zeros(model: nn.Module, shape: tuple[int, int, int, int]) -> torch.Tensor:
    """One eval-mode forward pass on zeros, restoring the model's train/eval mode after."""
    parameter = next(model.parameters(), torch.empty(0))  # a model may have no parameters
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(torch.zeros(shape, device=parameter.device, dtype=parameter.dtype))
    finally:
        model.train(was_training)


def _macs(module: nn.Module, output: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        per_output = module.in_channels // module.groups * kh * kw
        return output[0].numel() * per_output
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features
    return 0


def _describe(module: nn.Module) -> str:
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        extras = "".join(f", {key}{value[0]}" for key, value in
                         (("s", module.stride), ("p", module.padding)) if value[0] != (1 if key == "s" else 0))
        return f"Conv2d({module.in_channels}, {module.out_channels}, {kh}x{kw}{extras})"
    if isinstance(module, nn.MaxPool2d):
        return f"MaxPool2d({module.kernel_size}, s{module.stride}{', ceil' if module.ceil_mode else ''})"
    if isinstance(module, nn.Linear):
        return f"Linear({module.in_features}, {module.out_features})"
    return type(module).__name__


def _shape(shape: tuple[int, ...]) -> str:
    return " x ".join(str(d) for d in shape)
