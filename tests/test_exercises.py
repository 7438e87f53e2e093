"""The chapter 5 checkers: accept a reference solution, reject known-wrong answers, never raise."""

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
from torch import nn

from nin_utils import NiN, Recipe, count_params, layer_table, nin_block
from nin_utils import exercises
from nin_utils.exercises import (ANSWER_DIGESTS, D2L_NIN_CONFIG, DEEPER_CONFIG, MEMORY_CASES,
                                 answer_digest, check_3x3_instead_of_1x1, check_counting,
                                 check_drop_one_1x1, check_fc_head, check_make_nin, check_memory,
                                 check_wide_head, check_tuning)


def verdict(capsys, result, mark, *phrases):
    """Assert the checker returned ``mark == "✅"`` and printed ``mark`` and every phrase."""
    out = capsys.readouterr().out
    assert result is (mark == "✅"), out
    assert out.startswith(mark), out
    for phrase in phrases:
        assert phrase in out, out
    return out


def stub(*args, **kwargs):
    # Write your code here
    raise NotImplementedError


# ----------------------------------------------------------------- reference solutions (small)

def count_by_hand(in_channels, resolution, flops=False):
    side = lambda n, k, s=1, p=0: (n + 2 * p - k) // s + 1
    n1 = side(resolution, 11, 4)
    n2 = side(n1, 3, 2)
    n3 = side(n2, 3, 2)
    n4 = side(n3, 3, 2)
    blocks = [(in_channels, 96, 11, n1), (96, 256, 5, n2), (256, 384, 3, n3), (384, 10, 3, n4)]
    params = sum(c * (c_in * k * k + 1) + 2 * c * (c + 1) for c_in, c, k, _ in blocks)
    macs = sum(n * n * c * (c_in * k * k + 2 * c) for c_in, c, k, n in blocks)
    return {"params": params, "macs": macs * (2 if flops else 1)}


def wide_head(hidden, last_relu=False):
    return nn.Sequential(nn.Conv2d(384, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, hidden, 1), nn.ReLU(),
                         nn.Conv2d(hidden, 10, 1), *([nn.ReLU()] if last_relu else []), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten())


def nin_3x3(padding=1):
    def block(c_in, c_out, k, s=1, p=0):
        layers = [nn.Conv2d(c_in, c_out, k, s, p), nn.ReLU()]
        for _ in range(2):
            layers += [nn.Conv2d(c_out, c_out, 3, padding=padding), nn.ReLU()]
        return nn.Sequential(*layers)
    return nn.Sequential(block(1, 96, 11, 4), nn.MaxPool2d(3, 2), block(96, 256, 5, 1, 2),
                         nn.MaxPool2d(3, 2), block(256, 384, 3, 1, 1), nn.MaxPool2d(3, 2),
                         block(384, 10, 3, 1, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def nin_fc_head():
    nin = NiN()
    return nn.Sequential(nin.features, nin.classifier[:2], nn.Flatten(), nn.Linear(10 * 5 * 5, 10))


def activation_memory(model, batch_size, resolution, per_image=False):
    table = layer_table(model, resolution)
    sizes = [math.prod(table.input_shape)] + [math.prod(row.output_shape) for row in table.rows]
    scale = 4 * (1 if per_image else batch_size)
    return scale * sum(sizes[1:]), scale * max(a + b for a, b in zip(sizes, sizes[1:]))


def make_nin(config, pool=True):
    layers, c_in = [], 1
    for c_out, k, s, p in config:
        layers += [nin_block(c_in, c_out, k, s, p)] + ([nn.MaxPool2d(3, 2)] if pool else [])
        c_in = c_out
    return nn.Sequential(*layers, nin_block(c_in, 10, 3, 1, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def fake_train(accuracy):
    """A stand-in for the notebook's training function: records its recipe, returns one epoch.

    The checker reads only ``history[-1].test_acc``, so the epoch is a plain namespace.
    """
    def train(recipe):
        train.calls.append(recipe)
        return [SimpleNamespace(test_acc=accuracy)]
    train.calls = []
    return train


# ----------------------------------------------------------------- every checker, unfinished

ALL = [(check_drop_one_1x1, ()), (check_counting, ()), (check_wide_head, ()),
       (check_3x3_instead_of_1x1, ()), (check_fc_head, ()), (check_memory, ()),
       (check_tuning, (fake_train(0.9), 0.5)), (check_make_nin, ())]


@pytest.mark.parametrize("checker, extra", ALL, ids=lambda v: getattr(v, "__name__", ""))
def test_a_stub_still_raising_not_implemented_error_is_reported_not_raised(capsys, checker, extra):
    verdict(capsys, checker(stub, *extra), "❌", "Not done yet", "NotImplementedError")


@pytest.mark.parametrize("checker, extra", ALL, ids=lambda v: getattr(v, "__name__", ""))
def test_any_other_error_in_the_students_code_is_reported_not_raised(capsys, checker, extra):
    def broken(*args):
        return 1 / 0
    verdict(capsys, checker(broken, *extra), "❌", "ZeroDivisionError")


# ----------------------------------------------------------------- one exercise at a time

def test_drop_one_1x1(capsys):
    verdict(capsys, check_drop_one_1x1(lambda: NiN(num_1x1=1)), "✅", "1,769,112")
    verdict(capsys, check_drop_one_1x1(NiN), "❌", "standard NiN")
    verdict(capsys, check_drop_one_1x1(lambda: NiN(num_1x1=0)), "❌", "[1, 1, 1, 1]")
    verdict(capsys, check_drop_one_1x1(lambda: None), "❌", "nn.Module")


def test_counting(capsys):
    verdict(capsys, check_counting(count_by_hand), "✅", "3 cases", "1,524,594,704", "1.52 GFLOPs")
    flops = lambda c, r: count_by_hand(c, r, flops=True)
    verdict(capsys, check_counting(flops), "❌", "That is FLOPs")
    verdict(capsys, check_counting(lambda c, r: {"params": 1_995_284, "macs": 0}), "❌", "widely shared")
    only_224 = lambda c, r: count_by_hand(1, 224)  # hard-coded for d2l's setting
    verdict(capsys, check_counting(only_224), "❌", "count_by_hand(3, 96)", "not right")
    verdict(capsys, check_counting(lambda c, r: 1_992_166), "❌", "'params'")


def test_wide_head(capsys):
    verdict(capsys, check_wide_head(wide_head), "✅", "34,790", "226,058")
    verdict(capsys, check_wide_head(lambda h: NiN().classifier[1:]), "❌", "build_head(64)")
    verdict(capsys, check_wide_head(lambda h: wide_head(h, last_relu=True)), "❌", "two ReLUs")
    one_step = lambda h: nn.Sequential(nn.Conv2d(384, 10, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    verdict(capsys, check_wide_head(one_step), "❌", "use three")


def test_3x3_instead_of_1x1(capsys):
    verdict(capsys, check_3x3_instead_of_1x1(nin_3x3), "✅", "5,549,094")
    verdict(capsys, check_3x3_instead_of_1x1(NiN), "❌", "still 1x1")
    verdict(capsys, check_3x3_instead_of_1x1(lambda: nin_3x3(padding=0)), "❌", "padding=1")


def test_fc_head(capsys):
    verdict(capsys, check_fc_head(nin_fc_head), "✅", "1,994,676", "96-px images fail")
    verdict(capsys, check_fc_head(NiN), "❌", "1,992,166")
    verdict(capsys, check_fc_head(lambda: NiN(head="fc", resolution=224)), "❌", "parameters")


def test_memory(capsys):
    verdict(capsys, check_memory(activation_memory), "✅", "MB")
    per_image = lambda m, b, s: activation_memory(m, b, s, per_image=True)
    verdict(capsys, check_memory(per_image), "❌", "one image")
    verdict(capsys, check_memory(lambda m, b, s: (1, 2)), "❌", "Training")
    verdict(capsys, check_memory(lambda m, b, s: 5), "❌", "tuple")


def test_memory_names_the_usual_slips(capsys):
    values = lambda m, b, s: tuple(v // 4 for v in activation_memory(m, b, s))
    verdict(capsys, check_memory(values), "❌", "counts values, not bytes")
    off_by_one = lambda m, b, s: tuple(v + 1 for v in activation_memory(m, b, s))
    verdict(capsys, check_memory(off_by_one), "❌", "is not right")


def test_tuning_validates_fields_before_training(capsys):
    train = fake_train(0.9)
    verdict(capsys, check_tuning(lambda: {"lr": 3e-3, "batch_size": 16}, train, 0.5), "✅", "+0.400")
    verdict(capsys, check_tuning(lambda: {"learning_rate": 3e-3}, train, 0.5), "❌", "learning_rate",
            "not fields of Recipe")
    verdict(capsys, check_tuning(lambda: {"epochs": 20}, train, 0.5), "❌", "budget")
    verdict(capsys, check_tuning(lambda: {"optimizer": "adam"}, train, 0.5), "❌", "optimizer='adam' is invalid")
    verdict(capsys, check_tuning(dict, train, 0.5), "❌", "non-empty")
    assert train.calls == [Recipe(lr=3e-3, batch_size=16)]  # rejected answers never trained


def test_tuning_must_beat_the_baseline_by_the_margin(capsys):
    verdict(capsys, check_tuning(lambda: {"lr": 1e-5}, fake_train(0.51), 0.5), "❌", "at least 0.520")
    verdict(capsys, check_tuning(lambda: {"lr": 1e-5}, fake_train(0.53), 0.5), "✅", "+0.030")
    verdict(capsys, check_tuning(lambda: {"lr": 1e-5}, fake_train(0.55), 0.5, margin=0.1), "❌", "0.600")


def test_tuning_with_real_training_for_a_few_steps(capsys, synthetic):
    """The checker on real ``fit`` runs at the default margin: Recipe()'s own values train the same
    network to the baseline's accuracy and fail; eight times the updates beat it and pass."""
    from nin_utils import Budget, fit, seed_everything

    def train(recipe):
        seed_everything(0)
        return fit(NiN(num_1x1=0), synthetic, recipe, Budget(None, None, 1, 67), progress=False)
    baseline = train(Recipe())[-1].test_acc  # 4 steps of 128 images
    verdict(capsys, check_tuning(lambda: {"batch_size": 128}, train, baseline), "❌",
            f"{baseline:.3f} with {{'batch_size': 128}}", f"at least {baseline + 0.02:.3f}")
    verdict(capsys, check_tuning(lambda: {"batch_size": 16}, train, baseline), "✅", f"({baseline:.3f})")


# ----------------------------------------------------------------- the package holds no answer key

def test_answer_digests_match_the_reference_solutions():
    assert ANSWER_DIGESTS["one_1x1_params"] == answer_digest(count_params(NiN(num_1x1=1)))
    assert ANSWER_DIGESTS["3x3_params"] == answer_digest(count_params(nin_3x3()))
    assert ANSWER_DIGESTS["deeper_params"] == answer_digest(count_params(make_nin(DEEPER_CONFIG)))
    assert ANSWER_DIGESTS["wide_head_64"] == answer_digest(count_params(wide_head(64)))
    for key, (build, batch, resolution) in MEMORY_CASES.items():
        assert ANSWER_DIGESTS[f"memory/{key}"] == answer_digest(activation_memory(build(), batch, resolution))


def test_the_installed_checkers_do_not_contain_the_answers():
    source = Path(exercises.__file__).read_text()
    answers = [count_params(NiN(num_1x1=1)), count_params(nin_3x3()), count_params(make_nin(DEEPER_CONFIG)),
               count_params(wide_head(64)),
               *(v for build, b, r in MEMORY_CASES.values() for v in activation_memory(build(), b, r))]
    for answer in answers:
        assert str(answer) not in source and f"{answer:,}" not in source and f"{answer:_}" not in source
    assert "num_1x1=1" not in source  # exercise 1's solution


def test_make_nin(capsys):
    verdict(capsys, check_make_nin(make_nin), "✅", "1,992,166")
    verdict(capsys, check_make_nin(lambda config: make_nin(config, pool=False)), "❌", "max-pooling")
    verdict(capsys, check_make_nin(lambda config: NiN()), "❌", "deeper config")
    assert D2L_NIN_CONFIG == [(96, 11, 4, 0), (256, 5, 1, 2), (384, 3, 1, 1)]
