"""The idx sources: ``mnist`` / ``fashion_mnist`` from the four idx(.gz) files, and :func:`read_idx`.

``dataset.root`` holds ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``
and ``t10k-labels-idx1-ubyte`` (plain or gzipped), directly or in torchvision's ``raw/`` folder; without
``dataset.root``, Fashion-MNIST is read from :data:`DEBIAN_FASHION_MNIST` (``make data``).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from lt_bench.data.sources import SOURCES, ImageSource, TensorSplit, require_root
from lt_bench.errors import ConfigError, DataError

# Commonly used per-channel statistics of the training sets (0..1 scale); fixed constants rather than
# computed, so a long-tailed subset normalises exactly as the balanced set does in published recipes.
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)

_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_IDX_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
_IDX_URLS = {
    "mnist": "https://yann.lecun.com/exdb/mnist/ (or any MNIST mirror)",
    "fashion_mnist": "https://github.com/zalandoresearch/fashion-mnist (data/fashion/), or run `make data` "
    "(Debian's dataset-fashion-mnist, into /usr/share/datasets/fashion-mnist)",
}
# where Debian's dataset-fashion-mnist package (`make data`) puts the four files
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def _idx_layout_help(root: Path, kind: str) -> str:
    files = "\n".join(f"    {name}[.gz]" for name in _IDX_FILES.values())
    return (
        f"expected layout:\n  {root}/\n{files}\n"
        f"(or torchvision's {root}/{_IDX_FOLDERS[kind]}/raw/ holding the same files; plain or gzipped). "
        f"Get the four files from {_IDX_URLS[kind]}; nothing is downloaded for you"
    )


def read_idx(path: str | Path) -> np.ndarray:
    """One idx file (plain or ``.gz``) as a uint8 array of the shape its header gives.

    The idx format: two zero bytes, a type byte (0x08 = unsigned byte, the only type MNIST uses),
    a byte giving the number of dimensions, then each dimension as a big-endian int32, then the data.

    Raises:
        DataError: unreadable file, bad magic number, or a data size that does not match the header.
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError) as err:
        raise DataError(f"could not read idx file {path} ({type(err).__name__}: {err})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an idx file: bad magic number {raw[:4].hex() or '(empty)'}")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != 0x08:
        raise DataError(f"idx file {path}: data type 0x{dtype_code:02x}, expected 0x08 (unsigned byte)")
    if ndim < 1 or len(raw) < 4 + 4 * ndim:
        raise DataError(f"idx file {path}: header announces {ndim} dimensions but is truncated")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    expected = int(np.prod(dims, dtype=np.int64))
    if data.size != expected:
        raise DataError(
            f"idx file {path}: header gives shape {dims} ({expected} values) but the file holds {data.size}"
        )
    return data.reshape(dims)


def _find_idx(root: Path, kind: str, stem: str) -> Path:
    folders = (root, root / _IDX_FOLDERS[kind] / "raw", root / "raw")
    for folder in folders:
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    raise DataError(f"{kind} file not found: {root / stem}[.gz]; " + _idx_layout_help(root, kind))


def _read_idx_split(root: Path, kind: str, split: str) -> TensorSplit:
    images_path = _find_idx(root, kind, _IDX_FILES[f"{split}_images"])
    labels_path = _find_idx(root, kind, _IDX_FILES[f"{split}_labels"])
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise DataError(
            f"idx file {images_path}: shape {images.shape}, expected 3 dimensions (N, rows, cols)"
        )
    if len(images) == 0:
        raise DataError(f"idx file {images_path} holds no images; the file is damaged, get it again")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(
            f"idx file {labels_path}: shape {labels.shape}, expected ({len(images)},), one label per image "
            f"of {images_path}"
        )
    if labels.size and labels.max() > 9:
        raise DataError(f"idx file {labels_path}: labels outside 0..9")
    x = torch.from_numpy(images.copy()).unsqueeze(1)  # [N, 1, H, W]
    return TensorSplit(x, torch.from_numpy(labels.astype(np.int64)))


def load_idx_dataset(root: str | Path | None, kind: str = "mnist") -> ImageSource:
    """MNIST (``kind="mnist"``) or Fashion-MNIST (``kind="fashion_mnist"``) from the four idx files.

    ``root`` holds ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``
    and ``t10k-labels-idx1-ubyte`` (each plain or ``.gz``), directly or in torchvision's
    ``<root>/MNIST/raw/`` (``<root>/FashionMNIST/raw/``). Images ``[N, 1, 28, 28]`` uint8, 10 classes;
    the test set is the official 10,000-image t10k set.
    """
    if kind not in _IDX_FOLDERS:
        raise ConfigError(f"idx dataset kind={kind!r}; choose one of: {', '.join(_IDX_FOLDERS)}")
    root = require_root(root, "the four idx files (train-images-idx3-ubyte[.gz] ...)")
    train, test = _read_idx_split(root, kind, "train"), _read_idx_split(root, kind, "test")
    mean, std = (MNIST_MEAN, MNIST_STD) if kind == "mnist" else (FASHION_MNIST_MEAN, FASHION_MNIST_STD)
    return ImageSource(train, test, num_classes=10, mean=mean, std=std)


@SOURCES.register("mnist")
def load_mnist(root: str | Path | None) -> ImageSource:
    """MNIST from its idx files (see :func:`load_idx_dataset`)."""
    return load_idx_dataset(root, "mnist")


@SOURCES.register("fashion_mnist")
def load_fashion_mnist(root: str | Path | None = None) -> ImageSource:
    """Fashion-MNIST from its idx files (see :func:`load_idx_dataset`); without ``dataset.root``, from
    :data:`DEBIAN_FASHION_MNIST` when that folder exists."""
    if root is None or str(root) == "":
        if not DEBIAN_FASHION_MNIST.is_dir():
            raise ConfigError(
                f"dataset.root is not set and {DEBIAN_FASHION_MNIST} does not exist: run `make data` "
                "(installs Debian's dataset-fashion-mnist there), or put the four idx files "
                "(train-images-idx3-ubyte[.gz] ...) in DIR and set dataset.root=DIR"
            )
        root = DEBIAN_FASHION_MNIST
    return load_idx_dataset(root, "fashion_mnist")
