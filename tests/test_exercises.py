"""The chapter 5 checkers: accept a reference solution, reject known-wrong answers, never raise."""

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from nin_utils import Budget, NiN, Recipe, count_params, layer_table, nin_block
from nin_utils import exercises
from nin_utils.answers import NotDescribable, Opaque, decode, describe, encode, rebuild
from nin_utils.exercises import (ANSWER_DIGESTS, D2L_NIN_CONFIG, DEEPER_CONFIG, MEMORY_CASES,
                                 answer_digest, check_3x3_instead_of_1x1, check_counting,
                                 check_drop_one_1x1, check_fc_head, check_make_nin, check_memory,
                                 check_wide_head, check_tuning, tuning_accuracies)


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


def wide_head(hidden, last_relu=False, padding=1):
    return nn.Sequential(nn.Conv2d(384, hidden, 3, padding=padding), nn.ReLU(), nn.Conv2d(hidden, hidden, 1),
                         nn.ReLU(), nn.Conv2d(hidden, 10, 1), *([nn.ReLU()] if last_relu else []),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


def relu_moved(hidden):
    """3x3 -> ReLU -> 1x1 -> 1x1 -> ReLU -> GAP: two ReLUs, in the wrong places."""
    return nn.Sequential(nn.Conv2d(384, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, hidden, 1),
                         nn.Conv2d(hidden, 10, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())


class Head(nn.Module):
    """A right head with a forward of one's own (F.relu): the checkers cannot rebuild it."""

    def __init__(self, hidden):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(384, hidden, 3, padding=1), nn.Conv2d(hidden, hidden, 1),
                                    nn.Conv2d(hidden, 10, 1)])

    def forward(self, x):
        for conv in self.convs[:2]:
            x = torch.relu(conv(x))
        return self.convs[2](x).mean((2, 3))


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


def activation_memory_once(model, batch_size, resolution):
    """A closer count: each tensor once (a ReLU works in place on its conv's output; dropout and
    flatten keep nothing new), plus the input the first conv keeps."""
    table = layer_table(model, resolution)
    kept = [math.prod(table.input_shape)] + [math.prod(row.output_shape) for row in table.rows
                                             if not row.layer.startswith(("ReLU", "Dropout", "Flatten"))]
    return 4 * batch_size * sum(kept), activation_memory(model, batch_size, resolution)[1]


def make_nin(config, pool=True):
    layers, c_in = [], 1
    for c_out, k, s, p in config:
        layers += [nin_block(c_in, c_out, k, s, p)] + ([nn.MaxPool2d(3, 2)] if pool else [])
        c_in = c_out
    return nn.Sequential(*layers, nin_block(c_in, 10, 3, 1, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def fake_train(*accuracies):
    """A stand-in for the notebook's train_with: records its recipe, returns one accuracy per seed."""
    def train(recipe):
        train.calls.append(recipe)
        return list(accuracies)
    train.calls = []
    return train


BASELINE = [0.70, 0.72, 0.71]  # Recipe() on three seeds


# ----------------------------------------------------------------- every checker, unfinished

ALL = [(check_drop_one_1x1, ()), (check_counting, ()), (check_wide_head, ()),
       (check_3x3_instead_of_1x1, ()), (check_fc_head, ()), (check_memory, ()),
       (check_tuning, (fake_train(0.9), [0.5])), (check_make_nin, ())]


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


def test_counting_with_the_library_is_not_by_hand(capsys):
    """It passed before: the exercise forbids count_params and layer_table, and now the check does."""
    library = lambda c, r: {"params": count_params(NiN(in_channels=c)), "macs": layer_table(NiN(in_channels=c), r).total_macs}
    verdict(capsys, check_counting(library), "❌", "count_by_hand used torch", "formulas alone")
    with_numel = lambda c, r: {"params": sum(p.numel() for p in NiN(in_channels=c).parameters()), "macs": 0}
    verdict(capsys, check_counting(with_numel), "❌", "used torch")


def test_wide_head(capsys):
    verdict(capsys, check_wide_head(wide_head), "✅", "34,790", "226,058")
    verdict(capsys, check_wide_head(lambda h: NiN().classifier[1:]), "❌", "build_head(64)")
    verdict(capsys, check_wide_head(lambda h: wide_head(h, last_relu=True)), "❌", "none between the last conv")
    one_step = lambda h: nn.Sequential(nn.Conv2d(384, 10, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    verdict(capsys, check_wide_head(one_step), "❌", "use three")


def test_wide_head_checks_where_the_relus_are(capsys):
    """Both passed before: two ReLUs but in the wrong places, and a 3x3 conv without its padding."""
    verdict(capsys, check_wide_head(relu_moved), "❌",
            "runs 3x3 conv (padding 1) -> ReLU -> 1x1 conv -> 1x1 conv -> ReLU -> global average pooling")
    verdict(capsys, check_wide_head(lambda h: wide_head(h, padding=0)), "❌", "runs 3x3 conv -> ReLU", "(padding 1)")


def test_a_network_with_a_forward_of_its_own_is_explained(capsys):
    verdict(capsys, check_wide_head(Head), "❌", "build_head(10): The network contains a Head, a class of your own",
            "nn.Sequential")


def test_3x3_instead_of_1x1(capsys):
    verdict(capsys, check_3x3_instead_of_1x1(nin_3x3), "✅", "5,549,094")
    verdict(capsys, check_3x3_instead_of_1x1(NiN), "❌", "still 1x1")
    verdict(capsys, check_3x3_instead_of_1x1(lambda: nin_3x3(padding=0)), "❌", "padding=1")


def test_fc_head(capsys):
    verdict(capsys, check_fc_head(nin_fc_head), "✅", "1,994,676", "96-px images fail")
    verdict(capsys, check_fc_head(NiN), "❌", "1,992,166")
    verdict(capsys, check_fc_head(lambda: NiN(head="fc", resolution=224)), "❌", "parameters")


class CrashesAt96(nn.Sequential):
    """The right network, but it fails at 96 px for a reason that is not the input's size."""

    def forward(self, x):
        if x.shape[-1] == 96:
            raise RuntimeError("a bug")
        return super().forward(x)


def test_fc_head_takes_only_a_size_error_as_refusing_the_size(capsys):
    """It passed before: any exception at 96 px counted as "refuses the size"."""
    crashing = CrashesAt96(*nin_fc_head())
    verdict(capsys, check_fc_head(lambda: crashing), "❌", "class of your own")
    assert exercises._accepts(NiN(), 96) and not exercises._accepts(nin_fc_head(), 96)
    with pytest.raises(RuntimeError, match="a bug"):
        exercises._accepts(crashing, 96)


def test_memory(capsys):
    verdict(capsys, check_memory(activation_memory), "✅", "MB")
    per_image = lambda m, b, s: activation_memory(m, b, s, per_image=True)
    verdict(capsys, check_memory(per_image), "❌", "one image")
    verdict(capsys, check_memory(lambda m, b, s: (1, 2)), "❌", "inference peak of 2 bytes")


def test_memory_accepts_a_closer_count_and_rejects_counts_outside_the_range(capsys):
    """The closer count was rejected before, with a generic hint."""
    verdict(capsys, check_memory(activation_memory_once), "✅", "by your count")
    twice = lambda m, b, s: (2 * activation_memory(m, b, s)[0], activation_memory(m, b, s)[1])
    verdict(capsys, check_memory(twice), "❌", "more than every layer's output")
    convs_half = lambda m, b, s: (activation_memory_once(m, b, s)[0] // 3, activation_memory(m, b, s)[1])
    verdict(capsys, check_memory(convs_half), "❌", "less than one tensor per convolution")
    verdict(capsys, check_memory(lambda m, b, s: 5), "❌", "tuple")


def test_memory_names_the_usual_slips(capsys):
    values = lambda m, b, s: tuple(v // 4 for v in activation_memory(m, b, s))
    verdict(capsys, check_memory(values), "❌", "counts values, not bytes")
    off_by_one = lambda m, b, s: tuple(v + 1 for v in activation_memory(m, b, s))
    verdict(capsys, check_memory(off_by_one), "❌", "is not right")


def test_tuning_validates_fields_before_training(capsys):
    train = fake_train(0.76, 0.75, 0.77)
    verdict(capsys, check_tuning(lambda: {"lr": 3e-3, "batch_size": 16}, train, BASELINE), "✅", "+0.050",
            "0.760 (0.760, 0.750, 0.770)")
    verdict(capsys, check_tuning(lambda: {"learning_rate": 3e-3}, train, BASELINE), "❌", "learning_rate",
            "not fields of Recipe")
    verdict(capsys, check_tuning(lambda: {"epochs": 20}, train, BASELINE), "❌", "budget")
    verdict(capsys, check_tuning(lambda: {"optimizer": "adam"}, train, BASELINE), "❌", "optimizer='adam' is invalid")
    verdict(capsys, check_tuning(dict, train, BASELINE), "❌", "non-empty")
    verdict(capsys, check_tuning(lambda: {"batch_size": Recipe().batch_size}, train, BASELINE), "❌",
            "is Recipe() itself")
    assert train.calls == [Recipe(lr=3e-3, batch_size=16)]  # rejected answers never trained


def test_tuning_must_beat_the_baseline_by_the_margin_on_average(capsys):
    margin = exercises.TUNING_MARGIN
    constant = fake_train(0.1, 0.1, 0.1)  # training collapsed to one class
    verdict(capsys, check_tuning(lambda: {"lr": 1.0}, constant, BASELINE), "❌", "a gain of -0.610")
    equal = fake_train(*(a + margin / 2 for a in BASELINE))
    verdict(capsys, check_tuning(lambda: {"lr": 2.01e-3}, equal, BASELINE), "❌", f"at least {margin:+.3f}")
    lucky = fake_train(BASELINE[0] + 2.5 * margin, BASELINE[1] - margin, BASELINE[2] - margin)
    verdict(capsys, check_tuning(lambda: {"lr": 1e-3}, lucky, BASELINE), "❌",  # one good seed is not the mean
            f"a gain of {margin / 6:+.3f}")
    better = fake_train(*(a + margin for a in BASELINE))
    verdict(capsys, check_tuning(lambda: {"lr": 1e-3}, better, BASELINE), "✅", f"a gain of {margin:+.3f}")


def test_tuning_with_real_training_for_a_few_steps(capsys, synthetic):
    """tuning_accuracies trains a fresh network per seed: Recipe()'s own values fail, and eight times
    the updates beat it on this tiny budget (with a margin fit for it)."""
    budget = Budget(None, None, 1, 67)
    train = lambda recipe: tuning_accuracies(recipe, synthetic, budget, seeds=(0, 1))
    baseline = train(Recipe())
    assert len(baseline) == 2 and baseline == train(Recipe())  # seeded: the same again
    verdict(capsys, check_tuning(lambda: {"batch_size": 128}, train, baseline), "❌", "is Recipe() itself")
    verdict(capsys, check_tuning(lambda: {"batch_size": 16}, train, baseline, margin=0.01), "✅", "with Recipe()")


# ----------------------------------------------------------------- networks as data

def test_a_network_crosses_as_its_layers_and_comes_back_the_same():
    for model in (NiN(num_1x1=1), nin_fc_head(), wide_head(64), make_nin(DEEPER_CONFIG), nn.Sequential(
            nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.LeakyReLU(0.2), nn.Dropout(0.3))):
        data = json.loads(json.dumps(encode(model)))
        rebuilt = decode(data)
        assert type(rebuilt) is type(model) and str(rebuilt) == str(model)
        assert count_params(rebuilt) == count_params(model)
        assert describe(rebuilt) == describe(model)
    changed = NiN()
    changed.classifier = nn.Sequential(nn.Flatten())  # a NiN changed after it was built
    assert str(rebuild(describe(changed)).classifier) == str(changed.classifier)


def test_answers_cross_as_plain_data():
    value = {"params": 3, "macs": 2**40, "ratio": 0.5, "shape": (2, 10), "names": ["a"], "none": None}
    assert decode(json.loads(json.dumps(encode(value)))) == value
    assert repr(decode(encode(torch.ones(2)))) == repr(torch.ones(2)) and isinstance(decode(encode(torch.ones(2))), Opaque)
    assert math.isnan(decode(json.loads(json.dumps(encode(float("nan"))))))


def test_only_torch_layers_are_rebuilt_and_only_within_limits():
    with pytest.raises(NotDescribable, match="class of your own"):
        describe(Head(10))
    for tree in ({"layer": "Head"}, {"layer": "Conv2d", "args": {"in_channels": 1}},
                 {"layer": "Linear", "args": {"in_features": 10**6, "out_features": 10**6}},
                 {"layer": "Sequential", "children": [["0", {"layer": "ReLU"}]] * 2000},
                 {"layer": "os.system", "args": {"command": "true"}}):
        with pytest.raises(NotDescribable):
            rebuild(tree)


# ----------------------------------------------------------------- the package holds no answer key

def test_answer_digests_match_the_reference_solutions():
    assert ANSWER_DIGESTS["one_1x1_params"] == answer_digest(count_params(NiN(num_1x1=1)))
    assert ANSWER_DIGESTS["3x3_params"] == answer_digest(count_params(nin_3x3()))
    assert ANSWER_DIGESTS["deeper_params"] == answer_digest(count_params(make_nin(DEEPER_CONFIG)))
    assert ANSWER_DIGESTS["wide_head_64"] == answer_digest(count_params(wide_head(64)))


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
