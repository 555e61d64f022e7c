"""The file backend and its sources: ImageNet-LT and iNaturalist 2018, read as JPEGs by DataLoader workers.

These sets are too large to hold in memory, so unlike the small-image sources
(:mod:`lt_bench.data.sources`, served by :mod:`lt_bench.data.memory`) a :class:`FileSource` is served by
:class:`FileData`: a normal :class:`torch.utils.data.DataLoader` with workers, per-image PIL decoding and
the standard ImageNet augmentation, yielding normalised float images. Their split files already define
the long tail (profile ``none``).

Training order is the in-memory backend's: both iterate :class:`lt_bench.data.samplers.EpochBatches`
(here through :class:`IndexLists`, the DataLoader's batch sampler), so DDP ranks and class-aware
schedules behave exactly as for CIFAR.

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
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, default_collate

from lt_bench.data.samplers import EpochBatches, EvalBatches
from lt_bench.data.sources import SOURCES, require_root
from lt_bench.errors import ConfigError, DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class FileList:
    """One split: image paths relative to the root and their int64 labels."""

    paths: list[str]
    labels: Tensor

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices: Tensor) -> FileList:
        idx = indices.tolist()
        return FileList([self.paths[i] for i in idx], self.labels[indices].clone())


@dataclass
class FileSource:
    """A file-based dataset: the splits its list files define, over ``root``."""

    name: str
    root: Path
    train: FileList
    test: FileList
    val: FileList | None
    num_classes: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD


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


def missing_files(root: Path, files: FileList) -> list[Path]:
    """The listed images that are not readable files under ``root`` (a stat each, nothing decoded)."""
    paths = (root / p for p in files.paths)
    return [path for path in paths if not (path.is_file() and os.access(path, os.R_OK))]


def require_files(source: FileSource) -> None:
    """Raise one :class:`DataError` naming the first missing or unreadable image of any split (and how
    many): at start, so that a run does not stop in the middle of an epoch for a file that is not there."""
    for split, files in (("train", source.train), ("val", source.val), ("test", source.test)):
        if files is None:
            continue
        missing = missing_files(source.root, files)
        if missing:
            raise DataError(
                f"{source.name}: {len(missing)} {split} image(s) listed but missing or unreadable under "
                f"dataset.root={source.root}, e.g. {missing[0]}; the list paths must be relative to "
                "dataset.root"
            )


# ------------------------------------------------------------------------------ dataset, transforms


def train_transform(image_size: int, mean: Sequence[float], std: Sequence[float], flip: bool = True):
    """RandomResizedCrop(size) + horizontal flip + ToTensor + Normalize (standard ImageNet training)."""
    from torchvision import transforms as T

    steps = [T.RandomResizedCrop(image_size)]
    if flip:
        steps.append(T.RandomHorizontalFlip())
    return T.Compose([*steps, T.ToTensor(), T.Normalize(mean, std)])


def eval_transform(image_size: int, mean: Sequence[float], std: Sequence[float]):
    """Resize(256/224 * size) + CenterCrop(size) + ToTensor + Normalize (standard ImageNet evaluation)."""
    from torchvision import transforms as T

    resize = int(round(image_size * 256 / 224))
    return T.Compose([T.Resize(resize), T.CenterCrop(image_size), T.ToTensor(), T.Normalize(mean, std)])


class ImageReadError(DataError):
    """An image that does not decode, raised in a DataLoader worker.

    torch re-raises a worker's exception in the main process as ``type(err)(text)``, the text holding the
    worker's whole traceback; this class keeps only the original message, the traceback's last line, so
    the run still stops with one line naming the file.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message.rstrip().rsplit(f"{type(self).__name__}: ", 1)[-1])


class ImageFileDataset(Dataset):
    """Images read from ``root / path`` with PIL, as RGB, transformed.

    Items are ``(image, label, index)`` when ``with_index`` (training: the index locates the sample
    for per-sample weights), else ``(image, label)``.
    """

    def __init__(self, root: Path, files: FileList, transform, with_index: bool = False) -> None:
        self.root, self.files, self.transform, self.with_index = Path(root), files, transform, with_index

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        from PIL import Image

        path = self.root / self.files.paths[index]
        try:
            with Image.open(path) as img:
                image = img.convert("RGB")
        except (OSError, ValueError) as err:
            raise ImageReadError(
                f"could not read image {path} ({type(err).__name__}: {err}); replace the file, or remove its "
                "line from the split list"
            ) from None
        x = self.transform(image)
        label = int(self.files.labels[index])
        return (x, label, index) if self.with_index else (x, label)


# ------------------------------------------------------------------------------------------ backend


class IndexLists:
    """A DataLoader ``batch_sampler`` over one of :mod:`lt_bench.data.samplers`' batch generators."""

    def __init__(self, batches: EpochBatches | EvalBatches) -> None:
        # Lightning calls ``loader.batch_sampler.sampler.set_epoch(epoch)`` each epoch
        self.sampler = batches

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.sampler:
            yield batch.indices.tolist()

    def __len__(self) -> int:
        return len(self.sampler)


def collate_tuple(items: list) -> tuple:
    """``default_collate``, as a tuple: the batch type the in-memory backend yields and methods unpack."""
    return tuple(default_collate(items))


class FileData:
    """The file backend: the splits as image lists, decoded and augmented by DataLoader workers.

    The workers' transforms already turn images into normalised floats, so a batch needs nothing more
    once it is on the device (``on_device`` is None). ``seed`` is not used: the workers' random crops
    draw from torch's generator, as torchvision's transforms do.
    """

    on_device = None
    in_channels = 3  # every image is converted to RGB

    def __init__(
        self, source: FileSource, train: FileList, val: FileList | None, cfg: DictConfig, seed: int
    ) -> None:
        if cfg.num_workers < 0:
            raise ConfigError(f"dataset.num_workers={cfg.num_workers} must be >= 0")
        if cfg.image_size < 8:
            raise ConfigError(f"dataset.image_size={cfg.image_size} must be >= 8 (224 for ImageNet-LT)")
        require_files(source)  # every listed file, before training; `python -m lt_bench.data.check` decodes
        self.source, self.num_classes = source, source.num_classes
        self.train, self.val, self.test = train, val, source.test
        self.image_size, self.flip, self.num_workers = int(cfg.image_size), bool(cfg.flip), cfg.num_workers
        self.pin_memory = torch.cuda.is_available()

    def to(self, device: torch.device) -> None:
        """The images stay on disk; batches for a GPU are collated into pinned memory."""
        self.pin_memory = device.type == "cuda"

    def _loader(self, files: FileList, batches, *, train: bool, workers: int | None = None) -> DataLoader:
        source = self.source
        if train:
            transform = train_transform(self.image_size, source.mean, source.std, flip=self.flip)
        else:
            transform = eval_transform(self.image_size, source.mean, source.std)
        workers = self.num_workers if workers is None else workers
        return DataLoader(
            ImageFileDataset(source.root, files, transform, with_index=train),
            batch_sampler=IndexLists(batches),
            num_workers=workers,
            collate_fn=collate_tuple,
            pin_memory=self.pin_memory,
            persistent_workers=workers > 0,
        )

    def train_loader(self, batches: EpochBatches) -> DataLoader:
        """``(images, labels, indices)`` batches of the training split."""
        return self._loader(self.train, batches, train=True)

    def eval_loader(self, files: FileList | None, batches: EvalBatches) -> DataLoader:
        """``(images, labels)`` batches; ``files=None`` (no validation split) gives an empty loader."""
        if files is None:  # the trainer never runs it: no workers to start
            return self._loader(
                FileList([], torch.zeros(0, dtype=torch.int64)), batches, train=False, workers=0
            )
        return self._loader(files, batches, train=False)

    def unaugmented_train_loader(self, batch_size: int) -> DataLoader:
        """The whole training split in order, evaluation-transformed, on this process alone."""
        return self._loader(self.train, EvalBatches(len(self.train), batch_size), train=False)

    def verify(self, open_images: int) -> None:
        """Every listed image exists and the first ``open_images`` of each split decode (else DataError)."""
        require_files(self.source)
        for files in (self.train, self.val, self.test):
            if files is not None:
                dataset = ImageFileDataset(self.source.root, files, transform=_unchanged)
                for i in range(min(open_images, len(files))):
                    dataset[i]  # decodes; raises DataError naming the file


def _unchanged(image: Any) -> Any:
    return image
