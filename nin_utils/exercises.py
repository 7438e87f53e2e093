"""Checkers for chapter 5's exercises: each prints ✅ or ❌ with a hint and returns True/False.

Every ``check_*`` takes the student's answer as an argument (usually the function they
wrote, which the checker calls) and reads nothing else from the notebook. Reference values
come from ``nin_utils`` itself (``count_params``, ``layer_table``, ``count_flops``) or from
the counting formulas, computed when the checker runs. No checker raises on a wrong or
unfinished answer: a stub that still raises ``NotImplementedError`` gets "Not done yet",
and any other error is reported with its message.

Parameter formulas used below: a ``k x k`` conv from ``c_in`` to ``c_out`` channels has
``c_out * (c_in * k * k + 1)`` parameters; a linear layer ``n -> m`` has ``m * (n + 1)``.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from .counting import count_flops, count_params, forward_zeros, layer_table
from .models import NiN
from .train import EpochStats, fit

BlockSpec = tuple[int, int, int, int]  # (out_channels, kernel, stride, padding)

# d2l's NiN backbone as block specs; a NiN block to 10 classes and GAP follow it.
D2L_NIN_CONFIG: list[BlockSpec] = [(96, 11, 4, 0), (256, 5, 1, 2), (384, 3, 1, 1)]

# fit() arguments that are the experiment's fixed budget (or not hyperparameters at all).
FIXED_FIT_ARGS = frozenset({"model", "data", "epochs", "resolution", "seed", "checkpoint",
                            "resume", "on_epoch_end", "progress"})


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

def _conv_params(c_in: int, c_out: int, kernel: int) -> int:
    """Parameters of a ``kernel x kernel`` conv: weights plus one bias per output channel."""
    return c_out * (c_in * kernel * kernel + 1)


def _nin_params(config: Sequence[BlockSpec], *, in_channels: int = 1, num_classes: int = 10,
               num_1x1: int = 2, inner_kernel: int = 1) -> int:
    """Parameters of a NiN built from ``config`` plus a 3x3 NiN block to ``num_classes``, by formula.

    Each block is its ``k x k`` conv plus ``num_1x1`` convs ``c -> c`` with an
    ``inner_kernel`` kernel (1 in NiN; exercise 4 tries 3). Pooling and GAP have none.
    """
    total, c_in = 0, in_channels
    for c_out, kernel, _, _ in [*config, (num_classes, 3, 1, 1)]:
        total += _conv_params(c_in, c_out, kernel) + num_1x1 * _conv_params(c_out, c_out, inner_kernel)
        c_in = c_out
    return total


def _activation_bytes(model: nn.Module, batch_size: int, input_size: int,
                     bytes_per_value: int = 4) -> tuple[int, int]:
    """``(training, inference_peak)`` bytes of activations, from ``layer_table``'s output shapes.

    Training keeps every layer's output for the backward pass: their sum. Inference
    needs only one layer's input and output at a time: the largest such pair.
    """
    table = layer_table(model, input_size)
    sizes = [math.prod(table.input_shape)] + [math.prod(row.output_shape) for row in table.rows]
    scale = batch_size * bytes_per_value
    return scale * sum(sizes[1:]), scale * max(a + b for a, b in zip(sizes, sizes[1:]))


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
    try:
        _output_shape(model, size)
    except Exception:  # any failure (ValueError, RuntimeError...) means the size is refused
        return False
    return True


def _module(value: Any, name: str) -> nn.Module:
    forgot = " Did you forget the `return`?" if value is None else ""
    _expect(isinstance(value, nn.Module),
            f"{name} should return an nn.Module; it returned {type(value).__name__}.{forgot}")
    return value


def _close(value: float, reference: float, rel: float = 0.01) -> bool:
    return abs(value - reference) <= rel * abs(reference)


def _mb(num_bytes: float) -> str:
    return f"{num_bytes / 1e6:,.1f} MB"


# ----------------------------------------------------------------------------- exercise 1

@_checker
def check_drop_one_1x1(build_nin_one_1x1: Callable[[], nn.Module]) -> str:
    """Exercise 1: a NiN with one 1x1 conv per block (two convs per block)."""
    model = _module(build_nin_one_1x1(), "build_nin_one_1x1()")
    params, target, standard = count_params(model), count_params(NiN(num_1x1=1)), count_params(NiN())
    _expect(params != standard, f"{params:,} parameters: that is the standard NiN, with two 1x1 "
            f"convs per block. Keep only one, e.g. NiN(num_1x1=1).")
    layout = _convs_per_block(model)
    _expect(layout == [2, 2, 2, 2], f"Convs per NiN block: {layout}. Expected 4 blocks of 2 convs "
            f"each (the k x k conv, then one 1x1 conv).")
    _expect(params == target, f"{params:,} parameters; expected {target:,}. Keep NiN's channels "
            f"(96, 256, 384, 10), kernels (11, 5, 3, 3) and the biases.")
    _expect_logits(model, 96)
    return (f"{params:,} parameters ({standard - params:,} fewer than NiN's {standard:,}), "
            f"2 convs per block, output (2, 10) at 96 px.")


# ----------------------------------------------------------------------------- exercise 2

@_checker
def check_counting(count_by_hand: Callable[[], dict[str, int]]) -> str:
    """Exercise 2: NiN's parameters and multiply-adds at 224 px, by formula."""
    answer = count_by_hand()
    _expect(isinstance(answer, dict) and {"params", "macs_224"} <= answer.keys(),
            f"Return a dict with keys 'params' and 'macs_224'; got {answer!r}.")
    _expect(all(isinstance(answer[key], numbers.Real) for key in ("params", "macs_224")),
            f"Both values should be numbers; got {answer!r}.")
    params, macs = count_params(NiN()), layer_table(NiN(), 224).total_macs
    flops = count_flops(NiN(), 224)
    params_mistakes = {
        1_995_284: "That is a widely shared answer, but it is not NiN's count: recount every conv "
                   "as c_out * (c_in * k * k + 1).",
        count_params(NiN(in_channels=3)): "That is for 3 input channels: Fashion-MNIST is grayscale (1).",
        params - sum(conv.out_channels for conv in _convs(NiN())): "You left out the biases: one per output channel.",
        count_params(NiN(num_1x1=1)): "That counts one 1x1 conv per block; NiN has two.",
    }
    _expect(answer["params"] == params, params_mistakes.get(answer["params"],
            f"params = {answer['params']:,}; expected {params:,}. Per conv: c_out * (c_in * k * k + 1); "
            f"12 convs: (1->96, 11), (96->256, 5), (256->384, 3), (384->10, 3), each followed "
            f"by two 1x1 convs c -> c."))
    macs_mistakes = {
        flops: "That is FLOPs (2 per multiply-add). Return multiply-adds: half of it.",
        layer_table(NiN(in_channels=3), 224).total_macs: "That is for 3 input channels; NiN here has 1.",
        layer_table(NiN(), 227).total_macs: "That is for 227-px inputs; use 224.",
    }
    _expect(answer["macs_224"] == macs, macs_mistakes.get(answer["macs_224"],
            f"macs_224 = {answer['macs_224']:,}; expected {macs:,}. Per conv: "
            f"c_out * H' * W' * c_in * k * k, with H' x W' the conv's output size "
            f"(54, 26, 12, 5 for the four blocks; 1x1 convs have k = 1). Pooling and ReLU add none."))
    return (f"{params:,} parameters and {macs:,} multiply-adds at 224 px. FlopCounterMode counts "
            f"2 FLOPs per multiply-add: count_flops(NiN(), 224) = {flops:,} = 2 x {macs:,} "
            f"= {flops / 1e9:.2f} GFLOPs.")


# ----------------------------------------------------------------------------- exercise 3

@_checker
def check_one_step_head(build_one_step_head: Callable[[], nn.Module]) -> str:
    """Exercise 3: a head mapping (N, 384, 5, 5) to (N, 10) with one 1x1 conv and GAP."""
    head = _module(build_one_step_head(), "build_one_step_head()")
    convs = _convs(head)
    _expect(len(convs) == 1, f"Your head has {len(convs)} convs; use exactly one: "
            f"nn.Conv2d(384, 10, kernel_size=1), then global average pooling.")
    conv = convs[0]
    _expect((conv.in_channels, conv.out_channels, conv.kernel_size) == (384, 10, (1, 1)),
            f"The conv is {conv}; it should map 384 channels to 10 with a 1x1 kernel.")
    shape = _output_shape(head, 5, channels=384)
    _expect(shape == (2, 10), f"(2, 384, 5, 5) gave shape {shape}; expected (2, 10): add "
            f"nn.AdaptiveAvgPool2d(1) and nn.Flatten() after the conv.")
    params, target = count_params(head), _conv_params(384, 10, 1)
    _expect(params == target, f"{params:,} parameters; expected {target:,} = 10 * (384 + 1).")
    nin_head = count_params(NiN().classifier)
    return (f"one 1x1 conv 384 -> 10 and GAP: (N, 384, 5, 5) -> (N, 10) with {params:,} parameters "
            f"(NiN's head block has {nin_head:,} in 3 convs).")


# ----------------------------------------------------------------------------- exercise 4

@_checker
def check_3x3_instead_of_1x1(build_nin_3x3: Callable[[], nn.Module]) -> str:
    """Exercise 4: NiN whose 1x1 convs are 3x3 convs with padding 1."""
    model = _module(build_nin_3x3(), "build_nin_3x3()")
    convs = _convs(model)
    ones = sum(conv.kernel_size == (1, 1) for conv in convs)
    _expect(ones == 0, f"{ones} convs are still 1x1: make every 1x1 conv a 3x3 conv with padding=1.")
    _expect(len(convs) == 12, f"{len(convs)} convs; NiN has 12 (4 blocks of 3).")
    params, target = count_params(model), _nin_params(D2L_NIN_CONFIG, inner_kernel=3)
    _expect(params == target, f"{params:,} parameters; expected {target:,}: each former 1x1 conv "
            f"c -> c now has c * (9c + 1). Keep NiN's channels and first-conv kernels.")
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
    _expect(params == target, f"{params:,} parameters; expected {target:,} = NiN's "
            f"{count_params(NiN()):,} + a Linear({flat}, 10) with {flat * 10 + 10:,}.")
    _expect(not _accepts(model, 96), "Your network accepts 96-px images, so it still pools over "
            "space: replace global average pooling by nn.Flatten() and nn.Linear(10 * 5 * 5, 10).")
    return (f"{params:,} parameters, (2, 10) at 224 px, and 96-px images fail (NiN with GAP "
            f"accepts them): the Linear layer fixes the input size.")


# ----------------------------------------------------------------------------- exercise 6

@_checker
def check_memory(activation_memory: Callable[[nn.Module, int, int], tuple[int, int]]) -> str:
    """Exercise 6: activation bytes for training (all outputs) and the inference peak."""
    cases = [(NiN(), 128, 224), (NiN(num_1x1=1), 8, 96)]  # the second catches hard-coded numbers
    for model, batch, size in cases:
        answer = activation_memory(model, batch, size)
        _expect(isinstance(answer, (tuple, list)) and len(answer) == 2
                and all(isinstance(value, numbers.Real) for value in answer),
                f"Return a tuple of two numbers (training_bytes, inference_peak_bytes); got {answer!r}.")
        training, peak = _activation_bytes(model, batch, size)
        where = f"batch {batch} at {size} px"
        mistakes = {training // batch: "That is for one image: multiply by the batch size.",
                    training // 4: "That counts values, not bytes: a float32 takes 4 bytes."}
        _expect(_close(answer[0], training), mistakes.get(answer[0],
                f"Training ({where}): {answer[0]:,} bytes; expected {training:,} ({_mb(training)}): "
                f"4 bytes x batch x the sum of every layer's output size."))
        _expect(_close(answer[1], peak),
                f"Inference peak ({where}): {answer[1]:,} bytes; expected {peak:,} ({_mb(peak)}): "
                f"4 bytes x batch x the largest (input + output) of a single layer.")
    training, peak = _activation_bytes(NiN(), 128, 224)
    return (f"batch of 128 at 224 px, float32: training keeps {_mb(training)} of activations; "
            f"inference needs at most {_mb(peak)} at a time ({training / peak:.0f}x less).")


# ----------------------------------------------------------------------------- exercise 7

@_checker
def check_tuning(tuned_fit_kwargs: Callable[[], dict[str, Any]],
                 train: Callable[[dict[str, Any]], list[EpochStats]],
                 baseline: float, margin: float = 0.02) -> str:
    """Exercise 7: ``train(tuned_fit_kwargs())`` must beat ``baseline`` test accuracy by ``margin``.

    ``train`` runs ``fit`` on the exercise's fixed budget with the given keyword
    arguments and returns the history; ``baseline`` is what fit's defaults reach on it.
    """
    kwargs = tuned_fit_kwargs()
    _expect(isinstance(kwargs, dict) and len(kwargs) > 0,
            f"Return a non-empty dict of fit() keyword arguments, e.g. {{'lr': 3e-3}}; got {kwargs!r}.")
    accepted = set(inspect.signature(fit).parameters)
    unknown = sorted(set(kwargs) - accepted)
    _expect(not unknown, f"{unknown} are not parameters of fit(). Tunable ones: "
            f"{sorted(accepted - FIXED_FIT_ARGS)}.")
    fixed = sorted(set(kwargs) & FIXED_FIT_ARGS)
    _expect(not fixed, f"{fixed} belong to the fixed budget (or are not hyperparameters); tune "
            f"the others, e.g. lr, batch_size, weight_decay, schedule.")
    history = train(kwargs)
    accuracy, target = history[-1].test_acc, baseline + margin
    _expect(accuracy >= target, f"Test accuracy {accuracy:.3f} with {kwargs}; fit()'s defaults "
            f"reach {baseline:.3f} on this budget, so aim for at least {target:.3f}. With so few "
            f"steps, think about how many updates you get and how large each may be.")
    return (f"test accuracy {accuracy:.3f} with {kwargs}, {accuracy - baseline:+.3f} over fit()'s "
            f"defaults ({baseline:.3f}) on the same budget.")


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
    deeper = [*D2L_NIN_CONFIG, (512, 3, 1, 1)]
    deep = _module(make_nin(deeper), "make_nin(deeper config)")
    deep_params, deep_target = count_params(deep), _nin_params(deeper)
    _expect(deep_params == deep_target, f"With the deeper config {deeper}: {deep_params:,} "
            f"parameters; expected {deep_target:,}. Read channels from the config, not fixed numbers.")
    _expect_logits(deep, 224, " through the deeper config")
    return (f"d2l's config gives {params:,} parameters like NiN(), same shapes; a 4-block config "
            f"gives {deep_params:,} parameters and (2, 10) at 224 px.")
