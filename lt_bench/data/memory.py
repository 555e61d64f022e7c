"""The in-memory backend: uint8 tensors on the training device, augmented there in whole batches.

Small-image datasets (an :class:`~lt_bench.data.sources.ImageSource`) live as uint8 tensors on the
training device, copied there once per run; each step indexes a batch out of them and augments it there
(:mod:`lt_bench.data.augment`), so no DataLoader worker or PIL call sits on the hot path. Batch order is
the file backend's: both iterate :class:`lt_bench.data.samplers.EpochBatches`.

Loaders yield uint8 images; :meth:`MemoryData.on_device` augments (training) or normalises (evaluation;
``dataset.normalize=false``: only converts to float32 in 0-255) them once Lightning has handed them to
the module, training batches then being
``(images, labels, indices)`` and evaluation batches ``(images, labels)``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from omegaconf import DictConfig
from torch import Tensor

from lt_bench.data.augment import BatchAugment
from lt_bench.data.samplers import EpochBatches, EvalBatches
from lt_bench.data.sources import ImageSource, TensorSplit


class TensorLoader:
    """A split's batches in the order a batch generator gives; Lightning treats it as a dataloader.

    Training (:class:`EpochBatches`) yields ``(images_uint8, labels, keys, indices)``: ``keys`` drive the
    augmentation's counter-based randomness, so a sample's crop does not depend on the number of
    processes; ``indices`` locate the samples in the training set (per-sample weights). Evaluation
    (:class:`EvalBatches`) yields ``(images_uint8, labels)``.
    """

    batch_sampler = None  # Lightning inspects this and ``sampler`` on anything it treats as a dataloader

    def __init__(self, split: TensorSplit, batches: EpochBatches | EvalBatches) -> None:
        self.split, self.batches = split, batches

    @property
    def sampler(self) -> EpochBatches | EvalBatches:
        """Where Lightning calls ``set_epoch(epoch)`` at the start of every epoch."""
        return self.batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        images, labels = self.split.images, self.split.labels
        device = images.device
        for batch in self.batches:
            idx = batch.indices.to(device, non_blocking=True)
            if batch.keys is None:
                yield images[idx], labels[idx]
            else:
                yield images[idx], labels[idx], batch.keys.to(device, non_blocking=True), idx


class TrainLoader(TensorLoader):
    """The training :class:`TensorLoader`, whose position inside an epoch checkpoints save.

    Lightning stores :meth:`state_dict` with the loop state in every checkpoint. The loader has a
    length, so Lightning prefetches nothing: the batches handed out are exactly the batches trained on.
    """

    batches: EpochBatches

    def state_dict(self) -> dict[str, int]:
        return self.batches.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.batches.load_state_dict(state)


class MemoryData:
    """The in-memory backend of one prepared dataset: its splits and their augmentation."""

    def __init__(
        self, source: ImageSource, train: TensorSplit, val: TensorSplit | None, cfg: DictConfig, seed: int
    ) -> None:
        self.source, self.num_classes = source, source.num_classes
        self.train, self.val, self.test = train, val, source.test
        self.augment = BatchAugment(
            padding=cfg.crop_padding,
            flip=cfg.flip,
            mean=source.mean,
            std=source.std,
            seed=seed,
            autoaugment=cfg.autoaugment,
            randaugment=cfg.randaugment,
            color_jitter=cfg.color_jitter,
            cutout=cfg.cutout,
            normalize=cfg.get("normalize", True),
        )

    @property
    def in_channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train.images.shape[-1])

    def to(self, device: torch.device) -> None:
        """One host-to-device copy per run; every batch is then an index into device memory."""
        self.train, self.test = self.train.to(device), self.test.to(device)
        if self.val is not None:
            self.val = self.val.to(device)

    def train_loader(self, batches: EpochBatches) -> TrainLoader:
        return TrainLoader(self.train, batches)

    def eval_loader(self, split: TensorSplit | None, batches: EvalBatches) -> TensorLoader:
        """``split=None`` (no validation split) gives an empty loader, which the trainer never runs."""
        empty = TensorSplit(self.test.images[:0], self.test.labels[:0])
        return TensorLoader(empty if split is None else split, batches)

    def unaugmented_train_loader(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The whole training split in order as ``(normalised images, labels)``, on this process alone."""
        for images, labels in TensorLoader(self.train, EvalBatches(len(self.train), batch_size)):
            yield self.augment.eval(images), labels

    def on_device(self, batch: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """Training: ``(augmented images, labels, indices)``; evaluation: ``(normalised images, labels)``."""
        if len(batch) == 4:
            images, labels, keys, indices = batch
            return self.augment.train(images, keys), labels, indices
        images, labels = batch
        return self.augment.eval(images), labels
