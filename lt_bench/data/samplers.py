"""Epoch orders for training and shards for evaluation, DDP-aware by construction.

A training order is a pure function of ``(labels, seed, epoch, class probabilities)``, drawn with a
CPU generator seeded from ``(seed, epoch)`` only. Every process therefore computes the same GLOBAL
index list, cuts it into the same global batches and takes its strided slice of each
(:func:`rank_slice`): the union over ranks of step k is exactly global batch k, so 1 and N processes
see the same data, and a run resumed at epoch E draws the epochs an uninterrupted run would.

Both backends (:mod:`lt_bench.data.memory`, :mod:`lt_bench.data.files`) iterate the same two batch
generators, so they cannot disagree on an order: :class:`EpochBatches` (training, with the
augmentation keys and the position a resumed run continues from) and :class:`EvalBatches`.

The class probabilities of an epoch come from the schedule
(:meth:`lt_bench.schedules.Schedule.class_sampling_probs`), handed in as a :data:`SamplingFn`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch
from torch import Tensor

from lt_bench.errors import ConfigError

_MASK64 = (1 << 64) - 1

SamplingFn = Callable[[int], Tensor | None]
"""Per-class draw probabilities of an epoch, or None for a plain permutation of the training set."""


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator seeded from ``(seed, epoch)`` alone.

    The two numbers go through a 64-bit avalanche mix, so neighbouring seeds and epochs give
    unrelated streams (seed s at epoch e+1 is not seed s+1 at epoch e).
    """
    mixed = _splitmix64((_splitmix64(seed & _MASK64) ^ (epoch & _MASK64)) & _MASK64)
    # manual_seed takes a non-negative value below 2**63 without complaint on every backend
    return torch.Generator(device="cpu").manual_seed(mixed & ((1 << 63) - 1))


def draw_epoch(labels: Tensor, seed: int, epoch: int, class_probs: Tensor | None) -> Tensor:
    """The global order of one training epoch: ``N = len(labels)`` indices into the training set.

    - ``class_probs is None``: a random permutation of ``range(N)`` (instance sampling without
      replacement, every sample once per epoch).
    - otherwise: N draws with replacement, each picking class j with probability ``class_probs[j]``
      and then a sample of that class uniformly, i.e. sample i has probability ``p_{y_i} / n_{y_i}``.
      Drawn in two stages (class, then position inside the class), which is exact and has no limit on
      the number of samples.

    ``labels`` must live on the CPU (the order is computed there so every rank agrees bit for bit).
    """
    if labels.dim() != 1:
        raise ValueError(f"labels must be 1-D, got shape {tuple(labels.shape)}")
    labels = labels.cpu().long()
    n = labels.numel()
    g = epoch_generator(seed, epoch)
    if class_probs is None:
        return torch.randperm(n, generator=g)
    counts = torch.bincount(labels, minlength=class_probs.numel())
    probs = class_probs.detach().cpu().double().flatten()
    if probs.numel() != counts.numel():
        raise ValueError(f"class_probs has {probs.numel()} entries but labels hold {counts.numel()} classes")
    if bool((probs < 0).any()) or not float(probs.sum()) > 0:
        raise ValueError("class_probs must be non-negative and not all zero")
    if bool(((probs > 0) & (counts == 0)).any()):
        raise ValueError("class_probs gives a positive probability to a class with no training samples")
    by_class = torch.argsort(labels, stable=True)  # indices grouped by class, class 0 first
    starts = torch.cumsum(counts, 0) - counts
    cls = torch.multinomial(probs, n, replacement=True, generator=g)
    u = torch.rand(n, generator=g, dtype=torch.float64)
    within = (u * counts[cls]).long().clamp_max(counts[cls] - 1)
    return by_class[starts[cls] + within]


# BatchNorm cannot normalise a single sample in training mode (BatchNorm1d raises, BatchNorm2d on a 1x1 map
# too): every process's share of every training batch holds at least this many.
MIN_PER_PROCESS = 2


def global_batches(order: Tensor, batch_size: int, drop_last: bool, *, world_size: int = 1) -> list[Tensor]:
    """Cut an epoch order into global batches of ``batch_size``.

    A final partial batch is dropped with ``drop_last``; without it, a final batch too small to give every
    process :data:`MIN_PER_PROCESS` samples (fewer than ``MIN_PER_PROCESS * world_size``) is merged into
    the batch before it, so no sample is left out of the epoch and no process ever gets a batch of one.
    The rule depends on the numbers alone, so every rank cuts the same batches and takes the same number
    of steps (a collective waiting for a rank that has stopped hangs).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    batches = list(order.split(batch_size)) if len(order) else []
    if batches and len(batches[-1]) < batch_size:
        if drop_last:
            batches.pop()
        elif len(batches) > 1 and len(batches[-1]) < MIN_PER_PROCESS * world_size:
            rest = batches.pop()
            batches[-1] = torch.cat([batches[-1], rest])
    return batches


def batches_per_epoch(n: int, batch_size: int, drop_last: bool, world_size: int = 1) -> int:
    """How many batches :func:`global_batches` cuts from an epoch of ``n`` samples (every rank takes as
    many steps)."""
    full, rest = divmod(n, batch_size)
    if rest and not drop_last and (full == 0 or rest >= MIN_PER_PROCESS * world_size):
        full += 1
    return full


def check_training_epoch(
    n: int,
    batch_size: int,
    drop_last: bool,
    world_size: int = 1,
    limit_train_batches: int | float | None = None,
) -> int:
    """The batches each process trains on per epoch (after ``trainer.limit_train_batches``).

    Raises:
        ConfigError: no batch at all (the run would report an untrained model as its result), or a
            process's share of a batch below :data:`MIN_PER_PROCESS` samples (BatchNorm fails on it).
    """
    batches = batches_per_epoch(n, batch_size, drop_last, world_size)
    if isinstance(limit_train_batches, float):
        batches = int(batches * limit_train_batches)  # Lightning's rounding of a fraction
    elif isinstance(limit_train_batches, int):
        batches = min(batches, limit_train_batches)
    smallest = min(batch_size, n) // world_size  # the smallest share of the smallest batch
    numbers = (
        f"training set {n} images, dataset.batch_size={batch_size} (the global batch), "
        f"dataset.drop_last={str(drop_last).lower()}, {world_size} process(es) (trainer.devices), "
        f"trainer.limit_train_batches={limit_train_batches}: {batches} batch(es) per process per epoch"
    )
    if smallest < MIN_PER_PROCESS:
        raise ConfigError(
            f"{numbers}, of as few as {smallest} image(s) per process; BatchNorm needs {MIN_PER_PROCESS} or "
            f"more: raise dataset.batch_size to at least {MIN_PER_PROCESS * world_size}, or use fewer "
            "trainer.devices"
        )
    if batches < 1:
        raise ConfigError(
            f"{numbers}, so the run would not train at all; lower dataset.batch_size, set "
            "dataset.drop_last=false, or raise trainer.limit_train_batches"
        )
    return batches


def rank_slice(batch: Tensor, rank: int, world_size: int) -> Tensor:
    """This rank's part of a global batch: ``batch[rank::world_size]``.

    Strided rather than contiguous, so the ranks' sizes differ by at most one and their union is
    exactly the global batch.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
    return batch[rank::world_size]


def eval_shard(n: int, rank: int, world_size: int) -> Tensor:
    """This rank's evaluation indices ``arange(n)[rank::world_size]``.

    The shards partition ``range(n)``: every sample is evaluated exactly once, with no padding
    duplicates, so a summed confusion matrix counts ``n`` samples on any number of processes.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
    return torch.arange(n)[rank::world_size]


class RankBatch(NamedTuple):
    """One step of this rank: indices into the split, and (training only) the augmentation keys."""

    indices: Tensor
    # ``epoch * N + global position in the epoch``: identifies the draw whatever the number of ranks
    keys: Tensor | None


class EpochBatches:
    """This rank's training batches: :func:`draw_epoch`'s global order cut into :func:`global_batches`,
    each strided to this rank by :func:`rank_slice`.

    Lightning calls ``set_epoch`` (through the loader's ``sampler``) at the start of every epoch. It
    stores :meth:`state_dict` with the loop state in every checkpoint and hands it back to
    :meth:`load_state_dict` only when it resumes inside an epoch: the next iteration of that epoch then
    skips the batches already trained on.

    Raises:
        ConfigError: an epoch without a batch, or a batch share below two samples
            (:func:`check_training_epoch`).
    """

    def __init__(
        self,
        labels: Tensor,
        batch_size: int,
        *,
        seed: int = 0,
        sampling_fn: SamplingFn | None = None,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        check_training_epoch(len(labels), batch_size, drop_last, world_size)
        self.labels = labels.cpu()
        self.batch_size, self.seed, self.sampling_fn = batch_size, seed, sampling_fn
        self.drop_last, self.rank, self.world_size = drop_last, rank, world_size
        self.epoch = 0
        self.batches_done = 0  # batches of the current epoch handed out
        self._resume_at: tuple[int, int] | None = None  # (epoch, batches done) from a checkpoint

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches_done": self.batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume_at = (state["epoch"], state["batches_done"])

    def _take_resume(self) -> int:
        """Batches of this epoch done before the checkpoint the run resumed from (0 when none)."""
        resume, self._resume_at = self._resume_at, None
        return resume[1] if resume is not None and resume[0] == self.epoch else 0

    def global_batches(self) -> list[Tensor]:
        probs = self.sampling_fn(self.epoch) if self.sampling_fn is not None else None
        order = draw_epoch(self.labels, self.seed, self.epoch, probs)
        return global_batches(order, self.batch_size, self.drop_last, world_size=self.world_size)

    def __len__(self) -> int:
        return batches_per_epoch(len(self.labels), self.batch_size, self.drop_last, self.world_size)

    def __iter__(self) -> Iterator[RankBatch]:
        n = len(self.labels)
        position = 0
        skip = self.batches_done = self._take_resume()
        for i, batch in enumerate(self.global_batches()):
            start, position = position, position + len(batch)
            if i < skip:
                continue
            keys = self.epoch * n + start + torch.arange(len(batch))
            self.batches_done = i + 1
            yield RankBatch(
                rank_slice(batch, self.rank, self.world_size), rank_slice(keys, self.rank, self.world_size)
            )


class EvalBatches:
    """This rank's evaluation batches over :func:`eval_shard` (every sample once, no padding)."""

    def __init__(self, n: int, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        self.shard = eval_shard(n, rank, world_size)
        self.batch_size = batch_size

    def __len__(self) -> int:
        return -(-len(self.shard) // self.batch_size)

    def __iter__(self) -> Iterator[RankBatch]:
        for batch in self.shard.split(self.batch_size):
            yield RankBatch(batch, None)
