"""The split-list sources: ``imagenet_lt`` and ``inat2018``, lists of JPEGs over ``dataset.root``.

They return a :class:`~lt_bench.data.sources.FileSource`, whose images DataLoader workers decode
(:mod:`lt_bench.data.files`); their split files already define the long tail (profile ``none``).
Expected files (nothing is ever downloaded):

- ``imagenet_lt``: ``ImageNet_LT_train.txt``, ``ImageNet_LT_test.txt`` (and optionally
  ``ImageNet_LT_val.txt``) in ``dataset.split_dir`` or ``dataset.root``; each line
  ``relative/path.JPEG label``, the path relative to ``dataset.root`` (the ImageNet-2012 root holding
  ``train/`` and ``val/``).
- ``inat2018``: ``train2018.json`` and ``val2018.json`` (COCO-style: ``images`` with ``id`` and
  ``file_name``, ``annotations`` with ``image_id`` and ``category_id``, ``categories``) in
  ``dataset.split_dir`` or ``dataset.root``; ``file_name`` is relative to ``dataset.root``. The test
  set is ``val2018.json`` (the standard convention).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from lt_bench.data.sources import SOURCES, FileList, FileSource, require_root
from lt_bench.errors import ConfigError, DataError

# ------------------------------------------------------------------------------------- ImageNet-LT

_IMAGENET_LT_FILES = {s: f"ImageNet_LT_{s}.txt" for s in ("train", "val", "test")}


def _imagenet_lt_help(root: Path, split_dir: Path) -> str:
    where = f"{split_dir}/ (dataset.split_dir)" if split_dir != root else f"{root}/"
    return (
        "expected layout:\n"
        f"  {where}\n    ImageNet_LT_train.txt\n    ImageNet_LT_val.txt   (optional)\n"
        "    ImageNet_LT_test.txt\n"
        f"  {root}/   (dataset.root: the ImageNet-2012 root the paths are relative to)\n"
        "    train/n01440764/n01440764_10026.JPEG ...\n    val/n01440764/ILSVRC2012_val_00000293.JPEG ...\n"
        "each list line is 'relative/path.JPEG label' with label in 0..999 (the lists come from the "
        "OLTR release, https://github.com/zhmiao/OpenLongTailRecognition-OLTR); nothing is downloaded"
    )


def read_path_label_list(path: Path, help_text: str) -> FileList:
    """A ``relative/path label`` text file, one image per line (blank lines ignored).

    Raises:
        DataError: a line without exactly a path and an integer label >= 0, or an empty list.
    """
    paths: list[str] = []
    labels: list[int] = []
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"could not read {path} ({type(err).__name__}: {err}); {help_text}") from None
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        parts = line.rsplit(maxsplit=1)
        label = parts[1] if len(parts) == 2 else ""
        if not label.lstrip("-").isdigit() or int(label) < 0:
            raise DataError(
                f"{path}:{number}: malformed line {line[:120]!r}, expected 'relative/path.JPEG label' "
                f"with an integer label >= 0; {help_text}"
            )
        paths.append(parts[0])
        labels.append(int(label))
    if not paths:
        raise DataError(f"{path} lists no images; {help_text}")
    return FileList(paths, torch.tensor(labels, dtype=torch.int64))


def _split_dir(root: Path, split_dir: str | Path | None) -> Path:
    return root if split_dir in (None, "") else Path(split_dir).expanduser()


def _root_folder(root: str | Path | None, holds: str, help_of: Callable[[Path, Path], str]) -> Path:
    # a missing root would otherwise report every listed image as missing
    root = require_root(root, holds)
    if not root.is_dir():
        raise DataError(
            f"dataset.root={root} is not a directory; it must hold {holds}; {help_of(root, root)}"
        )
    return root


@SOURCES.register("imagenet_lt")
def load_imagenet_lt(
    root: str | Path | None, split_dir: str | Path | None = None, use_val_list: bool = False
) -> FileSource:
    """ImageNet-LT's lists over an ImageNet root; ``val`` is read only when ``use_val_list``."""
    root = _root_folder(root, "ImageNet-2012's train/ and val/ (the list paths' base)", _imagenet_lt_help)
    lists = _split_dir(root, split_dir)
    help_text = _imagenet_lt_help(root, lists)
    splits: dict[str, FileList] = {}
    for split in ("train", "test", "val") if use_val_list else ("train", "test"):
        path = lists / _IMAGENET_LT_FILES[split]
        if not path.is_file():
            raise DataError(f"ImageNet-LT list not found: {path}; {help_text}")
        splits[split] = read_path_label_list(path, help_text)
    num_classes = max(int(f.labels.max()) for f in splits.values()) + 1
    return FileSource(
        "imagenet_lt", root, splits["train"], splits["test"], splits.get("val"), num_classes=num_classes
    )


# ----------------------------------------------------------------------------------- iNat 2018

_INAT_FILES = {"train": "train2018.json", "val": "val2018.json"}


def _inat_help(root: Path, split_dir: Path) -> str:
    where = f"{split_dir}/ (dataset.split_dir)" if split_dir != root else f"{root}/"
    return (
        "expected layout:\n"
        f"  {where}\n    train2018.json\n    val2018.json\n"
        f"  {root}/   (dataset.root: the folder the json 'file_name' entries are relative to)\n"
        "    train_val2018/Plantae/7477/3b60c9486db1d2ee875f11a669fbde4a.jpg ...\n"
        "each json is COCO-style: 'images' [{id, file_name}], 'annotations' [{image_id, category_id}], "
        "'categories' [{id, ...}] (from https://github.com/visipedia/inat_comp/tree/master/2018); "
        "nothing is downloaded"
    )


def read_coco_list(path: Path, help_text: str) -> tuple[FileList, int]:
    """A COCO-style json as ``(file list, number of classes it names)``, one label per image.

    Raises:
        DataError: unreadable json, missing keys, an image without (or with two different)
            annotations, or a category id (of an annotation or of ``categories``) that is not an
            integer >= 0.
    """
    try:
        with path.open() as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        raise DataError(f"could not read {path} ({type(err).__name__}: {err}); {help_text}") from None
    if not isinstance(data, dict) or not all(k in data for k in ("images", "annotations")):
        raise DataError(f"{path} has no 'images' and 'annotations' lists; {help_text}")
    try:
        label_of: dict = {}
        for ann in data["annotations"]:
            image_id, category = ann["image_id"], ann["category_id"]
            if not isinstance(category, int) or isinstance(category, bool) or category < 0:
                raise DataError(
                    f"{path}: category_id {category!r} of image {image_id!r} is not an integer >= 0"
                )
            if label_of.setdefault(image_id, category) != category:
                raise DataError(f"{path}: image {image_id!r} has two different category_id annotations")
        paths, labels = [], []
        for image in data["images"]:
            if image["id"] not in label_of:
                raise DataError(f"{path}: image {image['id']!r} ({image['file_name']}) has no annotation")
            paths.append(str(image["file_name"]))
            labels.append(label_of[image["id"]])
        category_ids = [c["id"] for c in data.get("categories", [])]
        bad = [c for c in category_ids if not isinstance(c, int) or isinstance(c, bool) or c < 0]
        if bad:
            raise DataError(f"{path}: categories[].id {bad[0]!r} is not an integer >= 0; {help_text}")
    except (KeyError, TypeError) as err:
        raise DataError(f"{path}: malformed entry (missing {err}); {help_text}") from None
    if not paths:
        raise DataError(f"{path} lists no images; {help_text}")
    num_classes = max([*labels, *category_ids]) + 1
    return FileList(paths, torch.tensor(labels, dtype=torch.int64)), num_classes


@SOURCES.register("inat2018")
def load_inat2018(
    root: str | Path | None, split_dir: str | Path | None = None, use_val_list: bool = False
) -> FileSource:
    """iNaturalist 2018: train from ``train2018.json``, test from ``val2018.json``; no val list.

    Raises:
        ConfigError: ``use_val_list`` (there is no separate validation list).
    """
    if use_val_list:
        raise ConfigError(
            "dataset.use_val_list=true: inat2018 has no separate validation list; use dataset.val_fraction"
        )
    root = _root_folder(root, "train_val2018/ (the json file_name entries' base)", _inat_help)
    lists = _split_dir(root, split_dir)
    help_text = _inat_help(root, lists)
    splits, classes = {}, []
    for split, name in _INAT_FILES.items():
        path = lists / name
        if not path.is_file():
            raise DataError(f"iNaturalist 2018 file not found: {path}; {help_text}")
        splits[split], k = read_coco_list(path, help_text)
        classes.append(k)
    return FileSource("inat2018", root, splits["train"], splits["val"], None, num_classes=max(classes))
