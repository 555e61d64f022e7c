"""File-based large datasets: ImageNet-LT and iNaturalist 2018, read as JPEGs by DataLoader workers.

These sets are too large to hold in memory, so unlike the small-image sources
(:mod:`lt_bench.data.sources`) they are served by a normal :class:`torch.utils.data.DataLoader` with
workers, per-image PIL decoding and the standard ImageNet augmentation. Their split files already
define the long tail (profile ``none``).

Training order still comes from :func:`lt_bench.data.samplers.draw_epoch` — the same pure function of
``(seed, epoch, class probabilities)`` the in-memory path uses — through :class:`EpochBatchSampler`,
so DDP ranks, class-aware schedules and resumed runs behave exactly as for CIFAR.

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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from lt_bench.data.samplers import draw_epoch, eval_shard, global_batches, rank_slice
from lt_bench.errors import ConfigError, DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

SamplingFn = Callable[[int], Tensor | None]


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


def _require_root(root: str | Path | None, what: str, help_of: Callable[[Path, Path], str]) -> Path:
    if root is None or str(root) == "":
        raise ConfigError(f"dataset.root is not set; set dataset.root=DIR where DIR is {what}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"dataset.root={root} is not a directory; it must be {what}; {help_of(root, root)}")
    return root


def load_imagenet_lt(
    root: str | Path | None, split_dir: str | Path | None = None, use_val_list: bool = False
) -> FileSource:
    """ImageNet-LT's lists over an ImageNet root; ``val`` is read only when ``use_val_list``."""
    root = _require_root(root, "the ImageNet-2012 root holding train/ and val/", _imagenet_lt_help)
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
            annotations, or a category id that is not an integer >= 0.
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
            if not isinstance(category, int) or category < 0:
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
        category_ids = [int(c["id"]) for c in data.get("categories", [])]
    except (KeyError, TypeError) as err:
        raise DataError(f"{path}: malformed entry (missing {err}); {help_text}") from None
    if not paths:
        raise DataError(f"{path} lists no images; {help_text}")
    num_classes = max([*labels, *category_ids]) + 1
    return FileList(paths, torch.tensor(labels, dtype=torch.int64)), num_classes


def load_inat2018(root: str | Path | None, split_dir: str | Path | None = None) -> FileSource:
    """iNaturalist 2018: train from ``train2018.json``, test from ``val2018.json``; no val list."""
    root = _require_root(
        root, "the folder holding train_val2018/ (the json file_name entries' base)", _inat_help
    )
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


FILE_SOURCES: dict[str, Callable[..., FileSource]] = {
    "imagenet_lt": load_imagenet_lt,
    "inat2018": load_inat2018,
}


def load_file_source(name: str, root, split_dir=None, use_val_list: bool = False) -> FileSource:
    if name == "imagenet_lt":
        return load_imagenet_lt(root, split_dir, use_val_list)
    if use_val_list:
        raise ConfigError(
            f"dataset.use_val_list=true: {name} has no separate validation list; use dataset.val_fraction"
        )
    return FILE_SOURCES[name](root, split_dir)


def missing_files(root: Path, files: FileList, limit: int | None = None) -> list[Path]:
    """The listed images that are not files under ``root`` (checks the first ``limit``, or all)."""
    paths = files.paths if limit is None else files.paths[:limit]
    return [root / p for p in paths if not (root / p).is_file()]


def require_files(source: FileSource, limit: int | None = None) -> None:
    """Raise one :class:`DataError` naming the first missing image of any split (and how many)."""
    for split, files in (("train", source.train), ("val", source.val), ("test", source.test)):
        if files is None:
            continue
        missing = missing_files(source.root, files, limit)
        if missing:
            raise DataError(
                f"{source.name}: {len(missing)} {split} image(s) listed but not found under dataset.root="
                f"{source.root}, e.g. {missing[0]}; the list paths must be relative to dataset.root"
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
            raise DataError(f"could not read image {path} ({type(err).__name__}: {err})") from None
        x = self.transform(image)
        label = int(self.files.labels[index])
        return (x, label, index) if self.with_index else (x, label)


# ------------------------------------------------------------------------------------ batch samplers


class EpochBatchSampler:
    """This rank's training batches: the global epoch order of :func:`draw_epoch`, cut into global
    batches, each strided to this rank — exactly what :class:`InMemoryLoader` does in memory.

    Lightning calls ``loader.batch_sampler.sampler.set_epoch(epoch)`` each epoch (``sampler`` is
    this object itself).
    """

    def __init__(
        self,
        labels: Tensor,
        batch_size: int,
        seed: int = 0,
        sampling_fn: SamplingFn | None = None,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.labels = labels.cpu()
        self.batch_size, self.seed, self.sampling_fn = batch_size, seed, sampling_fn
        self.drop_last, self.rank, self.world_size = drop_last, rank, world_size
        self.epoch = 0

    @property
    def sampler(self) -> EpochBatchSampler:
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_batches(self) -> list[Tensor]:
        probs = self.sampling_fn(self.epoch) if self.sampling_fn is not None else None
        order = draw_epoch(self.labels, self.seed, self.epoch, probs)
        return global_batches(order, self.batch_size, self.drop_last, world_size=self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches():
            yield rank_slice(batch, self.rank, self.world_size).tolist()

    def __len__(self) -> int:
        n, b = len(self.labels), self.batch_size
        full, rest = divmod(n, b)
        return full + int(rest >= self.world_size and rest > 0 and not self.drop_last)


class EvalBatchSampler:
    """This rank's evaluation batches over :func:`eval_shard` (every sample once, no padding)."""

    def __init__(self, n: int, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        self.shard = eval_shard(n, rank, world_size)
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.shard.split(self.batch_size):
            yield batch.tolist()

    def __len__(self) -> int:
        return -(-len(self.shard) // self.batch_size)
