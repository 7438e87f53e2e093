"""Checkers for chapter 5's exercises: each prints ✅ or ❌ with a hint and returns True/False.

Every ``check_*`` takes the student's answer as an argument (usually the function they
wrote, which the checker calls) and reads nothing else from the notebook. No checker raises
on a wrong or unfinished answer: a stub that still raises ``NotImplementedError`` gets "Not
done yet", and any other error is reported with its message.

This package is installed on every student's machine, so it holds no answer key: where an
exercise's answer is a number the student must derive, the checker keeps only its SHA-256
digest (``ANSWER_DIGESTS``), and hints name the formula, never the value.
``tests/test_exercises.py`` recomputes every digest from its own reference solutions.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from .counting import count_flops, count_params, forward_zeros, layer_table
from .models import NiN
from .training import EpochStats, Recipe

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
    "memory/nin-128-224": "bec9c45ad3b7dcba",
    "memory/rgb-8-96": "a392800040482d34",
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


@_checker
def check_counting(count_by_hand: Callable[[int, int], dict[str, int]]) -> str:
    """Exercise 2: NiN's parameters and multiply-adds for any input channels and resolution, by formula."""
    for in_channels, resolution in COUNTING_CASES:
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
    _expect(sum(isinstance(m, nn.ReLU) for m in head.modules()) == 2,
            "Use two ReLUs, after the first two convs: no ReLU between the last conv and GAP "
            "(chapter 4 explains why).")
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

@_checker
def check_memory(activation_memory: Callable[[nn.Module, int, int], tuple[int, int]]) -> str:
    """Exercise 6: activation bytes for training (all outputs) and the inference peak."""
    for key, (build, batch, resolution) in MEMORY_CASES.items():
        answer = activation_memory(build(), batch, resolution)
        _expect(isinstance(answer, (tuple, list)) and len(answer) == 2
                and all(isinstance(value, numbers.Integral) for value in answer),
                f"Return a tuple of two whole numbers (training_bytes, inference_peak_bytes); "
                f"got {answer!r}.")
        training, peak = (int(value) for value in answer)
        where = f"batch {batch} at {resolution} px"
        if _is_answer((training, peak), f"memory/{key}"):
            continue
        _expect(not _is_answer((training * batch, peak * batch), f"memory/{key}"),
                f"{where}: that is for one image; multiply by the batch size.")
        _expect(not _is_answer((training * 4, peak * 4), f"memory/{key}"),
                f"{where}: that counts values, not bytes; a float32 takes 4 bytes.")
        _expect(False, f"{where}: ({training:,}, {peak:,}) bytes is not right. Training: 4 bytes x "
                f"batch x the sum of every layer's output size. Inference peak: 4 bytes x batch x "
                f"the largest (input + output) of a single layer.")
    training, peak = activation_memory(NiN(), 128, 224)
    return (f"batch of 128 at 224 px, float32: training keeps {_mb(training)} of activations; "
            f"inference needs at most {_mb(peak)} at a time ({training / peak:.1f}x less).")


# ----------------------------------------------------------------------------- exercise 7

@_checker
def check_tuning(tuned_recipe: Callable[[], dict[str, Any]],
                 train: Callable[[Recipe], list[EpochStats]],
                 baseline: float, margin: float = 0.02) -> str:
    """Exercise 7: ``train(Recipe(**tuned_recipe()))`` must beat ``baseline`` test accuracy by ``margin``.

    ``train`` runs ``fit`` on the exercise's fixed budget with the given recipe and
    returns the history; ``baseline`` is what ``Recipe()`` reaches on it.
    """
    changes = tuned_recipe()
    tunable = [f.name for f in dataclasses.fields(Recipe)]
    _expect(isinstance(changes, dict) and len(changes) > 0,
            f"Return a non-empty dict of Recipe fields to change, e.g. {{'lr': 3e-3}}; got {changes!r}.")
    unknown = sorted(set(changes) - set(tunable))
    _expect(not unknown, f"{unknown} are not fields of Recipe (the budget, like epochs or "
            f"resolution, is fixed). Tunable fields: {tunable}.")
    try:
        recipe = Recipe(**changes)
    except ValueError as error:
        raise _Wrong(str(error)) from error
    history = train(recipe)
    accuracy, target = history[-1].test_acc, baseline + margin
    _expect(accuracy >= target, f"Test accuracy {accuracy:.3f} with {changes}; Recipe()'s defaults "
            f"reach {baseline:.3f} on this budget, so aim for at least {target:.3f}. With so few "
            f"steps, think about how many updates you get and how large each may be.")
    return (f"test accuracy {accuracy:.3f} with {changes}, {accuracy - baseline:+.3f} over Recipe()'s "
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
    deep = _module(make_nin(DEEPER_CONFIG), "make_nin(DEEPER_CONFIG)")
    deep_params = count_params(deep)
    _expect(_is_answer(deep_params, "deeper_params"), f"With the deeper config {DEEPER_CONFIG}: "
            f"{deep_params:,} parameters is not right. Read channels from the config, not fixed "
            f"numbers.")
    _expect_logits(deep, 224, " through the deeper config")
    return (f"d2l's config gives {params:,} parameters like NiN(), same shapes; a 4-block config "
            f"gives {deep_params:,} parameters and (2, 10) at 224 px.")
