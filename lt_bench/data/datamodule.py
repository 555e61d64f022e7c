"""The LightningDataModule: a source, made long-tailed, split, and served by the backend that fits it.

:meth:`LongTailDataModule.prepare` loads ``dataset.source`` (:func:`lt_bench.data.sources.load_source`),
applies the profile and the validation split (:func:`lt_bench.data.profiles.long_tail_splits`) and hands
the splits to a backend chosen by what the source returned (:data:`BACKENDS`): uint8 tensors go to
:class:`~lt_bench.data.memory.MemoryData`, image files to :class:`~lt_bench.data.files.FileData`.
Everything else delegates to that backend.

Two seeds: the data (the embedded sources' test hold-out, the profile's per-class subset, the validation
split) follow :func:`data_seed` — ``dataset.subset_seed``, or the run's ``seed`` when it is null — and the
training randomness (batch order, augmentation) follows the run's ``seed``. A multirun over ``seed`` with
a fixed ``subset_seed`` trains on the very same images every time, as the reference code bases do (their
CIFAR-LT subset comes from a fixed ``rand_number``, whatever the training seed).

Training order is the same for both: :class:`lt_bench.data.samplers.EpochBatches`, a pure function of
``(seed, epoch)`` and the schedule's class probabilities, so every DDP rank computes the same global
order and takes its strided slice of each global batch, and a resumed run replays the same epochs.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import torch
from omegaconf import DictConfig

from lt_bench.config_nodes import is_operational
from lt_bench.data.files import FileData
from lt_bench.data.memory import MemoryData
from lt_bench.data.profiles import long_tail_splits
from lt_bench.data.samplers import EpochBatches, EvalBatches, SamplingFn, check_training_epoch
from lt_bench.data.sources import FileSource, ImageSource, load_source, source_keys
from lt_bench.errors import ConfigError, DataError
from lt_bench.schedules import Schedule

# What a source returns -> the backend that serves it.
BACKENDS: dict[type, type[MemoryData] | type[FileData]] = {ImageSource: MemoryData, FileSource: FileData}


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


def data_seed(cfg: DictConfig, seed: int) -> int:
    """The seed that draws the data: ``dataset.subset_seed``, or the run's ``seed`` when it is null."""
    subset_seed = cfg.get("subset_seed")
    return seed if subset_seed is None else int(subset_seed)


# The dataset keys that decide which images each split holds, besides the data seed and the source's own
# keys (:func:`split_keys`): the profile draws the long-tailed training subset, and the validation split is
# held out of it.
PROFILE_KEYS = ("profile", "imbalance_factor", "quantity_ratio", "val_fraction")


def split_keys(source: str) -> tuple[str, ...]:
    """The ``dataset.`` keys that decide which images the splits of ``source`` hold: the profile's, and what
    the source reads (its test hold-out, ``use_val_list``, ...) less where the files are (``root``,
    ``split_dir``: operational keys)."""
    own = [k for k in source_keys(source) if not is_operational(f"dataset.{k}")]
    return (*PROFILE_KEYS, *own)


def split_changes(
    trained: DictConfig, trained_seed: int, evaluated: DictConfig, evaluated_seed: int
) -> list[str]:
    """The settings that give the same source's splits other images than in training, each as
    ``key=value (training: value)``: a key of :func:`split_keys`, or the data seed (:func:`data_seed`:
    ``dataset.subset_seed``, else ``seed``). Empty for the same images, or for another source."""
    if trained.source != evaluated.source:
        return []
    changes = []
    for key in split_keys(str(trained.source)):
        before, after = trained.get(key), evaluated.get(key)
        if before != after:
            changes.append(f"dataset.{key}={after} (training: {before})")
    before, after = data_seed(trained, trained_seed), data_seed(evaluated, evaluated_seed)
    if before != after:
        if evaluated.get("subset_seed") != trained.get("subset_seed"):
            changes.append(
                f"dataset.subset_seed={evaluated.get('subset_seed')} (training: {trained.get('subset_seed')})"
            )
        else:
            changes.append(
                f"seed={evaluated_seed} (training: {trained_seed}; with dataset.subset_seed null it draws "
                "the data)"
            )
    return changes


def backend_for(source: object, name: str) -> type[MemoryData] | type[FileData]:
    for kind, backend in BACKENDS.items():
        if isinstance(source, kind):
            return backend
    raise ConfigError(
        f"dataset.source={name!r} returned a {type(source).__name__}; a source's loader returns an "
        "ImageSource or a FileSource (both in lt_bench.data.sources)"
    )


class LongTailDataModule(L.LightningDataModule):
    """Builds the long-tailed training set, a stratified validation split and the balanced test set."""

    def __init__(self, cfg: DictConfig, seed: int, schedule: Schedule | None = None) -> None:
        """``schedule`` is the run's one :class:`~lt_bench.schedules.Schedule`, whose class sampling
        probabilities draw each training epoch; without one every epoch is a plain permutation."""
        super().__init__()
        self.cfg, self.seed, self.schedule = cfg, seed, schedule
        self.data: MemoryData | FileData | None = None
        self.info: DataInfo | None = None

    def prepare(self) -> DataInfo:
        """Load the source and apply the profile (deterministic given the seed); idempotent."""
        if self.info is not None:
            return self.info
        cfg = self.cfg
        drawn_by = data_seed(cfg, self.seed)
        source = load_source(cfg, drawn_by)
        backend = backend_for(source, cfg.source)
        if not cfg.get("normalize", True) and backend is not MemoryData:
            raise ConfigError(
                f"dataset.normalize=false feeds raw 0-255 pixels, which only the in-memory datasets support; "
                f"dataset.source={cfg.source!r} is decoded from image files: remove dataset.normalize=false"
            )
        train, val = long_tail_splits(
            source.train,
            source.val,
            source.num_classes,
            profile=cfg.profile,
            imbalance_factor=cfg.imbalance_factor,
            quantity_ratio=cfg.quantity_ratio,
            val_fraction=cfg.val_fraction,
            seed=drawn_by,
        )
        for split, images in (("training", train), ("test", source.test)):
            if len(images) == 0:  # found now, not after a whole run of training
                raise DataError(
                    f"dataset.source={cfg.source!r} gave an empty {split} split; check its files under "
                    f"dataset.root={cfg.get('root')} and the dataset keys that select them"
                )
        data = self.data = backend(source, train, val, cfg, self.seed)
        self.info = DataInfo(
            num_classes=data.num_classes,
            class_counts=torch.bincount(data.train.labels, minlength=data.num_classes).tolist(),
            in_channels=data.in_channels,
            image_size=data.image_size,
            train_size=len(data.train),
            val_size=0 if data.val is None else len(data.val),
            test_size=len(data.test),
        )
        return self.info

    @property
    def has_val(self) -> bool:
        return self.prepare().val_size > 0

    def setup(self, stage: str | None = None) -> None:
        self.prepare()
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        self.data.to(device)

    def _ranks(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def check_training(self, world_size: int, limit_train_batches: int | float | None = None) -> int:
        """Batches per process per epoch; a ConfigError (one line with the numbers) when a run with these
        settings would not train, or would hand BatchNorm a batch of one (:func:`check_training_epoch`)."""
        d = self.cfg
        return check_training_epoch(
            self.prepare().train_size, d.batch_size, d.drop_last, world_size, limit_train_batches
        )

    def train_dataloader(self):
        rank, world = self._ranks()
        self.check_training(world, getattr(self.trainer, "limit_train_batches", None))
        batches = EpochBatches(
            self.data.train.labels,
            self.cfg.batch_size,
            seed=self.seed,
            sampling_fn=self._sampling_fn(),
            drop_last=self.cfg.drop_last,
            rank=rank,
            world_size=world,
        )
        return self.data.train_loader(batches)

    def _sampling_fn(self) -> SamplingFn | None:
        if self.schedule is None:
            return None
        schedule, counts = self.schedule, self.prepare().class_counts
        return lambda epoch: schedule.class_sampling_probs(epoch, counts)

    def _eval_loader(self, split):
        rank, world = self._ranks()
        n = 0 if split is None else len(split)
        return self.data.eval_loader(split, EvalBatches(n, self.cfg.eval_batch_size, rank, world))

    def val_dataloader(self):
        # without a validation split the loader is empty and the trainer runs none (limit_val_batches=0)
        return self._eval_loader(self.data.val)

    def test_dataloader(self):
        return self._eval_loader(self.data.test)

    def unaugmented_train_loader(self):
        """``(normalised images, labels)`` of the whole training set in order, on this process alone (not
        sharded): statistics computed from it (PHASE's MSR weights) are identical on every rank without
        any gather."""
        return self.data.unaugmented_train_loader(self.cfg.eval_batch_size)

    def on_after_batch_transfer(self, batch: tuple, dataloader_idx: int) -> tuple:
        """Training: ``(augmented images, labels, indices)``; evaluation: ``(normalised images, labels)``."""
        finish = self.data.on_device
        return batch if finish is None else finish(batch)
