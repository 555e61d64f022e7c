"""Class-count profiles and deterministic selection / splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lt_bench.data.profiles import (
    balanced_holdout,
    long_tail_splits,
    profile_counts,
    select_per_class,
    stratified_split,
)
from lt_bench.data.sources import FileList
from lt_bench.errors import ConfigError, DataError


def test_exp_cifar10_if100_matches_cifar_lt():
    counts = profile_counts("exp", [5000] * 10, 100)
    assert counts == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert sum(counts) == 12406  # the published size of CIFAR-10-LT (IF 100)


def test_exp_cifar100_if100_first_last_and_total():
    counts = profile_counts("exp", [500] * 100, 100)
    assert counts[0] == 500 and counts[-1] == 5
    assert sum(counts) == 10847  # the published size of CIFAR-100-LT (IF 100)
    assert all(a >= b for a, b in zip(counts, counts[1:], strict=False))


def test_exp_uses_the_smallest_class_as_n_max():
    # 5000 * 0.1 ** 0.5 = 1581.1 -> 1581 would be wrong: n_max is min(available) = 4000
    assert profile_counts("exp", [5000, 4000, 4500], 10) == [4000, 1264, 400]


def test_step_splits_after_half_the_classes():
    assert profile_counts("step", [5000] * 10, 10) == [5000] * 5 + [500] * 5
    # odd C: the extra class is a minority class
    assert profile_counts("step", [100] * 5, 10) == [100, 100, 10, 10, 10]


def test_even_minority_reduces_even_classes_only():
    assert profile_counts("even_minority", [400] * 6, 10) == [40, 400, 40, 400, 40, 400]
    # per class: int(available_i / q), at least 1
    assert profile_counts("even_minority", [95, 7, 50], 100) == [1, 7, 1]


def test_none_keeps_everything():
    assert profile_counts("none", [3, 5, 7], 100) == [3, 5, 7]


def test_quantity_ratio_after_profile():
    # exp: 100, int(100 * 0.1 ** 0.5) = 31, 10; then QR 0.5: 50, 15, 5
    assert profile_counts("exp", [100] * 3, 10, quantity_ratio=0.5) == [50, 15, 5]
    # never below one sample
    assert profile_counts("none", [3, 1], 1, quantity_ratio=0.1) == [1, 1]


def test_every_class_keeps_at_least_one_sample():
    assert profile_counts("exp", [50] * 3, 200) == [50, 3, 1]


@pytest.mark.parametrize(
    "args",
    [
        ("zipf", [10, 10], 10, 1.0),
        ("exp", [10, 10], 0.5, 1.0),
        ("exp", [10, 10], 10, 0.0),
        ("exp", [10, 10], 10, 1.5),
    ],
)
def test_invalid_profile_arguments(args):
    with pytest.raises(ConfigError):
        profile_counts(*args)


def test_empty_class_in_source_is_a_data_error():
    with pytest.raises(DataError, match=r"\[1\]"):
        profile_counts("exp", [10, 0, 10], 10)


def test_select_per_class_follows_the_cifar_lt_convention():
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 2, 0])
    kept = select_per_class(labels, [2, 1, 1], seed=3)
    # one RandomState(seed) shuffles class 0's indices, then class 1's, then class 2's
    rng = np.random.RandomState(3)
    expected = []
    for c, n in enumerate([2, 1, 1]):
        idx = np.flatnonzero(labels.numpy() == c)
        rng.shuffle(idx)
        expected.extend(idx[:n].tolist())
    assert kept.tolist() == sorted(expected)
    assert kept.dtype == torch.long


def test_select_per_class_counts_determinism_and_seed():
    labels = torch.arange(10).repeat(50)  # 50 per class, interleaved
    counts = [50, 30, 20, 10, 5, 5, 4, 3, 2, 1]
    kept = select_per_class(labels, counts, seed=0)
    assert torch.bincount(labels[kept], minlength=10).tolist() == counts
    assert kept.tolist() == sorted(set(kept.tolist()))  # sorted, no duplicates
    assert torch.equal(kept, select_per_class(labels, counts, seed=0))
    assert not torch.equal(kept, select_per_class(labels, counts, seed=1))


def test_select_per_class_rejects_too_many():
    with pytest.raises(DataError, match="class 1 has 2 samples"):
        select_per_class(torch.tensor([0, 0, 1, 1]), [1, 3], seed=0)


def test_stratified_split_sizes():
    labels = torch.tensor([0] * 10 + [1] * 5 + [2] * 2 + [3] * 1)
    keep, held = stratified_split(labels, 0.1, seed=0)
    # floor(1.0)=1, floor(0.5)->1 (at least one), floor(0.2)->1, a single sample stays in training
    assert torch.bincount(labels[held], minlength=4).tolist() == [1, 1, 1, 0]
    keep, held = stratified_split(labels, 0.3, seed=0)
    assert torch.bincount(labels[held], minlength=4).tolist() == [3, 1, 1, 0]
    assert sorted(keep.tolist() + held.tolist()) == list(range(len(labels)))


def test_stratified_split_floor_is_not_fooled_by_float_rounding():
    labels = torch.zeros(100, dtype=torch.long)
    _, held = stratified_split(labels, 0.29, seed=0)  # 0.29 * 100 = 28.999999999999996 in floats
    assert len(held) == 29


def test_stratified_split_zero_fraction_and_determinism():
    labels = torch.arange(3).repeat(7)
    keep, held = stratified_split(labels, 0.0, seed=0)
    assert len(held) == 0 and keep.tolist() == list(range(21))
    a = stratified_split(labels, 0.4, seed=5)
    b = stratified_split(labels, 0.4, seed=5)
    c = stratified_split(labels, 0.4, seed=6)
    assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0])
    assert not torch.equal(a[1], c[1])
    with pytest.raises(ConfigError):
        stratified_split(labels, 1.0, seed=0)


def test_balanced_holdout():
    labels = torch.tensor([0] * 8 + [1] * 5 + [2] * 4)
    rest, held = balanced_holdout(labels, 3, seed=0)
    assert torch.bincount(labels[held]).tolist() == [3, 3, 3]
    assert torch.bincount(labels[rest]).tolist() == [5, 2, 1]
    assert sorted(rest.tolist() + held.tolist()) == list(range(17))
    assert torch.equal(held, balanced_holdout(labels, 3, seed=0)[1])
    with pytest.raises(DataError, match="test_per_class"):
        balanced_holdout(labels, 4, seed=0)


def _long_tail(pool, val=None, **kwargs):
    args = {"profile": "exp", "imbalance_factor": 4, "quantity_ratio": 1.0, "val_fraction": 0.25, "seed": 0}
    return long_tail_splits(pool, val, 3, **{**args, **kwargs})


def test_long_tail_splits_apply_the_profile_then_hold_out_validation():
    labels = torch.arange(3).repeat(20)
    pool = FileList([f"{i}.jpg" for i in range(60)], labels)  # any split type: here one of image files
    train, val = _long_tail(pool)
    kept = select_per_class(labels, [20, 10, 5], seed=0)  # exp, IF 4: 20, int(20 / 2), 5
    keep, held = stratified_split(labels[kept], 0.25, seed=0)
    assert train.paths == [f"{i}.jpg" for i in kept[keep].tolist()]
    assert val.paths == [f"{i}.jpg" for i in kept[held].tolist()]
    assert torch.bincount(val.labels).tolist() == [5, 2, 1]
    whole, none = _long_tail(pool, profile="none", val_fraction=0.0)
    assert whole is pool and none is None  # a pool the profile keeps whole is not copied


def test_long_tail_splits_keep_a_sources_own_validation_split_but_not_two():
    pool = FileList([f"{i}.jpg" for i in range(6)], torch.arange(3).repeat(2))
    own = FileList(["v.jpg"], torch.tensor([0]))
    assert _long_tail(pool, own, profile="none", val_fraction=0.0)[1] is own
    with pytest.raises(ConfigError, match="dataset.val_fraction=0.25 holds out a validation split"):
        _long_tail(pool, own)
