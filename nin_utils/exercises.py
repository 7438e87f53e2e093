"""Checkers for chapter 5's exercises: each prints ✅ or ❌ with a hint and returns True/False.

Every ``check_*`` takes the student's answer as an argument (usually the function they
wrote, which the checker calls) and reads nothing else from the notebook. No checker raises
on a wrong or unfinished answer: a stub that still raises ``NotImplementedError`` gets "Not
done yet", and any other error is reported with its message.

A network an answer returns is judged as ``nin_utils.answers`` rebuilds it from its layers,
here as in the class grader (``grading/``), which runs these checkers outside the student's
process on what their functions returned; so a check in the notebook and the grade agree.

Where an answer is a parameter count the student must derive, the checker keeps only its SHA-256
digest (``ANSWER_DIGESTS``), so that reading the checker does not show the number. That hides it
from a glance, nothing more: a digest of a number this size is reversed by trying them all in
seconds, and ``count_params`` computes it. Hints name the formula, never the value.
``tests/test_exercises.py`` recomputes every digest from its own reference solutions.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import math
import numbers
import re
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .answers import NotDescribable, describe, rebuild
from .config import MODES, TRAIN_SIZE, Budget, seed_everything
from .counting import count_flops, count_params, forward_zeros, layer_table
from .data import FashionMNISTData, load_fashion_mnist
from .models import NiN, mnist_nin
from .training import Recipe, fit

BlockSpec = tuple[int, int, int, int]  # (out_channels, kernel, stride, padding)

# d2l's NiN backbone as block specs; a NiN block to 10 classes and GAP follow it.
D2L_NIN_CONFIG: list[BlockSpec] = [(96, 11, 4, 0), (256, 5, 1, 2), (384, 3, 1, 1)]
DEEPER_CONFIG: list[BlockSpec] = [*D2L_NIN_CONFIG, (512, 3, 1, 1)]  # exercise 8's second case

# Exercise 6's cases: (model builder, batch size, resolution); the second catches hard-coded numbers.
MEMORY_CASES = {"nin-128-224": (NiN, 128, 224), "rgb-8-96": (lambda: NiN(in_channels=3), 8, 96)}

# SHA-256 digests (first 16 hex digits) of ``repr(answer)``.
ANSWER_DIGESTS = {
    "one_1x1_params": "611e77573f8f329a",
    "3x3_params": "b1c74715a460e720",
    "deeper_params": "ee1c901373ff5b93",
    "wide_head_64": "a230d3b7e60f62b7",
}


def answer_digest(value: Any) -> str:
    """The digest ``ANSWER_DIGESTS`` stores for ``value``."""
    return hashlib.sha256(repr(value).encode()).hexdigest()[:16]


def _is_answer(value: Any, key: str) -> bool:
    return answer_digest(value) == ANSWER_DIGESTS[key]


class _Wrong(Exception):
    """A check failed; the message is the hint shown to the student."""


def _expect(condition: bool, hint: str) -> None:
    if not condition:
        raise _Wrong(hint)


def _checker(check: Callable[..., str]) -> Callable[..., bool]:
    """Wrap ``check`` (returns the success message, raises ``_Wrong``) to print ✅/❌ and return a bool."""

    @functools.wraps(check)
    def wrapper(*args: Any, **kwargs: Any) -> bool:
        try:
            message = check(*args, **kwargs)
        except NotImplementedError:
            print("❌ Not done yet: fill in the cell above (it still raises NotImplementedError).")
            return False
        except _Wrong as wrong:
            print(f"❌ {wrong}")
            return False
        except Exception as error:  # the student's code failed: report it, never raise
            print(f"❌ Running your code raised {type(error).__name__}: {error}")
            return False
        print(f"✅ {message}")
        return True

    wrapper.__signature__ = inspect.signature(check).replace(return_annotation="bool")
    return wrapper


# ----------------------------------------------------------------------------- helpers

def _convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def _convs_per_block(model: nn.Module) -> list[int]:
    """Convs per NiN block, in order: a conv with a kernel larger than 1x1 starts a new block."""
    counts: list[int] = []
    for conv in _convs(model):
        if conv.kernel_size != (1, 1) or not counts:
            counts.append(0)
        counts[-1] += 1
    return counts


def _output_shape(model: nn.Module, size: int, channels: int = 1, batch: int = 2) -> tuple[int, ...]:
    """Output shape for a batch of zeros ``(batch, channels, size, size)``, in eval mode."""
    return tuple(forward_zeros(model, (batch, channels, size, size)).shape)


def _conv_shapes(model: nn.Module, size: int) -> list[tuple[int, ...]]:
    """Output shape of every conv for one ``size``-px image, from ``layer_table``."""
    return [row.output_shape for row in layer_table(model, size).rows if row.layer.startswith("Conv")]


def _expect_logits(model: nn.Module, size: int, which: str = "") -> None:
    """Fail unless a batch of two ``size``-px images gives 10 logits each: shape ``(2, 10)``."""
    shape = _output_shape(model, size)
    _expect(shape == (2, 10), f"A batch of two {size}-px images{which} gave shape {shape}; "
            f"expected (2, 10).")


def _accepts(model: nn.Module, size: int) -> bool:
    """Whether ``size``-px images go through; an error that is not about their size is raised."""
    try:
        _output_shape(model, size)
    except (RuntimeError, ValueError) as error:
        if re.search(r"size|shape|small", str(error), re.IGNORECASE):
            return False
        raise
    return True


def _module(value: Any, name: str) -> nn.Module:
    """The network ``name`` returned, rebuilt from its layers as the grader rebuilds it."""
    forgot = " Did you forget the `return`?" if value is None else ""
    _expect(isinstance(value, nn.Module),
            f"{name} should return an nn.Module; it returned {type(value).__name__}.{forgot}")
    try:
        return rebuild(describe(value))
    except NotDescribable as why:
        raise _Wrong(f"{name}: {why}") from None


def _layer_kinds(model: nn.Module) -> list[str]:
    """The layers in the order they run, dropout and identities left out: ``["3x3 conv", "ReLU", ...]``."""
    kinds = []
    for layer in model.modules():
        if list(layer.children()) or isinstance(layer, (nn.Dropout, nn.Identity)):
            continue
        if isinstance(layer, nn.Conv2d):
            kinds.append(f"{layer.kernel_size[0]}x{layer.kernel_size[1]} conv"
                         + (f" (padding {layer.padding[0]})" if layer.padding != (0, 0) else ""))
        elif isinstance(layer, nn.AdaptiveAvgPool2d) and layer.output_size in (1, (1, 1)):
            kinds.append("global average pooling")
        else:
            kinds.append(type(layer).__name__)
    return kinds


def _mb(num_bytes: float) -> str:
    return f"{num_bytes / 1e6:,.1f} MB"


# ----------------------------------------------------------------------------- exercise 1

@_checker
def check_drop_one_1x1(build_nin_one_1x1: Callable[[], nn.Module]) -> str:
    """Exercise 1: a NiN with one 1x1 conv per block (two convs per block)."""
    model = _module(build_nin_one_1x1(), "build_nin_one_1x1()")
    params, standard = count_params(model), count_params(NiN())
    _expect(params != standard, f"{params:,} parameters: that is the standard NiN, with two 1x1 "
            f"convs per block. Keep only one in every block.")
    layout = _convs_per_block(model)
    _expect(layout == [2, 2, 2, 2], f"Convs per NiN block: {layout}. Expected 4 blocks of 2 convs "
            f"each (the k x k conv, then one 1x1 conv).")
    _expect(_is_answer(params, "one_1x1_params"), f"{params:,} parameters, which is not NiN with one "
            f"1x1 conv per block. Keep NiN's channels (96, 256, 384, 10), kernels (11, 5, 3, 3) "
            f"and the biases.")
    _expect_logits(model, 96)
    return (f"{params:,} parameters ({standard - params:,} fewer than NiN's {standard:,}), "
            f"2 convs per block, output (2, 10) at 96 px.")


# ----------------------------------------------------------------------------- exercise 2

COUNTING_CASES = [(1, 224), (3, 96), (1, 67)]  # (in_channels, resolution): the first is d2l's setting


class _ByHand(TorchFunctionMode):
    """Inside it every torch call fails: exercise 2 counts with formulas, not with a network."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        raise _Wrong(f"count_by_hand used torch ({getattr(func, '__name__', func)}): count from the formulas "
                     f"alone, with Python numbers, without building a network or calling count_params, "
                     f"layer_table or count_flops.")


@_checker
def check_counting(count_by_hand: Callable[[int, int], dict[str, int]]) -> str:
    """Exercise 2: NiN's parameters and multiply-adds for any input channels and resolution, by formula."""
    for in_channels, resolution in COUNTING_CASES:
        with _ByHand():
            answer = count_by_hand(in_channels, resolution)
        where = f"count_by_hand({in_channels}, {resolution})"
        _expect(isinstance(answer, dict) and {"params", "macs"} <= answer.keys()
                and all(isinstance(answer[key], numbers.Real) for key in ("params", "macs")),
                f"{where} should return a dict with numbers under 'params' and 'macs'; got {answer!r}.")
        net = NiN(in_channels=in_channels)
        params, macs = count_params(net), layer_table(net, resolution).total_macs
        params_slips = {
            1_995_284: "That is a widely shared answer, but it is not NiN's count: recount every conv "
                       "as c_out * (c_in * k * k + 1).",
            params - sum(conv.out_channels for conv in _convs(net)): "You left out the biases: one per "
                                                                    "output channel.",
        }
        _expect(not (in_channels == 1 and _is_answer(answer["params"], "one_1x1_params")),
                "That counts one 1x1 conv per block; NiN has two.")
        _expect(answer["params"] == params, params_slips.get(answer["params"],
                f"{where}: {answer['params']:,} parameters is not right. Per conv: c_out * (c_in * k * k + 1); "
                f"the first conv reads in_channels; every block ends with two 1x1 convs c -> c."))
        macs_slips = {2 * macs: "That is FLOPs (2 per multiply-add). Return multiply-adds: half of it."}
        _expect(answer["macs"] == macs, macs_slips.get(answer["macs"],
                f"{where}: {answer['macs']:,} multiply-adds is not right. Per conv: c_out * H' * W' * "
                f"c_in * k * k with H' x W' the conv's output size, which the floor formula gives stage "
                f"by stage (pooling shrinks the maps between blocks). Pooling and ReLU add none."))
    flops = count_flops(NiN(), 224)
    return (f"right for all {len(COUNTING_CASES)} cases. At 224 px, 1 channel: FlopCounterMode counts 2 FLOPs "
            f"per multiply-add, so count_flops(NiN(), 224) = {flops:,} = {flops / 1e9:.2f} GFLOPs.")


# ----------------------------------------------------------------------------- exercise 3

@_checker
def check_wide_head(build_head: Callable[[int], nn.Module]) -> str:
    """Exercise 3: NiN's last block with ``hidden`` channels inside its micro-network, then GAP."""
    head = _module(build_head(10), "build_head(10)")
    convs = _convs(head)
    _expect(len(convs) == 3, f"build_head(10) has {len(convs)} convs; use three: a 3x3 conv "
            f"384 -> hidden (padding 1), a 1x1 conv hidden -> hidden, a 1x1 conv hidden -> 10.")
    _expect([conv.kernel_size for conv in convs] == [(3, 3), (1, 1), (1, 1)],
            f"Kernel sizes {[conv.kernel_size for conv in convs]}; expected 3x3, 1x1, 1x1.")
    kinds, wanted = _layer_kinds(head), _layer_kinds(NiN().classifier)
    _expect(kinds == wanted, f"build_head(10) runs {' -> '.join(kinds)}; NiN's last block runs "
            f"{' -> '.join(wanted)}: a ReLU after each of the first two convs and none between the last "
            f"conv and the pooling (chapter 4 explains why).")
    shape = _output_shape(head, 5, channels=384)
    _expect(shape == (2, 10), f"(2, 384, 5, 5) gave shape {shape}; expected (2, 10): end with "
            f"nn.AdaptiveAvgPool2d(1) and nn.Flatten().")
    nin_head = count_params(NiN().classifier)
    _expect(count_params(head) == nin_head, f"build_head(10) has {count_params(head):,} parameters, "
            f"not NiN's last block: with hidden = 10 it should be exactly that block.")
    wide = _module(build_head(64), "build_head(64)")
    _expect(_is_answer(count_params(wide), "wide_head_64"), f"build_head(64) has "
            f"{count_params(wide):,} parameters, which is not right: read the hidden width from the "
            f"argument in all three convs (the last one maps hidden -> 10).")
    return (f"hidden = 10 is NiN's last block ({nin_head:,} parameters); hidden = 64 has "
            f"{count_params(wide):,}.")


# ----------------------------------------------------------------------------- exercise 4

@_checker
def check_3x3_instead_of_1x1(build_nin_3x3: Callable[[], nn.Module]) -> str:
    """Exercise 4: NiN whose 1x1 convs are 3x3 convs with padding 1."""
    model = _module(build_nin_3x3(), "build_nin_3x3()")
    convs = _convs(model)
    ones = sum(conv.kernel_size == (1, 1) for conv in convs)
    _expect(ones == 0, f"{ones} convs are still 1x1: make every 1x1 conv a 3x3 conv with padding=1.")
    _expect(len(convs) == 12, f"{len(convs)} convs; NiN has 12 (4 blocks of 3).")
    params = count_params(model)
    _expect(_is_answer(params, "3x3_params"), f"{params:,} parameters is not the count for this "
            f"network: each former 1x1 conv c -> c now has c * (9c + 1). Keep NiN's channels and "
            f"first-conv kernels.")
    _expect(_accepts(model, 96), "96-px images fail in your network: did you give the 3x3 convs "
            "padding=1? Without it each one shrinks the maps by 2 px.")
    _expect_logits(model, 96)
    return (f"{params:,} parameters ({params / count_params(NiN()):.1f}x NiN), no 1x1 convs left, "
            f"output (2, 10) at 96 px.")


# ----------------------------------------------------------------------------- exercise 5

@_checker
def check_fc_head(build_nin_fc_head: Callable[[], nn.Module]) -> str:
    """Exercise 5: NiN with GAP replaced by Flatten + Linear(10 * 5 * 5 -> 10), for 224 px."""
    model = _module(build_nin_fc_head(), "build_nin_fc_head()")
    flat = math.prod(_conv_shapes(NiN(), 224)[-1])  # 10 x 5 x 5 class maps at 224 px
    target = count_params(NiN()) + flat * 10 + 10
    _expect_logits(model, 224)
    params = count_params(model)
    _expect(params == target, f"{params:,} parameters; expected NiN's {count_params(NiN()):,} plus those "
            f"of one Linear layer from the flattened class maps to the 10 logits (weights and biases).")
    _expect(not _accepts(model, 96), "Your network accepts 96-px images, so it still pools over "
            "space: replace global average pooling by nn.Flatten() and nn.Linear(10 * 5 * 5, 10).")
    return (f"{params:,} parameters, (2, 10) at 224 px, and 96-px images fail (NiN with GAP "
            f"accepts them): the Linear layer fixes the input size.")


# ----------------------------------------------------------------------------- exercise 6

def _memory_bounds(model: nn.Module, batch: int, resolution: int) -> tuple[int, int, int]:
    """Bytes of float32 activations: the fewest training can keep (one tensor per conv: each ReLU
    works in place on its conv's output), the most (every layer's output kept on its own), and
    inference's peak (the largest input + output of a single layer)."""
    table = layer_table(model, resolution)
    sizes = [math.prod(table.input_shape)] + [math.prod(row.output_shape) for row in table.rows]
    convs = sum(math.prod(row.output_shape) for row in table.rows if row.layer.startswith("Conv"))
    scale = 4 * batch
    return scale * convs, scale * sum(sizes[1:]), scale * max(a + b for a, b in zip(sizes, sizes[1:]))


@_checker
def check_memory(activation_memory: Callable[[nn.Module, int, int], tuple[int, int]]) -> str:
    """Exercise 6: activation bytes for training (an estimate between one tensor per conv and every
    layer's output) and the inference peak (exact)."""
    answers = []
    for build, batch, resolution in MEMORY_CASES.values():
        answer = activation_memory(build(), batch, resolution)
        _expect(isinstance(answer, (tuple, list)) and len(answer) == 2
                and all(isinstance(value, numbers.Integral) for value in answer),
                f"Return a tuple of two whole numbers (training_bytes, inference_peak_bytes); "
                f"got {answer!r}.")
        training, peak = (int(value) for value in answer)
        fewest, most, wanted_peak = _memory_bounds(build(), batch, resolution)
        where = f"batch {batch} at {resolution} px"
        for scale, slip in ((batch, "that is for one image; multiply by the batch size"),
                            (4, "that counts values, not bytes; a float32 takes 4 bytes")):
            _expect(not (peak * scale == wanted_peak and fewest <= training * scale <= most), f"{where}: {slip}.")
        _expect(peak == wanted_peak, f"{where}: an inference peak of {peak:,} bytes is not right: 4 bytes x "
                f"batch x the largest (input + output) of a single layer.")
        _expect(training <= most, f"{where}: {training:,} bytes for training is more than every layer's "
                f"output kept on its own (4 bytes x batch x the sum of every layer's output size): count "
                f"each output once, and activations only.")
        _expect(training >= fewest, f"{where}: {training:,} bytes for training is less than one tensor per "
                f"convolution: backward needs every conv's output (or the ReLU output that replaces it).")
        answers.append((training, peak, fewest, most))
    training, peak, fewest, most = answers[0]
    return (f"batch of 128 at 224 px, float32: training keeps {_mb(training)} of activations by your count "
            f"(from {_mb(fewest)}, one tensor per conv, to {_mb(most)}, every layer's output); inference "
            f"needs at most {_mb(peak)} at a time ({training / peak:.1f}x less).")


# ----------------------------------------------------------------------------- exercise 7

# Exercise 7 compares recipes over several seeds, on validation images held out of the training set
# (the test set is not looked at). The grader trains TUNING_NETWORK on TUNING_BUDGET, quick mode's short
# budget (what a CPU trains on by default); the notebook trains on its own mode's short budget.
# TUNING_MARGIN, the gain in mean validation accuracy that passes, is above what recipes merely equal
# to Recipe() gain by chance and below the published solution's gain, as measured by
# `python -m grading.tuning --measure` (grading/tuning_measured.json; tests/test_grading.py checks the
# margin against it, and that the network, budget and recipe measured are today's).
TUNING_NETWORK: Callable[[], nn.Module] = mnist_nin  # the network the course trains (train_with builds)
TUNING_BUDGET = MODES["quick"].short
TUNING_SEEDS = (0, 1, 2)
TUNING_VALIDATION = 5_000  # training images held out to choose a recipe on
TUNING_MARGIN = 0.01


def tuning_data(budget: Budget, device: torch.device | str | None = None) -> FashionMNISTData:
    """The budget's training images, and ``TUNING_VALIDATION`` other training images as the split
    ``fit`` evaluates (its ``test_acc`` is then validation accuracy)."""
    train = budget.train_subset or TRAIN_SIZE - TUNING_VALIDATION
    data = load_fashion_mnist(device=device, train_subset=train + TUNING_VALIDATION, test_subset=1)
    images, labels = data.split("train")
    return FashionMNISTData(images[:train], labels[:train], images[train:], labels[train:])


def tuning_accuracies(recipe: Recipe, data: FashionMNISTData, budget: Budget,
                      seeds: Sequence[int] = TUNING_SEEDS) -> list[float]:
    """Exercise 7's measure of a recipe: for each seed, a fresh ``TUNING_NETWORK()`` trained with
    ``recipe`` on ``budget``, and its final accuracy on ``data``'s evaluation split."""
    accuracies = []
    for seed in seeds:
        seed_everything(seed)
        model = TUNING_NETWORK().to(data.device)
        accuracies.append(fit(model, data, recipe, budget, seed=seed, progress=False)[-1].test_acc)
    return accuracies


@_checker
def check_tuning(tuned_recipe: Callable[[], dict[str, Any]], train: Callable[[Recipe], Sequence[float]],
                 baseline: Sequence[float], margin: float = TUNING_MARGIN) -> str:
    """Exercise 7: ``Recipe(**tuned_recipe())`` must beat ``Recipe()`` by ``margin`` in mean accuracy.

    ``train(recipe)`` returns one accuracy per seed (``tuning_accuracies``); ``baseline`` is what
    ``Recipe()`` reaches on the same seeds.
    """
    changes = tuned_recipe()
    tunable = [f.name for f in dataclasses.fields(Recipe)]
    _expect(isinstance(changes, dict) and len(changes) > 0,
            f"Return a non-empty dict of Recipe fields to change, e.g. {{'lr': 3e-3}}; got {changes!r}.")
    unknown = sorted(set(changes) - set(tunable), key=str)
    _expect(not unknown, f"{unknown} are not fields of Recipe (the budget, like epochs or "
            f"resolution, is fixed). Tunable fields: {tunable}.")
    try:
        recipe = Recipe(**changes)
    except (TypeError, ValueError) as error:
        raise _Wrong(str(error)) from error
    _expect(recipe != Recipe(), f"{changes} is Recipe() itself: change at least one field's value.")
    accuracies = list(train(recipe))
    gain = statistics.mean(accuracies) - statistics.mean(baseline)
    seeds = f"{len(accuracies)} seed{'s' if len(accuracies) > 1 else ''}"
    scores = f"{_accuracies(accuracies)} with {changes}, {_accuracies(baseline)} with Recipe()"
    _expect(gain >= margin, f"Mean validation accuracy over {seeds}: {scores}, a gain of {gain:+.3f}; "
            f"aim for at least {margin:+.3f}, more than seeds alone move it. With so few steps, think "
            f"about how many updates you get and how large each may be.")
    return f"mean validation accuracy over {seeds}: {scores}, a gain of {gain:+.3f} (at least {margin:+.3f})."


def _accuracies(values: Sequence[float]) -> str:
    return f"{statistics.mean(values):.3f} ({', '.join(f'{v:.3f}' for v in values)})"


# ----------------------------------------------------------------------------- exercise 8

@_checker
def check_make_nin(make_nin: Callable[[Sequence[BlockSpec]], nn.Module]) -> str:
    """Exercise 8: ``make_nin(config)`` builds d2l's NiN from its config, and deeper ones."""
    model = _module(make_nin(D2L_NIN_CONFIG), "make_nin(D2L_NIN_CONFIG)")
    params, target = count_params(model), count_params(NiN())
    _expect(params == target, f"make_nin(D2L_NIN_CONFIG) has {params:,} parameters; NiN() has "
            f"{target:,}. Each spec is a NiN block (k x k conv + two 1x1 convs); then one more "
            f"NiN block to 10 channels (3x3, padding 1).")
    pools = sum(isinstance(m, nn.MaxPool2d) for m in model.modules())
    _expect(pools == len(D2L_NIN_CONFIG), f"{pools} max-pooling layers; expected one after each "
            f"of the {len(D2L_NIN_CONFIG)} blocks (3x3, stride 2), before the last NiN block.")
    shapes, reference = _conv_shapes(model, 224), _conv_shapes(NiN(), 224)
    _expect(shapes == reference, f"Conv output shapes at 224 px {shapes}; NiN's are {reference}.")
    _expect_logits(model, 224)
    deep = _module(make_nin(DEEPER_CONFIG), "make_nin(DEEPER_CONFIG)")
    deep_params = count_params(deep)
    _expect(_is_answer(deep_params, "deeper_params"), f"With the deeper config {DEEPER_CONFIG}: "
            f"{deep_params:,} parameters is not right. Read channels from the config, not fixed "
            f"numbers.")
    _expect_logits(deep, 224, " through the deeper config")
    return (f"d2l's config gives {params:,} parameters like NiN(), same shapes; a 4-block config "
            f"gives {deep_params:,} parameters and (2, 10) at 224 px.")
