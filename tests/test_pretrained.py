"""The shipped network: it loads without training, scores what its card says, and refuses a bad file."""

import hashlib

import pytest
import torch

from nin_utils import CheckpointError, NiN, evaluate, mnist_nin, output_side
from nin_utils.pretrained import WEIGHTS, load_pretrained, pretrained_card


def test_the_card_records_how_the_weights_were_made():
    card = pretrained_card()
    assert card["command"].startswith("python -m nin_utils.train") and card["seconds"] > 0
    assert {"seed", "resolution", "epochs", "recipe", "machine", "date"} <= card.keys()
    assert card["sha256"] == hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()
    assert WEIGHTS.stat().st_size < 5_000_000  # float16: about 2 bytes per parameter


def test_the_shipped_network_is_the_authors_mnist_nin_with_a_7x7_map_before_gap():
    card, model = pretrained_card(), load_pretrained()
    assert model.model_args == mnist_nin().model_args and card["resolution"] == 28
    assert output_side(model, card["resolution"]) == 7  # GAP averages 49 positions


@pytest.mark.slow  # all 10,000 real test images at the card's resolution
def test_the_shipped_network_scores_its_stated_accuracy(fashion):
    card = pretrained_card()
    model = load_pretrained()
    assert isinstance(model, NiN) and not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    accuracy = evaluate(model, fashion, resolution=card["resolution"], autocast=False)  # no recipe needed
    assert len(fashion.test_labels) == 10_000
    assert accuracy == pytest.approx(card["test_acc"], abs=0.002)
    assert accuracy >= 0.94  # the course's promise for the shipped network (tools/train_pretrained.sh)


def test_a_damaged_weights_file_is_refused(tmp_path):
    damaged = tmp_path / "weights.pt"
    data = bytearray(WEIGHTS.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged or were replaced: their SHA-256"):
        load_pretrained(path=damaged)


def test_a_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="are missing: reinstall nin_utils, or run `make pretrained`"):
        load_pretrained(path=tmp_path / "absent.pt")
