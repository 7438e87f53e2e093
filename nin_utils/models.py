"""The NiN block and two NiNs (Lin, Chen & Yan, 2014): d2l's, to count, and the paper
authors' MNIST network, to train.

``arch="d2l"`` (``NiN()``, ``d2l_nin()``) is d2l's ImageNet-shaped network, the one students
meet in d2l and on its forum. For a 224x224 input (shapes are channels x H x W)::

    nin_block(1 -> 96, 11x11, stride 4)        96 x 54 x 54
    max pool 3x3, stride 2                      96 x 26 x 26
    nin_block(96 -> 256, 5x5, pad 2)          256 x 26 x 26
    max pool 3x3, stride 2                     256 x 12 x 12
    nin_block(256 -> 384, 3x3, pad 1)         384 x 12 x 12
    max pool 3x3, stride 2                     384 x  5 x  5    <- end of `features`
    dropout 0.5, nin_block(384 -> 10, 3x3)     10 x  5 x  5    <- `classifier` (GAP head)
    global average pooling, flatten            10

From 67 to 98 px its last map is 1x1, so GAP would average one number (2x2 from 99 px, 5x5 from
195 px): the course counts this network but does not train it on a CPU budget.

``arch="mnist"`` (``mnist_nin()``, the network the course trains) is the configuration the
paper's first author released for 28x28x1 MNIST images (``mavenlin/cuda-convnet``, file
``NIN/mnist_def``), Fashion-MNIST's exact shape, so nothing is upsampled::

    nin_block(1 -> 96-64-48, 5x5, pad 2)       48 x 28 x 28
    max pool 3x3, stride 2 (ceil), dropout     48 x 14 x 14
    nin_block(48 -> 128-96-48, 5x5, pad 2)     48 x 14 x 14
    max pool 3x3, stride 2 (ceil), dropout     48 x  7 x  7    <- end of `features`
    nin_block(48 -> 128-96-10, 5x5, pad 2)     10 x  7 x  7    <- `classifier` (GAP head)
    global average pooling over 7 x 7, flatten 10

As released it has dropout 0.5 after both pools and a ReLU on its last 1x1 convolution.
``mnist_nin()`` changes three things, each switchable and shown in chapter 4: BatchNorm
before every ReLU (``batch_norm``, which the paper did not have), no dropout, and no ReLU
before GAP. ``mnist_nin_as_released()`` is the authors' design.

Departures from d2l and from the authors, switchable because chapter 4 teaches why the
defaults differ (``d2l_nin()`` builds d2l's network exactly):

* ``input_norm``: the network normalises its input pixels with the training set's mean and
  std itself, so whoever evaluates it (or its shipped weights) needs no preprocessing
  recipe; d2l feeds pixels in [0, 1].
* ``init="kaiming"``: He initialisation keeps activations from shrinking through many ReLU
  layers; d2l uses Xavier.
* ``final_relu=False``: a ReLU before GAP makes every logit >= 0, and a class channel that
  is all-negative outputs exactly 0 and gets no gradient. Logits need signs.
* ``zero_init_last=True``: the layer that produces the logits starts at zero, so the
  untrained network predicts exactly 1/10 per class (loss ln 10).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import nn

from .counting import output_side, smallest_resolution
from .data import FASHION_MEAN, FASHION_STD
from .errors import UserError

Init = Literal["kaiming", "xavier"]
Arch = Literal["d2l", "mnist"]
FC_WIDTH = 4096  # hidden units of AlexNet's fully connected layers (d2l's "fc" head)
MNIST_WIDTHS = ((96, 64, 48), (128, 96, 48), (128, 96))  # mnist_def; the last block ends in the classes


def nin_block(in_channels: int, out_channels: int | Sequence[int], kernel_size: int, stride: int = 1,
              padding: int = 0, num_1x1: int = 2, final_relu: bool = True,
              batch_norm: bool = False) -> nn.Sequential:
    """An mlpconv block: a ``kernel_size`` conv, then ``num_1x1`` 1x1 convs, each + ReLU.

    The 1x1 convs are a small fully connected network applied at every pixel, across
    channels. ``out_channels`` is one width for every conv (d2l), or a sequence of widths,
    the k x k conv's then each 1x1 conv's (the paper's ``96-64-48``; ``num_1x1`` is then
    ``len(out_channels) - 1``). Input ``(N, in_channels, H, W)`` gives ``(N, widths[-1], H', W')``
    with ``H' = (H + 2*padding - kernel_size) // stride + 1`` (1x1 convs keep the size).
    ``final_relu=False`` drops the last ReLU. ``batch_norm`` puts a BatchNorm before every
    ReLU (its conv then needs no bias).
    """
    widths = [out_channels] * (1 + num_1x1) if isinstance(out_channels, int) else list(out_channels)
    layers: list[nn.Module] = []
    for i, width in enumerate(widths):
        relu = final_relu or i < len(widths) - 1
        k, s, p = (kernel_size, stride, padding) if i == 0 else (1, 1, 0)
        layers.append(nn.Conv2d(in_channels, width, k, s, p, bias=not (batch_norm and relu)))
        if relu:
            layers += [nn.BatchNorm2d(width), nn.ReLU()] if batch_norm else [nn.ReLU()]
        in_channels = width
    return nn.Sequential(*layers)


class NiN(nn.Module):
    """Network in Network for ``(N, in_channels, H, W)`` images -> ``(N, num_classes)`` logits.

    >>> NiN()(torch.zeros(2, 1, 96, 96)).shape       # d2l's network: counted, not trained
    torch.Size([2, 10])
    >>> sum(p.numel() for p in NiN().parameters())
    1992166
    >>> mnist_nin()(torch.zeros(2, 1, 28, 28)).shape  # the authors' MNIST network: trained
    torch.Size([2, 10])

    Args:
        in_channels: image channels (1 for Fashion-MNIST).
        num_classes: number of outputs.
        arch: ``"d2l"`` (ImageNet-shaped, input >= 67 px) or ``"mnist"`` (the authors'
            network for 28x28 images, input >= 4 px); see the module docstring.
        num_1x1: 1x1 convs per NiN block (2 in the paper and d2l; with fewer, the mnist
            widths keep the block's first and last widths).
        head: ``"gap"`` (the last NiN block's class maps, then global average pooling) or
            ``"fc"``: for d2l, AlexNet's (flatten, two hidden layers of 4,096 units with
            dropout, a linear layer); for mnist, the paper's section 4.6 comparison (the
            class maps flattened into one linear layer instead of averaged).
        resolution: the input side the ``"fc"`` head is built for (its linear layer
            depends on it); the GAP head accepts any size >= ``min_resolution``.
        dropout: dropout probability: before the head (d2l), after each pool (mnist).
        head_dropout: mnist ``"fc"`` only: dropout before the linear layer.
        init: ``"kaiming"`` (default) or ``"xavier"`` (d2l).
        final_relu: keep the ReLU between the last conv and GAP (d2l and the authors do).
        zero_init_last: start the logit layer at zero (needs ``final_relu=False``: a ReLU
            at exactly zero passes no gradient).
        batch_norm: a BatchNorm before every ReLU (not in the paper).
        input_norm: ``(mean, std)`` the network subtracts from and divides its input
            pixels (in [0, 1]) by, first thing in ``forward``: Fashion-MNIST's training-set
            statistics by default; ``None`` feeds the pixels as they are (d2l).

    The model has ``features`` (the backbone) and ``classifier`` (the head);
    ``model_args`` holds the arguments that rebuild it (``NiN(**model_args)``), which
    checkpoints store. Inputs with the wrong number of channels, or smaller than
    ``min_resolution``, raise ``ValueError``.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, *, arch: Arch = "d2l",
                 num_1x1: int = 2, head: Literal["gap", "fc"] = "gap", resolution: int | None = None,
                 dropout: float = 0.5, head_dropout: float = 0.0, init: Init = "kaiming",
                 final_relu: bool = False, zero_init_last: bool = True, batch_norm: bool = False,
                 input_norm: Sequence[float] | None = (FASHION_MEAN, FASHION_STD)) -> None:
        super().__init__()
        self.model_args: dict[str, Any] = dict(
            in_channels=in_channels, num_classes=num_classes, arch=arch, num_1x1=num_1x1, head=head,
            resolution=resolution, dropout=dropout, head_dropout=head_dropout, init=init,
            final_relu=final_relu, zero_init_last=zero_init_last, batch_norm=batch_norm,
            input_norm=None if input_norm is None else list(input_norm))
        if zero_init_last and final_relu:
            raise UserError("zero_init_last=True with final_relu=True would leave every logit "
                            "at 0 with no gradient: pass zero_init_last=False (as d2l's NiN).")
        if init not in ("kaiming", "xavier"):
            raise UserError(f"Unknown init {init!r}: use 'kaiming' or 'xavier'.")
        if head not in ("gap", "fc"):
            raise UserError(f"Unknown head {head!r}: use 'gap' or 'fc'.")
        if arch not in ("d2l", "mnist"):
            raise UserError(f"Unknown arch {arch!r}: use 'd2l' or 'mnist'.")
        self.in_channels, self.head, self.init = in_channels, head, init
        self.zero_init_last, self.input_norm = zero_init_last, input_norm
        mean, std = input_norm or (0.0, 1.0)  # buffers follow .to(device); rebuilt from model_args
        self.register_buffer("input_mean", torch.tensor(float(mean)), persistent=False)
        self.register_buffer("input_std", torch.tensor(float(std)), persistent=False)
        build = self._d2l if arch == "d2l" else self._mnist
        self.features, class_block, width = build(in_channels, num_classes, num_1x1, dropout,
                                                  final_relu, batch_norm)
        self.min_resolution = smallest_resolution(self.features)
        self.resolution = resolution if head == "fc" else None
        if head == "gap":
            self.classifier = nn.Sequential(*class_block, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        else:
            if resolution is None:
                raise UserError("head='fc' needs resolution=, the input side its linear layer is built for.")
            if resolution < self.min_resolution:
                raise UserError(f"resolution={resolution} is below the smallest input this NiN accepts "
                                f"({self.min_resolution}x{self.min_resolution}).")
            side = output_side(self.features, resolution)
            if arch == "d2l":
                self.classifier = nn.Sequential(
                    nn.Flatten(),
                    nn.Dropout(dropout), nn.Linear(width * side * side, FC_WIDTH), nn.ReLU(),
                    nn.Dropout(dropout), nn.Linear(FC_WIDTH, FC_WIDTH), nn.ReLU(),
                    nn.Linear(FC_WIDTH, num_classes))
            else:
                self.classifier = nn.Sequential(*class_block, nn.Flatten(), nn.Dropout(head_dropout),
                                                nn.Linear(num_classes * side * side, num_classes))
        self.reset_parameters()

    @staticmethod
    def _d2l(in_channels: int, num_classes: int, num_1x1: int, dropout: float, final_relu: bool,
             batch_norm: bool) -> tuple[nn.Sequential, list[nn.Module], int]:
        """d2l's backbone, and its class block (dropout, then the last NiN block)."""
        features = nn.Sequential(
            nin_block(in_channels, 96, 11, 4, 0, num_1x1, batch_norm=batch_norm), nn.MaxPool2d(3, stride=2),
            nin_block(96, 256, 5, 1, 2, num_1x1, batch_norm=batch_norm), nn.MaxPool2d(3, stride=2),
            nin_block(256, 384, 3, 1, 1, num_1x1, batch_norm=batch_norm), nn.MaxPool2d(3, stride=2))
        block = nin_block(384, num_classes, 3, 1, 1, num_1x1, final_relu, batch_norm)
        return features, [nn.Dropout(dropout), block], 384

    @staticmethod
    def _mnist(in_channels: int, num_classes: int, num_1x1: int, dropout: float, final_relu: bool,
               batch_norm: bool) -> tuple[nn.Sequential, list[nn.Module], int]:
        """The authors' MNIST backbone (two blocks, each pooled with ceil rounding as
        cuda-convnet pools, then dropout), and its class block (the third NiN block)."""
        first, second = (_keep(w, num_1x1) for w in MNIST_WIDTHS[:2])
        features = nn.Sequential(
            nin_block(in_channels, first, 5, 1, 2, batch_norm=batch_norm),
            nn.MaxPool2d(3, stride=2, ceil_mode=True), nn.Dropout(dropout),
            nin_block(first[-1], second, 5, 1, 2, batch_norm=batch_norm),
            nn.MaxPool2d(3, stride=2, ceil_mode=True), nn.Dropout(dropout))
        last = _keep((*MNIST_WIDTHS[2], num_classes), num_1x1) if num_1x1 else [num_classes]
        block = nin_block(second[-1], last, 5, 1, 2, final_relu=final_relu, batch_norm=batch_norm)
        return features, [block], second[-1]

    def reset_parameters(self, init: Init | None = None) -> None:
        """(Re)initialise every conv and linear layer with ``init`` (default: the one the model
        was built with, ``self.init``); biases to zero, BatchNorm to the identity.

        With ``zero_init_last`` the logit layer's weights are zeroed too.
        """
        init = self.init if init is None else init
        if init not in ("kaiming", "xavier"):
            raise UserError(f"Unknown init {init!r}: use 'kaiming' or 'xavier'.")
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()
            if not isinstance(module, (nn.Conv2d, nn.Linear)):
                continue
            if init == "kaiming":
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            else:
                nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        if self.zero_init_last:
            logit_layer = [m for m in self.classifier.modules() if isinstance(m, (nn.Conv2d, nn.Linear))][-1]
            nn.init.zeros_(logit_layer.weight)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` with the fix when ``x`` cannot go through this network."""
        if x.dim() != 4:
            raise ValueError(f"NiN expects a batch of images (N, C, H, W); got shape "
                             f"{tuple(x.shape)}. For one image use x.unsqueeze(0).")
        channels, height, width = x.shape[1:]
        if channels != self.in_channels:
            raise ValueError(f"NiN was built for {self.in_channels} input channel(s) but got "
                             f"{channels}: shape {tuple(x.shape)}. Build NiN(in_channels="
                             f"{channels}) or convert the images.")
        if min(height, width) < self.min_resolution:
            raise ValueError(f"Input {height}x{width} is too small for this NiN: the smallest it "
                             f"accepts is {self.min_resolution}x{self.min_resolution} (its "
                             f"strided convolutions and poolings leave nothing of a smaller one). "
                             f"Resize the images.")
        if self.resolution is not None and (height, width) != (self.resolution,) * 2:
            raise ValueError(f"This NiN has a fully connected head built for "
                             f"{self.resolution}x{self.resolution} inputs; got {height}x{width}. "
                             f"An FC head fixes the input size; the GAP head does not.")

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] -> what ``features`` expects: normalised with ``input_norm``."""
        self.check_input(x)
        return x if self.input_norm is None else (x - self.input_mean) / self.input_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.preprocess(x)))


def _keep(widths: tuple[int, ...], num_1x1: int) -> list[int]:
    """A block's widths with ``num_1x1`` 1x1 convs: the k x k conv's, then the last ones."""
    return [widths[0], *widths[len(widths) - num_1x1:]] if num_1x1 else [widths[0]]


def d2l_nin(**changes: Any) -> NiN:
    """d2l's NiN, unchanged: Xavier init, a ReLU before GAP, random logit layer, raw pixels.

    Same architecture and parameter count as ``NiN()``; ``(N, 1, H, W)`` images
    (H, W >= 67) -> ``(N, 10)`` logits, each >= 0 (the final ReLU). Train it with
    ``Recipe.d2l()`` to reproduce d2l's chapter. ``changes`` override ``NiN`` arguments.

    >>> sum(p.numel() for p in d2l_nin().parameters())
    1992166
    >>> bool((d2l_nin()(torch.randn(2, 1, 67, 67)) >= 0).all())
    True
    """
    return NiN(**{"init": "xavier", "final_relu": True, "zero_init_last": False, "input_norm": None,
                  **changes})


def mnist_nin(**changes: Any) -> NiN:
    """The network the course trains: the authors' MNIST NiN with BatchNorm before every ReLU,
    no dropout and no ReLU before GAP. ``(N, 1, H, W)`` images (H, W >= 4; trained at 28) ->
    ``(N, 10)`` logits, from 10 class maps of 7 x 7 at 28 px. ``changes`` override any
    ``NiN`` argument, e.g. ``mnist_nin(batch_norm=False)``.

    >>> sum(p.numel() for p in mnist_nin().parameters())
    350378
    """
    return NiN(**{"arch": "mnist", "batch_norm": True, "dropout": 0.0, **changes})


def mnist_nin_as_released(**changes: Any) -> NiN:
    """The authors' MNIST NiN as ``NIN/mnist_def`` defines it: dropout 0.5 after both pools,
    a ReLU before GAP, no BatchNorm (349,674 parameters), with Kaiming init in place of their
    Gaussian (std 0.05) and the course's input normalisation.

    >>> sum(p.numel() for p in mnist_nin_as_released().parameters())
    349674
    """
    return NiN(**{"arch": "mnist", "final_relu": True, "zero_init_last": False, **changes})


def class_maps(model: NiN, x: torch.Tensor) -> torch.Tensor:
    """The GAP network's class maps ``(N, num_classes, h, w)``: its output before pooling.

    Averaging map ``c`` over space gives logit ``c`` (the paper's "feature maps
    as category confidence maps"); upsampled, they show where each class is seen.
    """
    if model.head != "gap":
        raise ValueError("Class maps need the GAP head: an FC head mixes all positions.")
    return model.classifier[:-2](model.features(model.preprocess(x)))
