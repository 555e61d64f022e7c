"""The LightningDataModule: a source, made long-tailed, split, served from memory in batches.

Small-image datasets live as uint8 tensors on the training device; each step indexes a batch out of
them and augments it there (:mod:`lt_bench.data.augment`), so no DataLoader worker or PIL call sits on
the hot path. Training order comes from :func:`draw_epoch` — a pure function of ``(seed, epoch)`` and
the schedule's class probabilities — so every DDP rank computes the same global order and takes its
strided slice of each global batch, and a resumed run replays the same epochs.

Large datasets (``imagenet_lt``, ``inat2018``; :mod:`lt_bench.data.files`) are file-based instead: a
DataLoader with workers decodes and augments JPEGs, its batch sampler drawing the same epoch orders.
Their loaders already yield normalised float images, which :meth:`on_after_batch_transfer` passes
through: training batches are ``(images, labels, indices)``, evaluation batches ``(images, labels)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import lightning as L
import torch
from omegaconf import DictConfig
from torch import Tensor
from torch.utils.data import DataLoader

from lt_bench.data.augment import BatchAugment
from lt_bench.data.files import (
    FILE_SOURCES,
    EpochBatchSampler,
    EvalBatchSampler,
    FileList,
    FileSource,
    ImageFileDataset,
    eval_transform,
    load_file_source,
    require_files,
    train_transform,
)
from lt_bench.data.profiles import profile_counts, select_per_class, stratified_split
from lt_bench.data.samplers import draw_epoch, eval_shard, global_batches, rank_slice
from lt_bench.data.sources import ImageSource, load_source
from lt_bench.errors import ConfigError

SamplingFn = Callable[[int], Tensor | None]


@dataclass(frozen=True)
class DataInfo:
    """What methods need to know about the data, fixed once the datamodule is prepared."""

    num_classes: int
    class_counts: list[int]
    in_channels: int
    image_size: int
    train_size: int
    val_size: int
    test_size: int


def _source_kwargs(cfg: DictConfig, seed: int) -> dict:
    name = cfg.name
    if name in ("mnist_lt", "digits_lt"):
        return {"test_per_class": cfg.test_per_class, "seed": seed}
    if name == "synthetic":
        return {
            "num_classes": cfg.num_classes,
            "per_class": cfg.per_class,
            "test_per_class": cfg.test_per_class,
            "image_size": cfg.image_size,
            "channels": cfg.channels,
            "seed": seed,
        }
    return {"root": cfg.root}


class InMemoryLoader:
    """Iterates batches of in-memory tensors; Lightning treats it as a dataloader.

    Training batches are ``(images_uint8, labels, keys, indices)``; ``keys`` identify (epoch, global
    position) and drive the augmentation's counter-based randomness, so a sample's crop does not depend
    on the number of processes; ``indices`` locate the samples in the training set (per-sample weights).
    Evaluation batches are ``(images_uint8, labels)`` over this rank's shard.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        *,
        train: bool,
        seed: int = 0,
        sampling_fn: SamplingFn | None = None,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.images, self.labels = images, labels
        self.cpu_labels = labels.cpu()
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.sampling_fn = sampling_fn
        self.drop_last, self.rank, self.world_size = drop_last, rank, world_size
        self.epoch = 0
        self.batches_done = 0  # training batches handed out in the current epoch
        self._resume_at: tuple[int, int] | None = None  # (epoch, batches done) from a checkpoint

    batch_sampler = None  # Lightning inspects these two attributes of anything it treats as a dataloader

    # Lightning calls ``loader.sampler.set_epoch(epoch)`` at the start of every epoch.
    @property
    def sampler(self) -> InMemoryLoader:
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    # Lightning stores this with the loop state in every checkpoint, and loads it back only when it
    # resumes inside an epoch. The loader has a length, so Lightning prefetches nothing: the batches
    # handed out are exactly the batches trained on.
    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches_done": self.batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume_at = (state["epoch"], state["batches_done"])

    def _take_resume(self) -> int:
        """Batches of this epoch done before the checkpoint the run resumed from (0 when none)."""
        resume, self._resume_at = self._resume_at, None
        return resume[1] if self.train and resume is not None and resume[0] == self.epoch else 0

    def _batches(self) -> list[Tensor]:
        if not self.train:
            shard = eval_shard(len(self.cpu_labels), self.rank, self.world_size)
            return list(shard.split(self.batch_size))
        probs = self.sampling_fn(self.epoch) if self.sampling_fn is not None else None
        order = draw_epoch(self.cpu_labels, self.seed, self.epoch, probs)
        batches = global_batches(order, self.batch_size, self.drop_last)
        return [b for b in batches if len(b) >= self.world_size]

    def __len__(self) -> int:
        if not self.train:
            n = len(eval_shard(len(self.cpu_labels), self.rank, self.world_size))
            return -(-n // self.batch_size)
        n, b = len(self.cpu_labels), self.batch_size
        full, rest = divmod(n, b)
        return full + int(rest >= self.world_size and rest > 0 and not self.drop_last)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        device = self.images.device
        n = len(self.cpu_labels)
        position = 0
        skip = self.batches_done = self._take_resume()
        for i, batch in enumerate(self._batches()):
            if self.train:
                start, position = position, position + len(batch)
                if i < skip:
                    continue
                mine = rank_slice(batch, self.rank, self.world_size)
                keys = self.epoch * n + start + torch.arange(len(batch))
                keys = rank_slice(keys, self.rank, self.world_size)
                self.batches_done = i + 1
                idx = mine.to(device, non_blocking=True)
                yield self.images[idx], self.labels[idx], keys.to(device, non_blocking=True), idx
            else:
                idx = batch.to(device, non_blocking=True)
                yield self.images[idx], self.labels[idx]


class _Passthrough:
    """Stands in for :class:`BatchAugment` with file-based data: images arrive normalised already."""

    @staticmethod
    def eval(images: Tensor) -> Tensor:
        return images

    @staticmethod
    def train(images: Tensor, keys: Tensor | None = None) -> Tensor:
        return images


def is_file_based(name: str) -> bool:
    """Whether ``dataset.name`` is served from image files by DataLoader workers."""
    return name in FILE_SOURCES


class LongTailDataModule(L.LightningDataModule):
    """Builds the long-tailed training set, a stratified validation split and the balanced test set."""

    def __init__(self, cfg: DictConfig, seed: int, sampling_fn: SamplingFn | None = None) -> None:
        super().__init__()
        self.cfg, self.seed, self.sampling_fn = cfg, seed, sampling_fn
        self.source: ImageSource | None = None
        self.info: DataInfo | None = None

    def prepare(self) -> DataInfo:
        """Load the source and apply the profile (deterministic given the seed); idempotent."""
        if self.info is not None:
            return self.info
        cfg = self.cfg
        if is_file_based(cfg.name):
            return self._prepare_files()
        source = load_source(cfg.name, **_source_kwargs(cfg, self.seed))
        labels = source.train_labels
        available = torch.bincount(labels, minlength=source.num_classes).tolist()
        counts = profile_counts(cfg.profile, available, cfg.imbalance_factor, cfg.quantity_ratio)
        kept = select_per_class(labels, counts, self.seed)
        train_x, train_y = source.train_images[kept], labels[kept]
        val_x = val_y = None
        if cfg.val_fraction > 0:
            keep, held = stratified_split(train_y, cfg.val_fraction, self.seed)
            val_x, val_y = train_x[held], train_y[held]
            train_x, train_y = train_x[keep], train_y[keep]
        self.train_x, self.train_y = train_x, train_y
        self.val_x, self.val_y = val_x, val_y
        self.test_x, self.test_y = source.test_images, source.test_labels
        self.source = source
        self.augment = BatchAugment(
            padding=cfg.crop_padding,
            flip=cfg.flip,
            mean=source.mean,
            std=source.std,
            seed=self.seed,
            autoaugment=cfg.autoaugment,
            randaugment=cfg.randaugment,
            color_jitter=cfg.color_jitter,
            cutout=cfg.cutout,
        )
        self.info = DataInfo(
            num_classes=source.num_classes,
            class_counts=torch.bincount(train_y, minlength=source.num_classes).tolist(),
            in_channels=int(train_x.shape[1]),
            image_size=int(train_x.shape[-1]),
            train_size=len(train_y),
            val_size=0 if val_y is None else len(val_y),
            test_size=len(self.test_y),
        )
        return self.info

    @property
    def file_based(self) -> bool:
        return is_file_based(self.cfg.name)

    def _prepare_files(self) -> DataInfo:
        """File-based datasets: read the split lists, apply the profile (``none``: keep all)."""
        cfg = self.cfg
        if cfg.num_workers < 0:
            raise ConfigError(f"dataset.num_workers={cfg.num_workers} must be >= 0")
        if cfg.image_size < 8:
            raise ConfigError(f"dataset.image_size={cfg.image_size} must be >= 8 (224 for ImageNet-LT)")
        if cfg.use_val_list and cfg.val_fraction > 0:
            raise ConfigError(
                "dataset.use_val_list=true and dataset.val_fraction > 0 both define a validation split; "
                "set one of them"
            )
        source = load_file_source(cfg.name, cfg.root, cfg.split_dir, cfg.use_val_list)
        require_files(source, limit=1)  # a wrong root fails here; `python -m lt_bench.data.check` checks all
        k = source.num_classes
        train = source.train
        available = torch.bincount(train.labels, minlength=k).tolist()
        counts = profile_counts(cfg.profile, available, cfg.imbalance_factor, cfg.quantity_ratio)
        if counts != available:
            train = train.subset(select_per_class(train.labels, counts, self.seed))
        val = source.val
        if cfg.val_fraction > 0:
            keep, held = stratified_split(train.labels, cfg.val_fraction, self.seed)
            train, val = train.subset(keep), train.subset(held)
        self.source = source
        self.train_files, self.val_files, self.test_files = train, val, source.test
        self.augment = _Passthrough()
        self.info = DataInfo(
            num_classes=k,
            class_counts=torch.bincount(train.labels, minlength=k).tolist(),
            in_channels=3,
            image_size=int(cfg.image_size),
            train_size=len(train),
            val_size=0 if val is None else len(val),
            test_size=len(source.test),
        )
        return self.info

    @property
    def has_val(self) -> bool:
        return self.prepare().val_size > 0

    def setup(self, stage: str | None = None) -> None:
        self.prepare()
        if self.file_based:
            return  # images stay on disk; workers decode them
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        # one host->device copy per run; every batch is then an index into device memory
        for name in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.to(device))

    def _ranks(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    # -- file-based loaders ---------------------------------------------------------------------------
    def _pin_memory(self) -> bool:
        if self.trainer is None:
            return torch.cuda.is_available()
        return self.trainer.strategy.root_device.type == "cuda"

    def _file_loader(self, files: FileList, train: bool, batch_sampler, workers: int | None = None):
        source: FileSource = self.source
        size = int(self.cfg.image_size)
        if train:
            transform = train_transform(size, source.mean, source.std, flip=self.cfg.flip)
        else:
            transform = eval_transform(size, source.mean, source.std)
        workers = self.cfg.num_workers if workers is None else workers
        return DataLoader(
            ImageFileDataset(source.root, files, transform, with_index=train),
            batch_sampler=batch_sampler,
            num_workers=workers,
            pin_memory=self._pin_memory(),
            persistent_workers=workers > 0,
        )

    def _file_eval_loader(self, files: FileList | None) -> DataLoader:
        rank, world = self._ranks()
        if files is None:  # no validation split: an empty loader the trainer never runs
            files = FileList([], torch.zeros(0, dtype=torch.int64))
            return self._file_loader(files, False, EvalBatchSampler(0, 1), workers=0)
        sampler = EvalBatchSampler(len(files), self.cfg.eval_batch_size, rank, world)
        return self._file_loader(files, False, sampler)

    # -- loaders ---------------------------------------------------------------------------------------
    def train_dataloader(self) -> InMemoryLoader | DataLoader:
        rank, world = self._ranks()
        if self.file_based:
            sampler = EpochBatchSampler(
                self.train_files.labels,
                self.cfg.batch_size,
                seed=self.seed,
                sampling_fn=self.sampling_fn,
                drop_last=self.cfg.drop_last,
                rank=rank,
                world_size=world,
            )
            return self._file_loader(self.train_files, True, sampler)
        return InMemoryLoader(
            self.train_x,
            self.train_y,
            self.cfg.batch_size,
            train=True,
            seed=self.seed,
            sampling_fn=self.sampling_fn,
            drop_last=self.cfg.drop_last,
            rank=rank,
            world_size=world,
        )

    def _eval_loader(self, x: Tensor, y: Tensor) -> InMemoryLoader:
        rank, world = self._ranks()
        return InMemoryLoader(x, y, self.cfg.eval_batch_size, train=False, rank=rank, world_size=world)

    def val_dataloader(self) -> InMemoryLoader | DataLoader:
        if self.file_based:
            return self._file_eval_loader(self.val_files)
        if self.val_y is None:  # the trainer runs no validation then (limit_val_batches=0)
            return self._eval_loader(self.test_x[:0], self.test_y[:0])
        return self._eval_loader(self.val_x, self.val_y)

    def test_dataloader(self) -> InMemoryLoader | DataLoader:
        if self.file_based:
            return self._file_eval_loader(self.test_files)
        return self._eval_loader(self.test_x, self.test_y)

    def unaugmented_train_loader(self) -> InMemoryLoader | DataLoader:
        """The whole training set in order, unaugmented, on this process alone (not sharded): statistics
        computed from it (PHASE's MSR weights) are identical on every rank without any gather.

        File-based data yields normalised float images here (``self.augment.eval`` passes them)."""
        if self.file_based:
            sampler = EvalBatchSampler(len(self.train_files), self.cfg.eval_batch_size)
            return self._file_loader(self.train_files, False, sampler)
        return InMemoryLoader(self.train_x, self.train_y, self.cfg.eval_batch_size, train=False)

    def on_after_batch_transfer(self, batch: tuple[Tensor, ...], dataloader_idx: int) -> tuple[Tensor, ...]:
        """Training: ``(augmented images, labels, indices)``; evaluation: ``(normalised images, labels)``.

        File-based loaders deliver exactly these already (normalised floats), so they pass through."""
        if self.file_based:
            return tuple(batch)
        if len(batch) == 4:
            images, labels, keys, indices = batch
            return self.augment.train(images, keys), labels, indices
        images, labels = batch
        return self.augment.eval(images), labels
