import pytest
import torch

from nin_utils import load_fashion_mnist


@pytest.fixture(scope="session")
def fashion():
    """The real Fashion-MNIST, whole, on the CPU (loaded once per test session)."""
    return load_fashion_mnist(device="cpu")


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
