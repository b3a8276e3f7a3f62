"""Image datasets with coarse labels (fine labels are kept for evaluation only).

Every loader returns :class:`ImageSplits` (train / val / test :class:`ImageSet` s). Small datasets (CIFAR,
Fashion-MNIST) are held in memory as uint8 arrays; ImageNet-based ones (BREEDS, tieredImageNet, see
:mod:`.imagenet`) keep file paths and decode on demand.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)

#: CIFAR-100 fine label ids left out of CIFAR68 (superclasses then hold unequal numbers of fine classes).
CIFAR68_DROPPED = (0, 2, 7, 9, 11, 15, 16, 21, 22, 25, 26, 27, 30, 40, 42, 45, 47, 49, 50, 51, 57, 61, 70, 72, 81)
CIFAR68_DROPPED += (85, 88, 89, 90, 93, 94, 95)

#: Range of the per-class fractions of CIFAR-SI (sample imbalance).
CIFAR_SI_FRACTIONS = (0.32, 0.99)

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
#: The coarse grouping used by ``bench/image_fashion.py``: 5 coarse classes over the 10 fine ones.
FASHION_MNIST_COARSE = {
    "tops": ("T-shirt/top", "Pullover", "Coat", "Shirt"),
    "footwear": ("Sandal", "Sneaker", "Ankle boot"),
    "trouser": ("Trouser",),
    "dress": ("Dress",),
    "bag": ("Bag",),
}
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # Debian package dataset-fashion-mnist


@dataclass(frozen=True)
class ImageSet:
    """Images with integer coarse and fine labels (names index them).

    Exactly one of ``pixels`` (``(n, H, W, C)`` uint8, all the same size) and ``paths`` (image files, decoded
    and resized to ``image_size`` × ``image_size`` on demand) is set.
    """

    coarse: np.ndarray
    fine: np.ndarray
    coarse_names: tuple[str, ...]
    fine_names: tuple[str, ...]
    pixels: np.ndarray | None = None
    paths: tuple[str, ...] | None = None
    image_size: int = 32

    def __post_init__(self):
        if (self.pixels is None) == (self.paths is None):
            raise ValueError("An ImageSet holds either pixels or paths.")
        n = self.pixels.shape[0] if self.pixels is not None else len(self.paths)
        if self.coarse.shape != (n,) or self.fine.shape != (n,):
            raise ValueError(f"{n} images but {self.coarse.shape[0]} coarse and {self.fine.shape[0]} fine labels.")

    def __len__(self) -> int:
        return self.coarse.shape[0]

    @property
    def n_channels(self) -> int:
        return self.pixels.shape[3] if self.pixels is not None else 3

    def subset(self, indices: np.ndarray) -> ImageSet:
        indices = np.asarray(indices, dtype=np.int64)
        return replace(
            self,
            coarse=self.coarse[indices],
            fine=self.fine[indices],
            pixels=None if self.pixels is None else self.pixels[indices],
            paths=None if self.paths is None else tuple(self.paths[i] for i in indices),
        )

    def load(self, indices: np.ndarray) -> torch.Tensor:
        """Images ``indices`` as a ``(B, C, H, W)`` uint8 tensor on the CPU."""
        indices = np.asarray(indices, dtype=np.int64)
        if self.pixels is not None:
            return torch.from_numpy(np.ascontiguousarray(self.pixels[indices])).permute(0, 3, 1, 2)
        # PIL releases the GIL while decoding and resizing, so threads decode in parallel.
        with ThreadPoolExecutor() as pool:
            images = list(pool.map(lambda i: _decode(self.paths[i], self.image_size), indices))
        return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)

    def cached(self, folder: str | Path, name: str, chunk: int = 4096) -> ImageSet:
        """The same images decoded once into ``folder/name.npy`` (a memory-mapped uint8 array), as an
        in-memory set; later calls reuse the file if it was made from the same files at the same size.

        Decoding an ImageNet-sized image takes milliseconds; training reads every image (and its neighbours)
        every epoch, so decoding them once saves that work every epoch.
        """
        if self.paths is None:
            return self
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        array_path, key_path = folder / f"{name}.npy", folder / f"{name}.json"
        key = {
            "image_size": self.image_size,
            "n_images": len(self),
            "paths_sha256": hashlib.sha256("\n".join(self.paths).encode()).hexdigest(),
        }
        if not (array_path.is_file() and key_path.is_file() and json.loads(key_path.read_text()) == key):
            shape = (len(self), self.image_size, self.image_size, 3)
            partial = folder / f"{name}.partial.npy"
            pixels = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=shape)
            for start in range(0, len(self), chunk):
                rows = np.arange(start, min(len(self), start + chunk))
                pixels[rows] = self.load(rows).permute(0, 2, 3, 1).numpy()
                logger.info("decoding %s: %d / %d images", name, rows[-1] + 1, len(self))
            pixels.flush()
            del pixels
            os.replace(partial, array_path)  # only a complete array is ever found under the final name
            key_path.write_text(json.dumps(key))
        pixels = np.load(array_path, mmap_mode="r")
        return replace(self, pixels=pixels, paths=None)


def _decode(path: str, size: int) -> np.ndarray:
    """An RGB image resized so its shorter side is ``size``, then centre-cropped to ``size`` × ``size``."""
    try:
        from PIL import Image
    except ImportError:  # an optional dependency: only image folders need it
        raise ImportError("Reading image files needs Pillow: pip install 'falcon-sc[image]'.") from None

    try:
        image = Image.open(path)
        image.load()
    except OSError as err:
        raise OSError(f"Cannot read the image {path}: {err}. Remove or replace the file.") from err
    with image:
        image = image.convert("RGB")
        scale = size / min(image.size)
        width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
        image = image.resize((width, height), Image.BILINEAR)
        left, top = (width - size) // 2, (height - size) // 2
        return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


@dataclass(frozen=True)
class ImageSplits:
    """Training images (FALCON sees their coarse labels only), and validation and test images."""

    name: str
    train: ImageSet
    val: ImageSet
    test: ImageSet

    @property
    def n_fine(self) -> int:
        return len(np.unique(self.train.fine))


def split_per_class(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a train/val split that puts ``val_fraction`` of every class (at least one image of classes
    with two or more) in val."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_val = 0
        if members.size > 1 and val_fraction > 0:
            n_val = max(1, round(val_fraction * members.size))
        val.append(members[:n_val])
        train.append(members[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def keep_fine_classes(images: ImageSet, keep: np.ndarray) -> ImageSet:
    """Only the images whose fine label is in ``keep`` (labels keep their ids; see :func:`relabel_together`)."""
    return images.subset(np.flatnonzero(np.isin(images.fine, keep)))


def subsample_classes(images: ImageSet, fractions: np.ndarray, seed: int) -> ImageSet:
    """Keep ``fractions[f]`` of the images of every fine class ``f`` (at least one), chosen at random."""
    rng = np.random.default_rng(seed)
    kept = []
    for label in np.unique(images.fine):
        members = rng.permutation(np.flatnonzero(images.fine == label))
        kept.append(members[: max(1, int(fractions[label] * members.size))])
    return images.subset(np.sort(np.concatenate(kept)))


def _splits(name: str, pool: ImageSet, test: ImageSet, val_fraction: float, seed: int) -> ImageSplits:
    """``pool`` split per fine class into train and val; labels renumbered over the classes present."""
    pool, test = relabel_together(pool, test)
    train_idx, val_idx = split_per_class(pool.fine, val_fraction, seed)
    return ImageSplits(name, pool.subset(train_idx), pool.subset(val_idx), test)


def relabel_together(pool: ImageSet, test: ImageSet) -> tuple[ImageSet, ImageSet]:
    """Both sets with coarse and fine labels renumbered consecutively over the classes present in ``pool``
    (names follow; test images of fine classes absent from ``pool`` are dropped)."""
    test = test.subset(np.flatnonzero(np.isin(test.fine, pool.fine)))
    coarse_ids, fine_ids = np.unique(pool.coarse), np.unique(pool.fine)
    names = {
        "coarse_names": tuple(pool.coarse_names[i] for i in coarse_ids),
        "fine_names": tuple(pool.fine_names[i] for i in fine_ids),
    }

    def renumber(images: ImageSet) -> ImageSet:
        coarse, fine = np.searchsorted(coarse_ids, images.coarse), np.searchsorted(fine_ids, images.fine)
        return replace(images, coarse=coarse.astype(np.int64), fine=fine.astype(np.int64), **names)

    return renumber(pool), renumber(test)


# ---------------------------------------------------------------------------------------------- CIFAR-100


def _cifar_dir(root: str | Path) -> Path:
    root = Path(root)
    for candidate in (root, root / "cifar-100-python"):
        if (candidate / "train").is_file() and (candidate / "meta").is_file():
            return candidate
    raise FileNotFoundError(
        f"No CIFAR-100 python files under {root}: expected 'train', 'test' and 'meta' in it or in its "
        "'cifar-100-python' folder (the archive cifar-100-python.tar.gz from "
        "https://www.cs.toronto.edu/~kriz/cifar.html, extracted)."
    )


def _unpickle(path: Path) -> dict:
    # The CIFAR distribution format is a Python pickle; only open files from a source you trust.
    with open(path, "rb") as handle:
        return pickle.load(handle, encoding="bytes")


def _cifar_set(batch: dict, meta: dict) -> ImageSet:
    pixels = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return ImageSet(
        coarse=np.asarray(batch[b"coarse_labels"], dtype=np.int64),
        fine=np.asarray(batch[b"fine_labels"], dtype=np.int64),
        coarse_names=tuple(n.decode() for n in meta[b"coarse_label_names"]),
        fine_names=tuple(n.decode() for n in meta[b"fine_label_names"]),
        pixels=pixels,
        image_size=32,
    )


def load_cifar100(
    root: str | Path, *, variant: str = "cifar100", val_fraction: float = 0.1, seed: int = 0
) -> ImageSplits:
    """CIFAR-100 from its python pickle files, coarse = the 20 superclasses.

    ``variant``: ``"cifar100"`` (100 fine classes), ``"cifar68"`` (without ``CIFAR68_DROPPED``), or
    ``"cifar_si"`` (each fine class keeps a fraction of its training images drawn once, with ``seed``,
    uniformly from ``CIFAR_SI_FRACTIONS``; the test split stays complete). ``val_fraction`` of every fine
    class's training images form the validation split.
    """
    directory = _cifar_dir(root)
    meta = _unpickle(directory / "meta")
    pool, test = (_cifar_set(_unpickle(directory / part), meta) for part in ("train", "test"))
    if variant == "cifar68":
        keep = np.setdiff1d(np.arange(len(pool.fine_names)), CIFAR68_DROPPED)
        pool, test = keep_fine_classes(pool, keep), keep_fine_classes(test, keep)
    elif variant == "cifar_si":
        fractions = np.random.default_rng(seed).uniform(*CIFAR_SI_FRACTIONS, size=len(pool.fine_names))
        pool = subsample_classes(pool, fractions, seed)
    elif variant != "cifar100":
        raise ValueError(f"Unknown CIFAR variant {variant!r}; use 'cifar100', 'cifar68' or 'cifar_si'.")
    return _splits(variant, pool, test, val_fraction, seed)


# ------------------------------------------------------------------------------------------ Fashion-MNIST


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    n_dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(n_dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * n_dims).reshape(shape)


def load_fashion_mnist(
    root: str | Path = FASHION_MNIST_DIR, *, val_fraction: float = 0.1, seed: int = 0
) -> ImageSplits:
    """Fashion-MNIST (28 × 28 grey images) with the 5 coarse classes of ``FASHION_MNIST_COARSE``.

    ``root`` holds the four IDX files (``train-images-idx3-ubyte[.gz]`` …); the Debian package
    ``dataset-fashion-mnist`` installs them in ``FASHION_MNIST_DIR``.
    """
    root = Path(root)

    def read(stem: str) -> np.ndarray:
        for path in (root / f"{stem}.gz", root / stem):
            if path.is_file():
                return _read_idx(path)
        raise FileNotFoundError(
            f"{stem}[.gz] not found in {root}. Install the Debian package dataset-fashion-mnist or pass the "
            "folder holding the Fashion-MNIST IDX files."
        )

    coarse_names = tuple(FASHION_MNIST_COARSE)
    parent = {fine: coarse_names.index(c) for c, fines in FASHION_MNIST_COARSE.items() for fine in fines}
    parent_of_id = np.array([parent[name] for name in FASHION_MNIST_CLASSES], dtype=np.int64)

    def image_set(prefix: str) -> ImageSet:
        fine = read(f"{prefix}-labels-idx1-ubyte").astype(np.int64)
        return ImageSet(
            coarse=parent_of_id[fine],
            fine=fine,
            coarse_names=coarse_names,
            fine_names=FASHION_MNIST_CLASSES,
            pixels=read(f"{prefix}-images-idx3-ubyte")[..., None],
            image_size=28,
        )

    return _splits("fashion_mnist", image_set("train"), image_set("t10k"), val_fraction, seed)
