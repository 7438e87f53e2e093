"""Fashion-MNIST, kept on the device as uint8 and batched there.

Where the files come from, in order:

1. ``$NIN_DATA_DIR`` -- a folder holding the four original IDX files
   (``train-images-idx3-ubyte.gz`` ...; compressed or not);
2. ``/usr/share/datasets/fashion-mnist/`` -- Debian's ``dataset-fashion-mnist``;
3. torchvision's download (Colab and other machines with internet).

Local copies are placed in torchvision's ``FashionMNIST/raw/`` layout under a
cache folder, so ``torchvision.datasets.FashionMNIST`` reads them without a
download. Each split then becomes one uint8 tensor (60,000 x 28 x 28 is 47 MB)
moved to the device once. A batch is indexed, converted to float, normalised
and resized (``F.interpolate``) on the device: no per-sample PIL resize and no
worker processes, which is what starves a GPU on Colab's two CPU cores.
"""

from __future__ import annotations

import gzip
import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision

from .config import TEST_SIZE, TRAIN_SIZE, get_device

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
CHANCE_LOSS = math.log(len(FASHION_CLASSES))  # cross-entropy of a uniform guess: ln 10 = 2.303
# Pixel mean and standard deviation of the 60,000 training images, scaled to [0, 1]
# (a test recomputes them from the data).
FASHION_MEAN = 0.2860
FASHION_STD = 0.3530

SYSTEM_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class DataNotFoundError(RuntimeError):
    """Fashion-MNIST is neither on this machine nor downloadable."""


@dataclass
class FashionMNISTData:
    """Both splits as tensors on one device: images uint8 ``(N, 28, 28)``, labels int64 ``(N,)``."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor

    @property
    def device(self) -> torch.device:
        """Where the images live (and where batches are made)."""
        return self.train_images.device

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images, labels)`` of ``"train"`` or ``"test"``: uint8 ``(N, 28, 28)`` and int64 ``(N,)``."""
        if name == "train":
            return self.train_images, self.train_labels
        if name == "test":
            return self.test_images, self.test_labels
        raise ValueError(f"Unknown split {name!r}: use 'train' or 'test'.")

    def num_batches(self, split: str, batch_size: int) -> int:
        """How many batches of ``batch_size`` one pass over ``split`` takes (the last may be smaller)."""
        return -(-len(self.split(split)[1]) // batch_size)

    def batches(self, split: str, batch_size: int, resolution: int, *,
                shuffle_seed: int | None = None, normalize: bool = True
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(images, labels)``: float ``(B, 1, resolution, resolution)`` and int64 ``(B,)``.

        ``shuffle_seed`` fixes the order (same seed, same order); ``None`` keeps
        the stored order. ``normalize`` maps pixels to zero mean, unit variance
        using the training set's statistics; otherwise pixels are in [0, 1].
        """
        images, labels = self.split(split)
        order = None if shuffle_seed is None else self.shuffled_order(split, shuffle_seed)
        for start in range(0, len(labels), batch_size):
            index = slice(start, start + batch_size) if order is None else order[start:start + batch_size]
            yield to_model_input(images[index], resolution, normalize), labels[index]


    def shuffled_order(self, split: str, shuffle_seed: int) -> torch.Tensor:
        """A permutation of the split's indices, on the device: the same seed gives the same order
        (in every process of a distributed run too)."""
        generator = torch.Generator().manual_seed(shuffle_seed)
        return torch.randperm(len(self.split(split)[1]), generator=generator).to(self.device)


def to_model_input(images: torch.Tensor, resolution: int, normalize: bool = True) -> torch.Tensor:
    """uint8 ``(B, 28, 28)`` -> float ``(B, 1, resolution, resolution)``, on the images' device."""
    x = images.unsqueeze(1).float().div_(255)
    if normalize:
        x = x.sub_(FASHION_MEAN).div_(FASHION_STD)
    if resolution != x.shape[-1]:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
    return x


def load_fashion_mnist(*, device: torch.device | str | None = None, train_subset: int | None = None,
                       test_subset: int | None = None, seed: int = 0,
                       cache_dir: str | os.PathLike | None = None, download: bool = True
                       ) -> FashionMNISTData:
    """Load real Fashion-MNIST onto ``device`` (default: CUDA if present, else CPU).

    ``train_subset`` / ``test_subset`` keep that many images (1 to 60,000 and
    1 to 10,000), drawn at random with ``seed`` (the same seed gives the same
    subset). ``cache_dir`` is where torchvision's layout lives (default
    ``~/.cache/nin_utils``). Raises ``ValueError`` for a subset out of range and
    ``DataNotFoundError`` naming the fixes when ``$NIN_DATA_DIR`` is set but lacks
    the files, or there is no local copy and the download is off or fails.
    """
    for name, count, size in (("train_subset", train_subset, TRAIN_SIZE), ("test_subset", test_subset, TEST_SIZE)):
        if count is not None and not 1 <= count <= size:
            raise ValueError(f"{name}={count} is out of range: Fashion-MNIST has {size:,} images "
                             f"in that split, so use 1 to {size:,} (or leave it unset for all of them).")
    train, test = (torchvision.datasets.FashionMNIST(fashion_mnist_root(cache_dir, download), train=split)
                   for split in (True, False))
    device = torch.device(device) if device is not None else get_device()
    generator = torch.Generator().manual_seed(seed)

    def take(dataset: torchvision.datasets.FashionMNIST, count: int | None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = dataset.data, dataset.targets
        if count is not None and count < len(labels):
            keep = torch.randperm(len(labels), generator=generator)[:count]
            images, labels = images[keep], labels[keep]
        return images.to(device), labels.to(device)

    return FashionMNISTData(*take(train, train_subset), *take(test, test_subset))


def fashion_mnist_root(cache_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The folder to pass as ``root`` to ``torchvision.datasets.FashionMNIST``, with the data in it.

    Places a local copy (``$NIN_DATA_DIR``, then Debian's) in torchvision's
    ``FashionMNIST/raw/`` layout under ``cache_dir`` (default ``~/.cache/nin_utils``),
    else lets torchvision download it there. Raises ``DataNotFoundError`` naming
    the fixes when neither works.
    """
    root = Path(cache_dir or Path.home() / ".cache" / "nin_utils")
    if _place_local_copy(root / "FashionMNIST" / "raw"):
        return root
    try:
        torchvision.datasets.FashionMNIST(root, download=download)
    except Exception as error:  # torchvision raises RuntimeError, URLError, OSError...
        searched = [p for p in (os.environ.get("NIN_DATA_DIR"), SYSTEM_DATA_DIR) if p]
        how = "the download failed" if download else "download=False"
        raise DataNotFoundError(
            f"Fashion-MNIST is not on this machine (looked in {', '.join(map(str, searched))} "
            f"and {root}) and {how} ({type(error).__name__}: {error}). Fix it one of two ways:\n"
            f"  * on Debian/Ubuntu: apt-get install dataset-fashion-mnist\n"
            f"  * or set NIN_DATA_DIR to a folder with the four files "
            f"{', '.join(f + '.gz' for f in RAW_FILES)}") from error
    return root


def _place_local_copy(raw_dir: Path) -> bool:
    """Put the four IDX files into ``raw_dir`` from the first local source; True if all are there.

    A ``$NIN_DATA_DIR`` that lacks any of the files is an error, not a reason to
    quietly use another copy.
    """
    chosen = os.environ.get("NIN_DATA_DIR")
    if chosen and not all(_find(Path(chosen), name) for name in RAW_FILES):
        missing = [name for name in RAW_FILES if not _find(Path(chosen), name)]
        raise DataNotFoundError(f"NIN_DATA_DIR={chosen} does not hold Fashion-MNIST (missing "
                                f"{', '.join(missing)}): point it at a folder with the four IDX "
                                f"files, or unset it.")
    if all((raw_dir / name).is_file() for name in RAW_FILES) and not chosen:
        return True
    for source in (chosen, SYSTEM_DATA_DIR):
        if not source or not all(_find(Path(source), name) for name in RAW_FILES):
            continue
        raw_dir.mkdir(parents=True, exist_ok=True)
        for name in RAW_FILES:
            found = _find(Path(source), name)
            partial = raw_dir / (name + ".partial")  # rename at the end: no half-written file
            opener = gzip.open if found.suffix == ".gz" else open
            with opener(found, "rb") as src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst)
            partial.replace(raw_dir / name)
        return True
    return False


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / (name + ".gz")):
        if candidate.is_file():
            return candidate
    return None

