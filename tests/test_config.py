import dataclasses
import random

import pytest
import torch

from nin_utils import MODES, Budget, get_device, get_mode, mnist_nin, output_side, seed_everything
from nin_utils.training import MIN_GAP_SIDE
from nin_utils import config
from nin_utils.config import QUICK_FLOAT32_MAIN, TEST_SIZE, TRAIN_SIZE, Mode


def test_mode_from_argument_and_environment(monkeypatch):
    monkeypatch.setattr(config, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setenv("NIN_MODE", "full")
    assert get_mode().name == "full"
    assert get_mode("quick").name == "quick"
    monkeypatch.setenv("NIN_MODE", " Quick ")
    assert get_mode() is MODES["quick"]


def test_default_mode_follows_the_device(monkeypatch):
    monkeypatch.delenv("NIN_MODE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert get_mode().name == "quick"
    assert get_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_mode().name == "full"


def test_quick_mode_trains_on_fewer_images_where_the_cpu_lacks_bf16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(config, "cpu_has_native_bf16", lambda: False)
    quick, bf16 = get_mode("quick"), MODES["quick"]
    assert quick.main == QUICK_FLOAT32_MAIN and quick.short == bf16.short  # comparisons stay comparable
    assert QUICK_FLOAT32_MAIN.train_subset < bf16.main.train_subset
    assert (QUICK_FLOAT32_MAIN.epochs, QUICK_FLOAT32_MAIN.resolution) == (bf16.main.epochs, bf16.main.resolution)
    assert quick.describe() == ("quick mode: 26,000 training images, 3 epochs at 28 px; "
                                "tested on all 10,000")
    assert get_mode("full") is MODES["full"] and get_mode("smoke") is MODES["smoke"]
    monkeypatch.setattr(config, "cpu_has_native_bf16", lambda: True)
    assert get_mode("quick") is bf16
    monkeypatch.setattr(config, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU trains the full budget fast
    assert get_mode("quick") is bf16


def test_unknown_mode_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("NIN_MODE", "fast")
    with pytest.raises(ValueError, match="Unknown NiN mode 'fast'.*smoke, quick, full"):
        get_mode()


def test_modes_describe_themselves():
    assert MODES["smoke"].describe() == ("smoke mode: 4,000 training images, 1 epoch at 28 px; "
                                         "tested on 1,000")
    assert "all 60,000 training images" in MODES["full"].describe()


def test_modes_differ_only_in_budget():
    assert [f.name for f in dataclasses.fields(Mode)] == ["name", "main", "short"]  # nothing but budgets
    assert list(MODES) == ["smoke", "quick", "full"]
    images = lambda count, size: size if count is None else count  # None: the whole split
    sizes = lambda b: (images(b.train_subset, TRAIN_SIZE), images(b.test_subset, TEST_SIZE), b.epochs, b.resolution)
    work = lambda b: images(b.train_subset, TRAIN_SIZE) * b.epochs * b.resolution ** 2
    for mode in MODES.values():
        assert MODES[mode.name] is mode
        epochs = f"{mode.main.epochs} epoch" + ("s" if mode.main.epochs > 1 else "")
        assert mode.describe().startswith(f"{mode.name} mode: ")
        assert f"{epochs} at {mode.main.resolution} px" in mode.describe()
        # The short budget (comparisons, exercises) is at most the main one, field by field.
        assert all(s <= m for s, m in zip(sizes(mode.short), sizes(mode.main))), mode
        for budget in (mode.main, mode.short):  # the trained network's GAP has a map to average
            assert output_side(mnist_nin(), budget.resolution) >= MIN_GAP_SIDE and budget.epochs >= 1
    for which in ("main", "short"):  # smoke < quick < full: never less of anything, strictly more work
        smoke, quick, full = (getattr(MODES[name], which) for name in MODES)
        for smaller, larger in ((smoke, quick), (quick, full)):
            assert all(s <= l for s, l in zip(sizes(smaller), sizes(larger))), (which, smaller, larger)
            assert work(smaller) < work(larger) and smaller.epochs < larger.epochs, (which, smaller, larger)
    assert MODES["full"].main == Budget(None, None, 20, 28)  # every image, native size (README)


def test_seed_everything_repeats_random_draws():
    seed_everything(3)
    first = (random.random(), torch.rand(3))
    seed_everything(3)
    second = (random.random(), torch.rand(3))
    assert first[0] == second[0] and torch.equal(first[1], second[1])
