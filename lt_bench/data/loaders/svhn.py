"""The SVHN source: ``svhn`` (cropped digits) from ``train_32x32.mat`` / ``test_32x32.mat``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lt_bench.data.sources import SOURCES, ImageSource, TensorSplit, require_root
from lt_bench.errors import DataError

# Commonly used per-channel statistics of the training set (0..1 scale); fixed constants rather than
# computed, so a long-tailed subset normalises exactly as the balanced set does in published recipes.
SVHN_MEAN, SVHN_STD = (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)

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
