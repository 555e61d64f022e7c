"""Tiny datasets written in their REAL on-disk formats (MNIST idx, SVHN .mat, ImageNet-LT lists + JPEGs,
iNaturalist json, CIFAR pickles), for the tests that load them through the code users run."""

from __future__ import annotations

import gzip
import json
import pickle
import struct
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(folder: Path, per_class_train: int = 6, per_class_test: int = 2, gz: bool = False) -> None:
    """Four idx files; image i's pixel (0, 0) holds i, pixel (27, 27) its label."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, per_class in (("train", per_class_train), ("t10k", per_class_test)):
        labels = np.tile(np.arange(10), per_class).astype(np.uint8)
        images = np.zeros((len(labels), 28, 28), dtype=np.uint8)
        images[:, 0, 0] = np.arange(len(labels)) % 256
        images[:, 27, 27] = labels
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{prefix}-{kind}-ubyte"
            data = idx_bytes(array)
            if gz:
                with gzip.open(folder / f"{name}.gz", "wb") as f:
                    f.write(data)
            else:
                (folder / name).write_bytes(data)


def write_svhn(root: Path, n_train: int = 40, n_test: int = 10) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, n in (("train_32x32.mat", n_train), ("test_32x32.mat", n_test)):
        y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)  # 1..10, 10 = digit 0
        x = np.zeros((32, 32, 3, n), dtype=np.uint8)
        x[1, 2, 0, :], x[1, 2, 1, :], x[1, 2, 2, :] = 10, 20, 30  # marker at row 1, column 2
        x[0, 0, 0, :] = y[:, 0]
        scipy.io.savemat(str(root / name), {"X": x, "y": y})


def _jpeg(path: Path, value: int, size: int = 40) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (value, 255 - value, 128)).save(path, "JPEG")


# ImageNet-LT-like tree: class c has TRAIN_COUNTS[c] training images; 2 val and 2 test images per class
TRAIN_COUNTS = [6, 4, 2]


def write_imagenet_lt(root: Path, split_dir: Path | None = None) -> dict[str, int]:
    lists = split_dir or root
    lists.mkdir(parents=True, exist_ok=True)
    lines: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for c, n in enumerate(TRAIN_COUNTS):
        wnid = f"n0000000{c}"
        for i in range(n):
            rel = f"train/{wnid}/{wnid}_{i}.JPEG"
            _jpeg(root / rel, 40 * c + i)
            lines["train"].append(f"{rel} {c}")
        for split in ("val", "test"):
            for i in range(2):
                rel = f"val/{wnid}/ILSVRC2012_val_{split}{c}{i}.JPEG"
                _jpeg(root / rel, 40 * c + 10 + i)
                lines[split].append(f"{rel} {c}")
    for split, rows in lines.items():
        (lists / f"ImageNet_LT_{split}.txt").write_text("\n".join(rows) + "\n")
    return {k: len(v) for k, v in lines.items()}


def write_inat(root: Path, counts=(5, 3, 1), val_per_class: int = 1) -> None:
    for split, per_class in (("train", list(counts)), ("val", [val_per_class] * len(counts))):
        images, annotations = [], []
        for c, n in enumerate(per_class):
            for i in range(n):
                image_id = len(images) + (0 if split == "train" else 1000)
                rel = f"train_val2018/Plantae/{c}/{split}_{i}.jpg"
                _jpeg(root / rel, 30 * c + i)
                images.append({"id": image_id, "file_name": rel, "width": 40, "height": 40})
                annotations.append({"id": image_id, "image_id": image_id, "category_id": c})
        categories = [{"id": c, "name": f"species {c}"} for c in range(len(counts))]
        data = {"images": images, "annotations": annotations, "categories": categories}
        (root / f"{split}2018.json").write_text(json.dumps(data))


# A marker pixel at row 1, column 2 of every image: red 10, green 20, blue 30. Each 3072-byte row
# is the red plane, then green, then blue, each 32x32 row-major.
MARK = 1 * 32 + 2


def _rows(n: int, first_value: int) -> np.ndarray:
    data = np.zeros((n, 3072), dtype=np.uint8)
    data[:, MARK], data[:, 1024 + MARK], data[:, 2048 + MARK] = 10, 20, 30
    data[:, 0] = np.arange(first_value, first_value + n)  # red (0, 0) tells the images apart
    return data


def dump_pickle(path: Path, batch: dict) -> None:
    with path.open("wb") as f:
        pickle.dump(batch, f, protocol=2)  # the official files are python-2 era pickles


def write_cifar10(root: Path, per_batch: int = 2) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        start = (i - 1) * per_batch
        dump_pickle(
            folder / f"data_batch_{i}",
            {
                b"batch_label": f"training batch {i} of 5".encode(),
                b"labels": [(start + k) % 10 for k in range(per_batch)],
                b"data": _rows(per_batch, start),
                b"filenames": [b"x.png"] * per_batch,
            },
        )
    dump_pickle(
        folder / "test_batch", {b"labels": [9, 8, 7], b"data": _rows(3, 100), b"batch_label": b"test"}
    )
    return folder


def write_cifar100(root: Path) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n, first in (("train", 4, 0), ("test", 2, 50)):
        dump_pickle(
            folder / name,
            {
                b"filenames": [b"x.png"] * n,
                b"fine_labels": [99 - k for k in range(n)],
                b"coarse_labels": [19] * n,
                b"data": _rows(n, first),
            },
        )
    return folder
