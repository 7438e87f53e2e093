"""The NiN block and the NiN network (Lin, Chen & Yan, 2013), as d2l builds it.

Architecture for a 224x224 input (d2l's version; shapes are channels x H x W)::

    nin_block(1 -> 96, 11x11, stride 4)        96 x 54 x 54
    max pool 3x3, stride 2                      96 x 26 x 26
    nin_block(96 -> 256, 5x5, pad 2)          256 x 26 x 26
    max pool 3x3, stride 2                     256 x 12 x 12
    nin_block(256 -> 384, 3x3, pad 1)         384 x 12 x 12
    max pool 3x3, stride 2                     384 x  5 x  5    <- end of `features`
    dropout 0.5, nin_block(384 -> 10, 3x3)     10 x  5 x  5    <- `classifier` (GAP head)
    global average pooling, flatten            10

Four departures from d2l are switchable, because chapter 4 teaches why the
defaults differ; ``d2l_nin()`` builds d2l's network exactly:

* ``input_norm``: the network normalises its input pixels with the training
  set's mean and std itself, so whoever evaluates it (or the shipped weights)
  needs no preprocessing recipe; d2l feeds pixels in [0, 1].

* ``init="kaiming"``: He initialisation keeps activations from shrinking
  through twelve ReLU layers; with Xavier the net sits at loss ln 10 for
  hundreds of steps.
* ``final_relu=False``: d2l ends with a ReLU before GAP, so every logit is >= 0
  and a class channel that is all-negative at init outputs exactly 0 and gets
  no gradient (4-5 of the 10 channels are dead at Xavier init). Logits need
  signs; the ReLU adds no parameters, so counts are the same either way.
* ``zero_init_last=True``: the layer that produces the logits starts at zero,
  so the untrained network predicts exactly 1/10 per class (loss ln 10).
  Random logits from a deep ReLU stack start the loss near 2.5 and their large
  first gradients switch off ReLUs for good; measured on CPU, Adam at 2e-3
  then collapses to loss 2.30, while the zero-initialised net learns.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from .counting import output_side, smallest_resolution
from .data import FASHION_MEAN, FASHION_STD
from .errors import UserError

Init = Literal["kaiming", "xavier"]
FC_WIDTH = 4096  # hidden units of AlexNet's fully connected layers (the "fc" head)


def nin_block(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
              padding: int = 0, num_1x1: int = 2, final_relu: bool = True) -> nn.Sequential:
    """An mlpconv block: a ``kernel_size`` conv, then ``num_1x1`` 1x1 convs, each + ReLU.

    The 1x1 convs are a small fully connected network applied at every pixel,
    across channels. Input ``(N, in_channels, H, W)`` gives
    ``(N, out_channels, H', W')`` with ``H' = (H + 2*padding - kernel_size) // stride + 1``
    (1x1 convs keep the size). ``final_relu=False`` drops the last ReLU.
    """
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding),
                               nn.ReLU()]
    for _ in range(num_1x1):
        layers += [nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU()]
    if not final_relu:
        layers.pop()
    return nn.Sequential(*layers)


class NiN(nn.Module):
    """Network in Network for ``(N, in_channels, H, W)`` images -> ``(N, num_classes)`` logits.

    >>> net = NiN()
    >>> net(torch.zeros(2, 1, 96, 96)).shape
    torch.Size([2, 10])
    >>> sum(p.numel() for p in net.parameters())
    1992166

    Args:
        in_channels: image channels (1 for Fashion-MNIST).
        num_classes: number of outputs.
        num_1x1: 1x1 convs per NiN block (2 in the paper and d2l).
        head: ``"gap"`` (a NiN block to ``num_classes`` maps, then global average
            pooling) or ``"fc"`` (AlexNet-style: flatten, two hidden fully connected
            layers of 4,096 units with dropout, then a linear layer).
        resolution: the input side the ``"fc"`` head is built for (its first linear
            layer depends on it); the GAP head accepts any size >= ``min_resolution``.
        dropout: dropout probability before the head.
        init: ``"kaiming"`` (default) or ``"xavier"`` (d2l).
        final_relu: keep the ReLU between the last conv and GAP (d2l does).
        zero_init_last: start the logit layer at zero (needs ``final_relu=False``:
            a ReLU at exactly zero passes no gradient).
        input_norm: ``(mean, std)`` the network subtracts from and divides its input
            pixels (in [0, 1]) by, first thing in ``forward``: Fashion-MNIST's training-set
            statistics by default; ``None`` feeds the pixels as they are (d2l).

    The model has ``features`` (the three backbone blocks with pooling) and
    ``classifier`` (the head); ``model_args`` holds the arguments that rebuild it
    (``NiN(**model_args)``), which checkpoints store. Inputs with the wrong number of channels, or
    smaller than ``min_resolution`` (67 px), raise ``ValueError``.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, *, num_1x1: int = 2,
                 head: Literal["gap", "fc"] = "gap", resolution: int = 224,
                 dropout: float = 0.5, init: Init = "kaiming",
                 final_relu: bool = False, zero_init_last: bool = True,
                 input_norm: tuple[float, float] | None = (FASHION_MEAN, FASHION_STD)) -> None:
        super().__init__()
        self.model_args = dict(in_channels=in_channels, num_classes=num_classes, num_1x1=num_1x1,
                               head=head, resolution=resolution, dropout=dropout, init=init,
                               final_relu=final_relu, zero_init_last=zero_init_last,
                               input_norm=None if input_norm is None else list(input_norm))
        if zero_init_last and final_relu:
            raise UserError("zero_init_last=True with final_relu=True would leave every logit "
                             "at 0 with no gradient: pass zero_init_last=False (as d2l's NiN).")
        self.in_channels = in_channels
        self.head = head
        self.input_norm = input_norm
        mean, std = input_norm or (0.0, 1.0)  # buffers follow .to(device); rebuilt from model_args
        self.register_buffer("input_mean", torch.tensor(float(mean)), persistent=False)
        self.register_buffer("input_std", torch.tensor(float(std)), persistent=False)
        self.features = nn.Sequential(
            nin_block(in_channels, 96, kernel_size=11, stride=4, padding=0, num_1x1=num_1x1),
            nn.MaxPool2d(3, stride=2),
            nin_block(96, 256, kernel_size=5, stride=1, padding=2, num_1x1=num_1x1),
            nn.MaxPool2d(3, stride=2),
            nin_block(256, 384, kernel_size=3, stride=1, padding=1, num_1x1=num_1x1),
            nn.MaxPool2d(3, stride=2),
        )
        self.min_resolution = smallest_resolution(self.features)
        if head == "gap":
            self.classifier = nn.Sequential(
                nn.Dropout(dropout),
                nin_block(384, num_classes, kernel_size=3, stride=1, padding=1,
                          num_1x1=num_1x1, final_relu=final_relu),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            )
            self.resolution = None
        elif head == "fc":
            if resolution < self.min_resolution:
                raise UserError(f"resolution={resolution} is below the smallest input NiN "
                                 f"accepts ({self.min_resolution}x{self.min_resolution}).")
            side = output_side(self.features, resolution)
            self.classifier = nn.Sequential(
                nn.Flatten(),
                nn.Dropout(dropout), nn.Linear(384 * side * side, FC_WIDTH), nn.ReLU(),
                nn.Dropout(dropout), nn.Linear(FC_WIDTH, FC_WIDTH), nn.ReLU(),
                nn.Linear(FC_WIDTH, num_classes),
            )
            self.resolution = resolution
        else:
            raise UserError(f"Unknown head {head!r}: use 'gap' or 'fc'.")
        self.zero_init_last = zero_init_last
        self.init = init
        self.reset_parameters()

    def reset_parameters(self, init: Init | None = None) -> None:
        """(Re)initialise every conv and linear layer with ``init`` (default: the one the model
        was built with, ``self.init``); biases to zero.

        With ``zero_init_last`` the logit layer's weights are zeroed too.
        """
        init = self.init if init is None else init
        if init not in ("kaiming", "xavier"):
            raise UserError(f"Unknown init {init!r}: use 'kaiming' or 'xavier'.")
        for module in self.modules():
            if not isinstance(module, (nn.Conv2d, nn.Linear)):
                continue
            if init == "kaiming":
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            else:
                nn.init.xavier_uniform_(module.weight)
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
            raise ValueError(f"Input {height}x{width} is too small for NiN: the smallest it "
                             f"accepts is {self.min_resolution}x{self.min_resolution} (three "
                             f"stride-2 poolings after a stride-4 conv). Resize the images, "
                             f"e.g. to 96 or 224 px.")
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


def d2l_nin(*, in_channels: int = 1, num_classes: int = 10) -> NiN:
    """d2l's NiN, unchanged: Xavier init, a ReLU before GAP, random logit layer.

    Same architecture and parameter count as ``NiN()``; ``(N, in_channels, H, W)``
    images (H, W >= 67) -> ``(N, num_classes)`` logits, each >= 0 (the final ReLU).
    Train it with ``Recipe.d2l()`` to reproduce d2l's chapter.

    >>> sum(p.numel() for p in d2l_nin().parameters())
    1992166
    >>> bool((d2l_nin()(torch.randn(2, 1, 67, 67)) >= 0).all())
    True
    """
    return NiN(in_channels, num_classes, init="xavier", final_relu=True, zero_init_last=False,
               input_norm=None)


def class_maps(model: NiN, x: torch.Tensor) -> torch.Tensor:
    """The GAP network's class maps ``(N, num_classes, h, w)``: its output before pooling.

    Averaging map ``c`` over space gives logit ``c`` (the paper's "feature maps
    as category confidence maps"); upsampled, they show where each class is seen.
    """
    if model.head != "gap":
        raise ValueError("Class maps need the GAP head: an FC head mixes all positions.")
    return model.classifier[:2](model.features(model.preprocess(x)))
