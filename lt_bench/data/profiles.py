"""Class-count profiles and deterministic index selection.

Everything here is a pure function of its arguments (labels, counts, seed): the same seed always
keeps, holds out and splits the same samples, on any machine and any number of processes.

Conventions:

- Classes are ordered head first: class 0 keeps the most samples under ``exp`` and ``step``.
- ``select_per_class`` follows the CIFAR-LT convention of Cao et al. (LDAM-DRW): one
  ``numpy.random.RandomState(seed)`` shuffles each class's indices in turn, in class order, and the
  first ``n_i`` shuffled indices are kept. With the CIFAR pickle batches read in file order and
  ``seed`` equal to their ``rand_number`` (0 by default; Keke921/KPSLoss: 666), the kept images are the
  very ones their ``IMBALANCECIFAR10/100`` keeps. The ``seed`` passed here is the data seed,
  ``dataset.subset_seed`` (null: the run's ``seed``; :func:`lt_bench.data.datamodule.data_seed`).
- The held-out splits (validation, embedded test sets) use ``numpy.random.default_rng([seed, stream])``
  with their own stream constant, so they are not correlated with the profile's shuffle even when the
  same seed is passed to both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, TypeVar

import numpy as np
import torch
from torch import Tensor

from lt_bench.errors import ConfigError, DataError

PROFILES = ("exp", "step", "even_minority", "none")


class Split(Protocol):
    """A split of either backend (in-memory tensors, a list of image files): labels, and subsets."""

    labels: Tensor

    def __len__(self) -> int: ...

    def subset(self, indices: Tensor) -> Split: ...


S = TypeVar("S", bound=Split)

# Stream constants keep the different random draws of one seed independent of each other.
_STREAM_STRATIFIED = 0x5EED_0001
_STREAM_HOLDOUT = 0x5EED_0002

# floor(n * fraction) with a float fraction such as 0.29 * 100 = 28.999999999999996 would lose a
# sample to rounding; this tolerance makes the intended decimal product land on its integer.
_FLOOR_EPS = 1e-9


def _validate_profile_args(
    profile: str, available: Sequence[int], imbalance_factor: float, quantity_ratio: float
) -> None:
    if profile not in PROFILES:
        raise ConfigError(
            f"dataset.profile={profile!r} is not a known profile; choose one of: {', '.join(PROFILES)}"
        )
    if not (math.isfinite(imbalance_factor) and imbalance_factor >= 1):
        raise ConfigError(
            f"dataset.imbalance_factor={imbalance_factor} must be a finite number >= 1 "
            "(n_max / n_min, e.g. 100)"
        )
    if not (0 < quantity_ratio <= 1):
        raise ConfigError(
            f"dataset.quantity_ratio={quantity_ratio} must be in (0, 1] (fraction of each class kept)"
        )
    if len(available) == 0:
        raise DataError("the training source has no classes; check that its label file is not empty")
    empty = [c for c, n in enumerate(available) if n < 1]
    if empty:
        raise DataError(
            f"the training source has no samples for class(es) {empty}; a long-tailed profile needs "
            "every class present in the source (check the dataset files)"
        )


def profile_counts(
    profile: str, available: list[int], imbalance_factor: float, quantity_ratio: float = 1.0
) -> list[int]:
    """Number of training samples to keep per class.

    Args:
        profile: ``exp`` | ``step`` | ``even_minority`` | ``none``.
        available: samples per class in the (balanced) source, class order.
        imbalance_factor: IF = n_max / n_min (``exp``, ``step``); the reduction ``q`` of the even
            classes (``even_minority``); ignored by ``none``.
        quantity_ratio: fraction QR of every class kept after the profile (PPL paper).

    Profiles (C classes, ``n_max = min(available)`` so a nearly balanced source such as scikit-learn's
    digits still gives a clean profile):

    - ``exp``: ``n_i = int(n_max * (1/IF) ** (i / (C - 1)))`` (CIFAR-LT), capped by ``available[i]``.
    - ``step``: the first ``C // 2`` classes keep ``n_max``, the other ``C - C // 2`` keep
      ``int(n_max / IF)``. This is LDAM-DRW's split; for odd C the extra class is a minority class
      (their code silently drops it).
    - ``even_minority`` (ARConvL): classes 0, 2, 4, ... keep ``int(available_i / IF)``, odd classes
      keep all of theirs.
    - ``none``: ``available`` unchanged.

    Then ``n_i = max(1, int(n_i * QR))``. Every class keeps at least one sample under every profile:
    a class with no training data would make 1/n_j class weights infinite. (This only matters when
    ``n_max < IF``; the published settings never reach it.)

    Raises:
        ConfigError: unknown profile, IF < 1 or QR outside (0, 1].
        DataError: a class of the source has no samples.
    """
    _validate_profile_args(profile, available, imbalance_factor, quantity_ratio)
    num_classes = len(available)
    n_max = min(available)
    if profile == "exp":
        if num_classes == 1:
            counts = [n_max]
        else:
            counts = [
                int(n_max * (1.0 / imbalance_factor) ** (i / (num_classes - 1))) for i in range(num_classes)
            ]
    elif profile == "step":
        n_head = num_classes // 2
        counts = [n_max] * n_head + [int(n_max / imbalance_factor)] * (num_classes - n_head)
    elif profile == "even_minority":
        counts = [int(n / imbalance_factor) if c % 2 == 0 else n for c, n in enumerate(available)]
    else:  # "none"
        counts = list(available)
    counts = [min(max(1, n), avail) for n, avail in zip(counts, available, strict=True)]
    return [max(1, int(n * quantity_ratio)) for n in counts]


def _labels_numpy(labels: Tensor) -> np.ndarray:
    if labels.dim() != 1:
        raise DataError(f"labels must be a 1-D tensor of class indices, got shape {tuple(labels.shape)}")
    y = labels.detach().cpu().numpy().astype(np.int64, copy=False)
    if y.size and y.min() < 0:
        raise DataError(f"labels must be class indices >= 0, found {int(y.min())}")
    return y


def _num_classes(y: np.ndarray) -> int:
    return int(y.max()) + 1 if y.size else 0


def select_per_class(labels: Tensor, counts: list[int], seed: int) -> Tensor:
    """Indices of the samples kept by a profile: the first ``counts[c]`` of each class's shuffle.

    One ``numpy.random.RandomState(seed)`` shuffles the indices of class 0, then class 1, ... (the
    CIFAR-LT convention, see the module docstring). Returns a LongTensor sorted ascending, so the kept
    subset keeps the source's order.

    Raises:
        DataError: a class asks for more samples than it has, or labels name a class beyond
            ``len(counts)``.
    """
    y = _labels_numpy(labels)
    if _num_classes(y) > len(counts):
        raise DataError(
            f"labels contain class {_num_classes(y) - 1} but counts cover only {len(counts)} classes"
        )
    rng = np.random.RandomState(seed)
    kept: list[np.ndarray] = []
    for c, n_keep in enumerate(counts):
        idx = np.flatnonzero(y == c)
        if n_keep > len(idx):
            raise DataError(f"class {c} has {len(idx)} samples but the profile asks to keep {n_keep}")
        rng.shuffle(idx)
        kept.append(idx[:n_keep])
    out = np.sort(np.concatenate(kept)) if kept else np.zeros(0, dtype=np.int64)
    return torch.from_numpy(out.astype(np.int64))


def _split_by_class(y: np.ndarray, held_per_class: Sequence[int], rng: np.random.Generator) -> tuple:
    keep: list[np.ndarray] = []
    held: list[np.ndarray] = []
    for c, n_held in enumerate(held_per_class):
        idx = rng.permutation(np.flatnonzero(y == c))
        held.append(idx[:n_held])
        keep.append(idx[n_held:])
    empty = np.zeros(0, dtype=np.int64)
    keep_idx = np.sort(np.concatenate(keep)) if keep else empty
    held_idx = np.sort(np.concatenate(held)) if held else empty
    return torch.from_numpy(keep_idx.astype(np.int64)), torch.from_numpy(held_idx.astype(np.int64))


def stratified_split(labels: Tensor, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Split every class into kept and held-out samples, e.g. a 90/10 train/validation split.

    Class j with ``n_j`` samples holds out ``floor(n_j * fraction)``, but at least one when
    ``n_j >= 2`` and ``fraction > 0`` (so the rarest classes still appear in validation) and never
    all of them (a class of one sample stays in training). ``fraction == 0`` holds out nothing.

    Returns ``(keep, held_out)``: LongTensors of indices into ``labels``, each sorted ascending.

    Raises:
        ConfigError: fraction outside [0, 1).
    """
    if not (0 <= fraction < 1):
        raise ConfigError(f"dataset.val_fraction={fraction} must be in [0, 1) (e.g. 0.1 for a 90/10 split)")
    y = _labels_numpy(labels)
    sizes = np.bincount(y, minlength=_num_classes(y))
    held = []
    for n in sizes.tolist():
        h = math.floor(n * fraction + _FLOOR_EPS)
        if fraction > 0 and n >= 2:
            h = max(h, 1)
        held.append(min(h, max(n - 1, 0)))
    return _split_by_class(y, held, np.random.default_rng([seed, _STREAM_STRATIFIED]))


def balanced_holdout(labels: Tensor, per_class: int, seed: int) -> tuple[Tensor, Tensor]:
    """Hold out exactly ``per_class`` samples of every class (a balanced test set).

    Used by the embedded sources, whose files have no separate test split. Returns
    ``(rest_idx, holdout_idx)``: LongTensors of indices into ``labels``, each sorted ascending.

    Raises:
        ConfigError: per_class < 1.
        DataError: a class has ``per_class`` samples or fewer (nothing would be left to train on).
    """
    if per_class < 1:
        raise ConfigError(f"dataset.test_per_class={per_class} must be >= 1")
    y = _labels_numpy(labels)
    sizes = np.bincount(y, minlength=_num_classes(y))
    short = {c: n for c, n in enumerate(sizes.tolist()) if n <= per_class}
    if short:
        raise DataError(
            f"class sizes {short} (class: samples) are too small to hold out {per_class} per class for "
            "testing and keep some for training; lower dataset.test_per_class"
        )
    held = [per_class] * len(sizes)
    return _split_by_class(y, held, np.random.default_rng([seed, _STREAM_HOLDOUT]))


def long_tail_splits(
    train: S,
    val: S | None,
    num_classes: int,
    *,
    profile: str,
    imbalance_factor: float,
    quantity_ratio: float,
    val_fraction: float,
    seed: int,
) -> tuple[S, S | None]:
    """A source's training pool made long-tailed by the profile, then its stratified validation split.

    Returns ``(train, val)``: ``val`` is the source's own validation split unless ``val_fraction > 0``
    holds one out of the long-tailed training split. A pool the profile keeps whole is returned as is.

    Raises:
        ConfigError: ``val_fraction > 0`` for a source that has its own validation split, or a bad
            profile argument (:func:`profile_counts`).
    """
    available = torch.bincount(train.labels, minlength=num_classes).tolist()
    counts = profile_counts(profile, available, imbalance_factor, quantity_ratio)
    if counts != available:
        train = train.subset(select_per_class(train.labels, counts, seed))
    if val_fraction > 0:
        if val is not None:
            raise ConfigError(
                f"dataset.val_fraction={val_fraction} holds out a validation split but the source already "
                "provides one (e.g. dataset.use_val_list=true); set one of them"
            )
        keep, held = stratified_split(train.labels, val_fraction, seed)
        train, val = train.subset(keep), train.subset(held)
    return train, val
