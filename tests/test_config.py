import random

import pytest
import torch

from nin_utils import MODES, get_device, get_mode, seed_everything


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
    with pytest.raises(ValueError, match="Unknown NiN mode 'fast'.*quick, full"):
        get_mode()


def test_modes_describe_themselves():
    assert "quick mode" in MODES["quick"].describe()
    assert "all 60,000 training" in MODES["full"].describe()
    assert MODES["quick"].resolution >= 67  # the smallest input NiN accepts


def test_seed_everything_repeats_random_draws():
    seed_everything(3)
    first = (random.random(), torch.rand(3))
    seed_everything(3)
    second = (random.random(), torch.rand(3))
    assert first[0] == second[0] and torch.equal(first[1], second[1])
