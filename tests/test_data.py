import gzip
import shutil
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision

import nin_utils.data as data_module
from nin_utils import FASHION_CLASSES, DataNotFoundError, load_fashion_mnist
from nin_utils.data import FASHION_MEAN, FASHION_STD, RAW_FILES

# Where load_fashion_mnist keeps torchvision's uncompressed copy, wherever the data came from
# (Debian's package, NIN_DATA_DIR or a download).
CACHED_RAW = Path.home() / ".cache" / "nin_utils" / "FashionMNIST" / "raw"


def test_real_dataset_sizes_and_balance(fashion):
    assert fashion.train_images.shape == (60_000, 28, 28)
    assert fashion.test_images.shape == (10_000, 28, 28)
    assert fashion.train_images.dtype == torch.uint8
    assert torch.bincount(fashion.train_labels).tolist() == [6_000] * 10
    assert torch.bincount(fashion.test_labels).tolist() == [1_000] * 10
    assert len(FASHION_CLASSES) == 10 and FASHION_CLASSES[9] == "Ankle boot"


def test_normalisation_constants_are_the_training_set_statistics(fashion):
    pixels = fashion.train_images.double() / 255
    assert pixels.mean().item() == pytest.approx(FASHION_MEAN, abs=1e-4)
    assert pixels.std().item() == pytest.approx(FASHION_STD, abs=1e-4)


def test_batches_are_resized_normalised_and_cover_the_split(fashion):
    batches = list(fashion.batches("test", 512, resolution=96))
    assert len(batches) == fashion.num_batches("test", 512) == 20
    x, y = batches[0]
    assert x.shape == (512, 1, 96, 96) and x.dtype == torch.float32 and y.shape == (512,)
    assert batches[-1][0].shape[0] == 10_000 - 19 * 512
    assert torch.equal(torch.cat([b[1] for b in batches]), fashion.test_labels)
    whole = torch.cat([b[0] for b in fashion.batches("test", 2_000, 28)])
    assert whole.mean().item() == pytest.approx(0, abs=0.05)
    assert whole.std().item() == pytest.approx(1, abs=0.05)
    raw = next(fashion.batches("test", 4, 28, normalize=False))[0]
    assert raw.min() >= 0 and raw.max() <= 1


def test_shuffle_is_a_seeded_permutation(fashion):
    labels = lambda seed: torch.cat([y for _, y in fashion.batches("test", 1_000, 28, shuffle_seed=seed)])
    assert torch.equal(labels(1), labels(1))
    assert not torch.equal(labels(1), labels(2))
    assert torch.equal(labels(1).sort().values, fashion.test_labels.sort().values)


def test_subsets_are_seeded_and_sized():
    a = load_fashion_mnist(device="cpu", train_subset=500, test_subset=100, seed=1)
    b = load_fashion_mnist(device="cpu", train_subset=500, test_subset=100, seed=1)
    c = load_fashion_mnist(device="cpu", train_subset=500, test_subset=100, seed=2)
    assert a.train_images.shape == (500, 28, 28) and a.test_labels.shape == (100,)
    assert torch.equal(a.train_images, b.train_images)
    assert not torch.equal(a.train_images, c.train_images)


def test_nin_data_dir_is_used_before_the_system_copy(fashion, tmp_path, monkeypatch):
    source = tmp_path / "mine"
    source.mkdir()
    for name in RAW_FILES:  # one compressed, the others plain: both are accepted
        if name.startswith("train-images"):
            with open(CACHED_RAW / name, "rb") as src, gzip.open(source / (name + ".gz"), "wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            shutil.copy(CACHED_RAW / name, source / name)
    monkeypatch.setenv("NIN_DATA_DIR", str(source))
    monkeypatch.setattr(data_module, "SYSTEM_DATA_DIR", tmp_path / "absent")
    loaded = load_fashion_mnist(device="cpu", cache_dir=tmp_path / "cache", download=False)
    assert loaded.train_images.shape == (60_000, 28, 28)
    assert (tmp_path / "cache" / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte").is_file()


def _no_local_copy(tmp_path, monkeypatch):
    monkeypatch.delenv("NIN_DATA_DIR", raising=False)
    monkeypatch.setattr(data_module, "SYSTEM_DATA_DIR", tmp_path / "absent")


def test_missing_data_without_download_names_both_fixes(tmp_path, monkeypatch):
    _no_local_copy(tmp_path, monkeypatch)
    with pytest.raises(DataNotFoundError, match="(?s)apt-get install dataset-fashion-mnist.*NIN_DATA_DIR") as info:
        load_fashion_mnist(cache_dir=tmp_path / "cache", download=False)
    assert "download=False" in str(info.value)


def test_failed_download_offline_names_both_fixes(tmp_path, monkeypatch):
    _no_local_copy(tmp_path, monkeypatch)

    def offline(self):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "download", offline)
    with pytest.raises(DataNotFoundError, match="(?s)download failed.*URLError.*dataset-fashion-mnist"):
        load_fashion_mnist(cache_dir=tmp_path / "cache", download=True)


def test_a_nin_data_dir_without_the_files_is_an_error_not_a_fallback(tmp_path, monkeypatch):
    monkeypatch.setenv("NIN_DATA_DIR", str(tmp_path / "nonexistent"))
    with pytest.raises(DataNotFoundError, match="NIN_DATA_DIR=.*nonexistent does not hold Fashion-MNIST "
                                                "\\(missing train-images-idx3-ubyte"):
        load_fashion_mnist(device="cpu", train_subset=10)


@pytest.mark.parametrize("kwargs, message", [
    ({"train_subset": 0}, "train_subset=0 is out of range: Fashion-MNIST has 60,000"),
    ({"train_subset": 60_001}, "train_subset=60001 is out of range"),
    ({"test_subset": 10_001}, "test_subset=10001 is out of range: Fashion-MNIST has 10,000"),
])
def test_subsets_beyond_the_data_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_fashion_mnist(device="cpu", **kwargs)


def test_unknown_split_is_a_clear_error(fashion):
    with pytest.raises(ValueError, match="Unknown split 'val'"):
        fashion.num_batches("val", 10)
