import random

import pytest
import torch

from nin_utils import MODES, Budget, NiN, get_device, get_mode, seed_everything


def test_mode_from_argument_and_environment(monkeypatch):
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


def test_unknown_mode_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("NIN_MODE", "fast")
    with pytest.raises(ValueError, match="Unknown NiN mode 'fast'.*smoke, quick, full"):
        get_mode()


def test_modes_describe_themselves():
    assert MODES["smoke"].describe() == ("smoke mode: 4,000 training images, 1 epoch at 67 px; "
                                         "tested on 1,000")
    assert "all 60,000 training images" in MODES["full"].describe()


def test_modes_differ_only_in_budget():
    for mode in MODES.values():
        assert type(mode.main) is type(mode.short) is Budget
        for budget in (mode.main, mode.short):
            assert budget.resolution >= NiN().min_resolution
            assert budget.epochs >= 1


def test_seed_everything_repeats_random_draws():
    seed_everything(3)
    first = (random.random(), torch.rand(3))
    seed_everything(3)
    second = (random.random(), torch.rand(3))
    assert first[0] == second[0] and torch.equal(first[1], second[1])
