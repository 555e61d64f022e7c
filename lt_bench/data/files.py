"""The file backend: a :class:`~lt_bench.data.sources.FileSource`'s images, decoded by DataLoader workers.

Sets too large to hold in memory (ImageNet-LT, iNaturalist 2018: :mod:`lt_bench.data.loaders.lists`)
are served by :class:`FileData`: a normal :class:`torch.utils.data.DataLoader` with workers, per-image
PIL decoding (:class:`ImageFileDataset`) and the standard ImageNet augmentation
(:func:`lt_bench.data.augment.train_transform`), yielding normalised float images.

Training order is the in-memory backend's (:mod:`lt_bench.data.memory`): both iterate
:class:`lt_bench.data.samplers.EpochBatches` (here through :class:`IndexLists`, the DataLoader's batch
sampler), so DDP ranks and class-aware schedules behave exactly as for CIFAR.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset, default_collate

from lt_bench.data.augment import eval_transform, train_transform
from lt_bench.data.samplers import EpochBatches, EvalBatches
from lt_bench.data.sources import FileList, FileSource
from lt_bench.errors import ConfigError, DataError

# ------------------------------------------------------------------------------------ listed files


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


# ------------------------------------------------------------------------------------------ dataset


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
        require_files(source)  # every listed file, before training; `python -m lt_bench.check_data` decodes
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
