"""The CIFAR sources: ``cifar10`` / ``cifar100`` from the python pickle batches.

``dataset.root`` holds ``cifar-10-batches-py/`` (``cifar-100-python/``) or is that folder. The pickles
are unpickled, so only point ``root`` at files you trust.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lt_bench.data.sources import SOURCES, ImageSource, TensorSplit, require_root
from lt_bench.errors import ConfigError, DataError

# The per-channel statistics every CIFAR-LT reference code base (LDAM-DRW and the PPL, KPS and VS
# code built on it) normalises with, for CIFAR-10 and CIFAR-100 alike; kept so recipes match.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)


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
