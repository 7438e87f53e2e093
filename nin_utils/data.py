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
import io
import json
import math
import os
import shutil
import uuid
from collections.abc import Iterator
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch
import torch.nn.functional as F
import torchvision

from .config import TEST_SIZE, TRAIN_SIZE, get_device
from .errors import UserError

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
SOURCES_FILE = "sources.json"  # beside the local copy: where each file came from (path, size, mtime)


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
                shuffle_seed: int | None = None, shard: tuple[int, int] = (0, 1)
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(images, labels)``: float ``(B, 1, resolution, resolution)`` in [0, 1] and int64 ``(B,)``.

        The one batch iterator: training, evaluation and data-parallel training use it.
        ``shuffle_seed`` fixes the order (same seed, same order); ``None`` keeps the
        stored order. ``shard=(rank, world)`` yields process ``rank``'s equal part of
        every batch of ``batch_size`` (which ``world`` must divide, as must the split's
        size): the processes together see exactly the batches one process would.
        Normalisation is the model's job (``NiN``'s ``input_norm``).
        """
        rank, world = shard
        self.check_shards(split, batch_size, world)
        images, labels = self.split(split)
        order = (torch.arange(len(labels), device=self.device) if shuffle_seed is None
                 else self.shuffled_order(split, shuffle_seed))
        for start in range(0, len(labels), batch_size):
            index = order[start:start + batch_size].tensor_split(world)[rank]
            yield to_model_input(images[index], resolution), labels[index]

    def check_shards(self, split: str, batch_size: int, world: int) -> None:
        """Raise ``UserError`` unless ``world`` processes can share the split's batches evenly."""
        size = len(self.split(split)[1])
        if size % world:
            kind = "training" if split == "train" else split
            raise UserError(f"The {size:,} {kind} images cannot be split evenly among {world} "
                            f"processes: use a {kind} subset that is a multiple of {world} "
                            f"(e.g. {size - size % world:,}), or another number of processes.")
        if batch_size % world:
            raise UserError(f"A batch of {batch_size} cannot be split evenly among {world} processes.")

    def shuffled_order(self, split: str, shuffle_seed: int) -> torch.Tensor:
        """A permutation of the split's indices, on the device: the same seed gives the same order
        (in every process of a distributed run too)."""
        generator = torch.Generator().manual_seed(shuffle_seed)
        return torch.randperm(len(self.split(split)[1]), generator=generator).to(self.device)


def to_model_input(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """uint8 ``(B, 28, 28)`` -> float ``(B, 1, resolution, resolution)`` in [0, 1], on the images' device."""
    x = images.unsqueeze(1).float().div_(255)
    if resolution != x.shape[-1]:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
    return x


def shifted(data: FashionMNISTData, pixels: int, split: str = "test") -> FashionMNISTData:
    """``data`` with one split's images moved ``pixels`` right and down (negative: left and up),
    the uncovered border filled with 0, the background: a test of translation robustness."""
    images = data.split(split)[0]
    moved = torch.zeros_like(images)
    if pixels >= 0:
        moved[:, pixels:, pixels:] = images[:, :images.shape[1] - pixels, :images.shape[2] - pixels]
    else:
        moved[:, :pixels, :pixels] = images[:, -pixels:, -pixels:]
    return dataclasses.replace(data, **{f"{split}_images": moved})


def load_fashion_mnist(*, device: torch.device | str | None = None, train_subset: int | None = None,
                       test_subset: int | None = None, seed: int = 0,
                       cache_dir: str | os.PathLike | None = None, download: bool = True
                       ) -> FashionMNISTData:
    """Load real Fashion-MNIST onto ``device`` (default: CUDA if present, else CPU).

    ``train_subset`` / ``test_subset`` keep that many images (1 to 60,000 and
    1 to 10,000), drawn at random with ``seed`` (the same seed gives the same
    subset). ``cache_dir`` is where torchvision's layout lives (default
    ``~/.cache/nin_utils``). Raises ``UserError`` for a subset out of range and
    ``DataNotFoundError`` naming the fixes when ``$NIN_DATA_DIR`` is set but lacks
    the files, or there is no local copy and the download is off or fails.
    """
    for name, count, size in (("train_subset", train_subset, TRAIN_SIZE), ("test_subset", test_subset, TEST_SIZE)):
        if count is not None and not 1 <= count <= size:
            raise UserError(f"{name}={count} is out of range: Fashion-MNIST has {size:,} images "
                            f"in that split, so use 1 to {size:,} (or leave it unset for all of them).")
    train, test = (torchvision.datasets.FashionMNIST(fashion_mnist_root(cache_dir, download), train=split)
                   for split in (True, False))
    device = torch.device(device) if device is not None else get_device()

    def take(dataset: torchvision.datasets.FashionMNIST, count: int | None, split: str
             ) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = dataset.data, dataset.targets
        if count is not None and count < len(labels):
            keep = torch.randperm(len(labels), generator=_subset_generator(seed, split))[:count]
            images, labels = images[keep], labels[keep]
        return images.to(device), labels.to(device)

    return FashionMNISTData(*take(train, train_subset, "train"), *take(test, test_subset, "test"))


def _subset_generator(seed: int, split: str) -> torch.Generator:
    """The generator that draws ``split``'s subset: one per split, so neither subset depends on the
    other's size. The training split keeps the seed's own stream; the test split's starts 2**32 further."""
    return torch.Generator().manual_seed(seed + (2**32 if split == "test" else 0))


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
    quietly use another copy. A file is copied only when it is missing or its source
    changed (``sources.json`` in ``raw_dir`` records each source's path, size and mtime).
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
        copied, stamps = _copied_from(raw_dir), {}
        for name in RAW_FILES:
            found = _find(Path(source), name)
            stat = found.stat()
            stamps[name] = [str(found.resolve()), stat.st_size, stat.st_mtime_ns]
            if copied.get(name) == stamps[name] and (raw_dir / name).is_file():
                continue
            opener = gzip.open if found.suffix == ".gz" else open
            with opener(found, "rb") as src:
                _write_whole(raw_dir / name, src)
        if stamps != copied:
            _write_whole(raw_dir / SOURCES_FILE, io.BytesIO(json.dumps(stamps, indent=1).encode()))
        return True
    return False


def _copied_from(raw_dir: Path) -> dict[str, list]:
    """What ``sources.json`` in ``raw_dir`` records (nothing when it is missing or unreadable)."""
    try:
        return json.loads((raw_dir / SOURCES_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _write_whole(target: Path, src: BinaryIO) -> None:
    """Copy ``src`` into ``target`` through a temporary file of this writer's own, renamed at the end:
    a reader never sees half a file, and processes writing the same file at once do not collide."""
    partial = target.with_name(f"{target.name}.{uuid.uuid4().hex}.partial")  # umask's mode, unlike mkstemp
    try:
        with open(partial, "xb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / (name + ".gz")):
        if candidate.is_file():
            return candidate
    return None

