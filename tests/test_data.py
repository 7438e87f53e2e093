import gzip
import shutil
import struct
import threading
import urllib.error
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import torchvision

import nin_utils.data as data_module
from nin_utils import FASHION_CLASSES, DataNotFoundError, UserError, load_fashion_mnist
from nin_utils.data import FASHION_MEAN, FASHION_STD, RAW_FILES

# Where load_fashion_mnist keeps torchvision's uncompressed copy, wherever the data came from
# (Debian's package, NIN_DATA_DIR or a download).
CACHED_RAW = Path.home() / ".cache" / "nin_utils" / "FashionMNIST" / "raw"


@pytest.mark.slow  # the real data set
def test_real_dataset_sizes_and_balance(fashion):
    assert fashion.train_images.shape == (60_000, 28, 28)
    assert fashion.test_images.shape == (10_000, 28, 28)
    assert fashion.train_images.dtype == torch.uint8
    assert torch.bincount(fashion.train_labels).tolist() == [6_000] * 10
    assert torch.bincount(fashion.test_labels).tolist() == [1_000] * 10
    assert len(FASHION_CLASSES) == 10 and FASHION_CLASSES[9] == "Ankle boot"


@pytest.mark.slow  # the real data set
def test_normalisation_constants_are_the_training_set_statistics(fashion):
    pixels = fashion.train_images.double() / 255
    assert pixels.mean().item() == pytest.approx(FASHION_MEAN, abs=1e-4)
    assert pixels.std().item() == pytest.approx(FASHION_STD, abs=1e-4)


def test_batches_are_resized_scaled_and_cover_the_split(synthetic):
    assert len(synthetic.test_labels) == 128
    batches = list(synthetic.batches("test", 48, resolution=96))
    assert len(batches) == synthetic.num_batches("test", 48) == 3
    x, y = batches[0]
    assert x.shape == (48, 1, 96, 96) and x.dtype == torch.float32 and y.shape == (48,)
    assert batches[-1][0].shape[0] == 128 - 2 * 48
    assert torch.equal(torch.cat([b[1] for b in batches]), synthetic.test_labels)
    assert all(0 <= b[0].min() and b[0].max() <= 1 for b in batches)
    # At 28 px nothing is resized: each batch is its images' pixels scaled to [0, 1], in order.
    whole = torch.cat([b[0] for b in synthetic.batches("test", 50, 28)])
    assert torch.equal(whole, synthetic.test_images.unsqueeze(1).float() / 255)


def test_shuffle_is_a_seeded_permutation(synthetic):
    labels = lambda seed: torch.cat([y for _, y in synthetic.batches("test", 50, 28, shuffle_seed=seed)])
    assert torch.equal(labels(1), labels(1))
    assert not torch.equal(labels(1), labels(2))
    assert torch.equal(labels(1).sort().values, synthetic.test_labels.sort().values)


def test_subsets_are_seeded_and_sized():
    a = load_fashion_mnist(device="cpu", train_subset=500, test_subset=100, seed=1)
    b = load_fashion_mnist(device="cpu", train_subset=500, test_subset=100, seed=1)
    c = load_fashion_mnist(device="cpu", train_subset=500, test_subset=100, seed=2)
    assert a.train_images.shape == (500, 28, 28) and a.test_labels.shape == (100,)
    assert torch.equal(a.train_images, b.train_images)
    assert not torch.equal(a.train_images, c.train_images)


@pytest.mark.slow  # copies and loads the real data set again (about 15 s on 2 cores)
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
    with pytest.raises(UserError, match=message):
        load_fashion_mnist(device="cpu", **kwargs)


def test_unknown_split_is_a_clear_error(synthetic):
    with pytest.raises(ValueError, match="Unknown split 'val'"):
        synthetic.num_batches("val", 10)


# ----------------------------------------------------------------- a tiny synthetic Fashion-MNIST

def _tiny_idx_files(folder, train=60, test=40):
    """The four IDX files of a tiny data set in ``folder``: every pixel of image i is i."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", train), ("t10k", test)):
        pixels = bytes(i for i in range(count) for _ in range(28 * 28))
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">4i", 2051, count, 28, 28) + pixels)
        labels = bytes(i % 10 for i in range(count))
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">2i", 2049, count) + labels)
    return folder


def test_the_test_subset_does_not_depend_on_the_training_subset(tmp_path, monkeypatch):
    monkeypatch.setenv("NIN_DATA_DIR", str(_tiny_idx_files(tmp_path / "idx")))
    test_images = [load_fashion_mnist(device="cpu", train_subset=n, test_subset=10, seed=3, download=False,
                                      cache_dir=tmp_path / "cache").test_images for n in (None, 20, 50)]
    assert all(torch.equal(images, test_images[0]) for images in test_images)
    other_seed = load_fashion_mnist(device="cpu", test_subset=10, seed=4, download=False,
                                    cache_dir=tmp_path / "cache")
    assert not torch.equal(other_seed.test_images, test_images[0])


def test_a_second_load_does_not_copy_the_files_again(tmp_path, monkeypatch):
    source = _tiny_idx_files(tmp_path / "idx")
    monkeypatch.setenv("NIN_DATA_DIR", str(source))
    raw = tmp_path / "cache" / "FashionMNIST" / "raw"
    stamps = lambda: {name: ((raw / name).stat().st_ino, (raw / name).stat().st_mtime_ns) for name in RAW_FILES}
    load_fashion_mnist(device="cpu", cache_dir=tmp_path / "cache", download=False)
    first = stamps()
    load_fashion_mnist(device="cpu", cache_dir=tmp_path / "cache", download=False)
    assert stamps() == first
    bigger = _tiny_idx_files(tmp_path / "bigger", train=70)
    for name in RAW_FILES[:2]:  # the training files change: they, and only they, are copied again
        shutil.copy(bigger / name, source / name)
    assert len(load_fashion_mnist(device="cpu", cache_dir=tmp_path / "cache", download=False).train_labels) == 70
    now = stamps()
    assert all(now[name] != first[name] for name in RAW_FILES[:2])
    assert all(now[name] == first[name] for name in RAW_FILES[2:])
    assert [p.name for p in raw.iterdir() if p.name.endswith(".partial")] == []


def test_two_workers_placing_the_same_copy_at_once_do_not_collide(tmp_path, monkeypatch):
    monkeypatch.setenv("NIN_DATA_DIR", str(_tiny_idx_files(tmp_path / "idx")))
    both_copying = threading.Barrier(2, timeout=5)
    copy = shutil.copyfileobj

    def in_step(src, dst, *args):  # both workers have opened their file before either renames it
        try:
            both_copying.wait()
        except threading.BrokenBarrierError:
            pass
        copy(src, dst, *args)

    monkeypatch.setattr(data_module.shutil, "copyfileobj", in_step)
    raw = tmp_path / "cache" / "FashionMNIST" / "raw"
    with ThreadPoolExecutor(2) as pool:
        placed = [pool.submit(data_module._place_local_copy, raw) for _ in range(2)]
        assert [future.result() for future in placed] == [True, True]
    assert all((raw / name).read_bytes() == (tmp_path / "idx" / name).read_bytes() for name in RAW_FILES)


def test_one_batch_iterator_shards_each_batch_among_processes(synthetic):
    whole = list(synthetic.batches("train", 64, 28, shuffle_seed=3))
    parts = [list(synthetic.batches("train", 64, 28, shuffle_seed=3, shard=(rank, 2))) for rank in (0, 1)]
    assert len(parts[0]) == len(parts[1]) == len(whole)
    for (x, y), (x0, y0), (x1, y1) in zip(whole, *parts):
        assert len(y0) == len(y1) == len(y) // 2
        assert torch.equal(torch.cat([y0, y1]), y) and torch.equal(torch.cat([x0, x1]), x)
    with pytest.raises(UserError, match="cannot be split evenly among 3 processes"):
        next(synthetic.batches("train", 63, 28, shard=(0, 3)))


def test_shifted_moves_the_test_images_and_fills_with_background(synthetic):
    from nin_utils import shifted
    moved = shifted(synthetic, 2)
    assert torch.equal(moved.test_images[:, 2:, 2:], synthetic.test_images[:, :-2, :-2])
    assert moved.test_images[:, :2].eq(0).all() and moved.test_images[:, :, :2].eq(0).all()
    assert torch.equal(moved.train_images, synthetic.train_images)
    assert torch.equal(shifted(synthetic, 0).test_images, synthetic.test_images)
