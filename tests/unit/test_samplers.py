"""Samplers: epoch draws, global batches, rank slices and the batch generators both backends iterate.

Class probabilities come from their one definition, :meth:`Schedule.class_sampling_probs` (tested in
test_schedules.py); here they only feed the draws.
"""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chisquare

from lt_bench.data.samplers import (
    EpochBatches,
    EvalBatches,
    check_training_epoch,
    draw_epoch,
    eval_shard,
    global_batches,
    rank_slice,
)
from lt_bench.errors import ConfigError
from lt_bench.schedules import Schedule

COUNTS = [400, 100, 20, 5]
LABELS = torch.arange(4).repeat_interleave(torch.tensor(COUNTS))[
    torch.randperm(525, generator=torch.Generator().manual_seed(0))
]


def class_probabilities(counts: list[int], q: float) -> torch.Tensor:
    """``p_j ∝ n_j^q`` as the schedule computes it (``q = 1 - delta`` from the step at epoch 0)."""
    probs = Schedule(sampling="exponent", delta=1.0 - q).class_sampling_probs(0, counts)
    if probs is None:  # q = 1 is instance sampling: a permutation, whose class law is n_j / N
        return torch.tensor(counts, dtype=torch.float64) / sum(counts)
    return probs


def test_instance_epoch_is_a_permutation_deterministic_per_seed_and_epoch():
    order = draw_epoch(LABELS, seed=0, epoch=3, class_probs=None)
    assert sorted(order.tolist()) == list(range(525))
    assert torch.equal(order, draw_epoch(LABELS, seed=0, epoch=3, class_probs=None))
    assert not torch.equal(order, draw_epoch(LABELS, seed=0, epoch=4, class_probs=None))
    assert not torch.equal(order, draw_epoch(LABELS, seed=1, epoch=3, class_probs=None))


def _class_frequencies(q: float, epochs: int = 40) -> torch.Tensor:
    probs = class_probabilities(COUNTS, q)
    drawn = torch.cat([draw_epoch(LABELS, 7, e, probs) for e in range(epochs)])
    return torch.bincount(LABELS[drawn], minlength=4)


@pytest.mark.parametrize("q", [0.0, 0.5, 1.0])
def test_class_aware_frequencies_follow_n_to_the_q(q):
    observed = _class_frequencies(q)
    expected = class_probabilities(COUNTS, q) * observed.sum()
    # 21,000 draws with a fixed seed: the right law passes easily ...
    assert chisquare(observed.numpy(), expected.numpy()).pvalue > 1e-3
    # ... and a wrong one (instance vs balanced) is rejected, so the check has power
    wrong = class_probabilities(COUNTS, 1.0 if q < 1 else 0.0) * observed.sum()
    assert chisquare(observed.numpy(), wrong.numpy()).pvalue < 1e-6


def test_uniform_within_a_class():
    probs = class_probabilities(COUNTS, 0.0)
    drawn = torch.cat([draw_epoch(LABELS, 1, e, probs) for e in range(40)])
    rare = torch.nonzero(LABELS == 3).flatten()  # the 5 samples of the rarest class
    hits = torch.stack([(drawn == i).sum() for i in rare])
    assert chisquare(hits.numpy()).pvalue > 1e-3
    assert int(hits.sum()) > 4000  # a quarter of 21,000 draws


def test_class_aware_epoch_deterministic_and_epoch_dependent():
    probs = class_probabilities(COUNTS, 0.5)
    a = draw_epoch(LABELS, 0, 2, probs)
    assert len(a) == 525
    assert torch.equal(a, draw_epoch(LABELS, 0, 2, probs))
    assert not torch.equal(a, draw_epoch(LABELS, 0, 3, probs))


def test_class_probs_for_an_empty_class_is_rejected():
    with pytest.raises(ValueError, match="no training samples"):
        draw_epoch(torch.tensor([0, 0, 2]), 0, 0, torch.tensor([0.4, 0.2, 0.4]))


def test_global_batches_and_drop_last():
    order = torch.arange(23)
    assert [len(b) for b in global_batches(order, 10, drop_last=False)] == [10, 10, 3]
    assert [len(b) for b in global_batches(order, 10, drop_last=True)] == [10, 10]
    # a final batch that would give some process fewer than 2 samples joins the batch before it
    assert [len(b) for b in global_batches(order, 10, drop_last=False, world_size=1)] == [10, 10, 3]
    assert [len(b) for b in global_batches(order, 10, drop_last=False, world_size=2)] == [10, 13]
    assert [len(b) for b in global_batches(torch.arange(21), 10, drop_last=False)] == [10, 11]
    assert torch.equal(torch.cat(global_batches(order, 10, drop_last=False, world_size=4)), order)
    assert global_batches(torch.arange(0), 10, drop_last=False, world_size=2) == []


# (train set, batch, processes): 897 = 7 * 128 + 1 (imbalance factor 50, val_fraction 0.2), 141 and 32
# with a remainder of one per process or less
@pytest.mark.parametrize(("n", "batch_size", "world_size"), [(897, 128, 1), (847, 141, 1), (993, 32, 2)])
def test_no_process_ever_gets_a_batch_of_one_sample(n, batch_size, world_size):
    labels = torch.arange(n) % 3
    ranks = [EpochBatches(labels, batch_size, rank=r, world_size=world_size) for r in range(world_size)]
    sizes = [[len(b.indices) for b in r] for r in ranks]
    assert min(min(s) for s in sizes) >= 2
    assert [len(s) for s in sizes] == [len(r) for r in ranks]  # __len__ is what iterating gives
    assert sum(map(sum, sizes)) == n  # nothing is left out of the epoch


def test_the_last_merged_batch_resumes_where_it_stopped():
    labels = torch.arange(897) % 3
    full = list(EpochBatches(labels, 128))
    resumed = EpochBatches(labels, 128)
    resumed.load_state_dict({"epoch": 0, "batches_done": 6})
    rest = list(resumed)
    assert len(full) == 7 and len(rest) == 1 and torch.equal(rest[0].indices, full[6].indices)
    assert len(rest[0].indices) == 129


@pytest.mark.parametrize(
    ("n", "batch_size", "drop_last", "world_size", "limit", "needles"),
    [
        (100, 128, True, 1, None, ["training set 100 images", "dataset.batch_size=128", "0 batch(es)"]),
        (500, 1, False, 2, None, ["dataset.batch_size=1", "2 process(es)", "BatchNorm"]),
        (500, 3, False, 2, None, ["at least 4", "as few as 1 image(s) per process"]),
        (500, 1, False, 1, None, ["dataset.batch_size=1", "BatchNorm"]),
        (3, 128, False, 2, None, ["training set 3 images", "as few as 1"]),
        (500, 100, False, 1, 0.1, ["trainer.limit_train_batches=0.1", "0 batch(es) per process"]),
    ],
)
def test_an_epoch_that_cannot_train_is_refused_with_the_numbers(
    n, batch_size, drop_last, world_size, limit, needles
):
    with pytest.raises(ConfigError) as err:
        check_training_epoch(n, batch_size, drop_last, world_size, limit)
    for needle in needles:
        assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_an_epoch_that_trains_counts_its_batches():
    assert check_training_epoch(897, 128, False) == 7
    assert check_training_epoch(897, 128, True) == 7
    assert check_training_epoch(900, 128, False, 2, 0.5) == 4  # 900 = 7 * 128 + 4: 8 batches, half of them
    assert check_training_epoch(900, 128, False, 2, 2) == 2
    assert check_training_epoch(5, 128, False) == 1  # one batch of the whole (small) set


@pytest.mark.parametrize("world_size", [2, 3])
def test_union_of_rank_slices_is_the_global_batch(world_size):
    order = draw_epoch(LABELS, 0, 0, class_probabilities(COUNTS, 0.5))
    single = global_batches(order, 32, drop_last=False)
    multi = global_batches(order, 32, drop_last=False, world_size=world_size)
    assert len(multi) == len(single)  # 525 = 16 * 32 + 13: the last batch is big enough
    for batch in multi:
        parts = [rank_slice(batch, r, world_size) for r in range(world_size)]
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
        # interleaving the strided parts rebuilds the global batch exactly, in order
        rebuilt = torch.empty_like(batch)
        for r, part in enumerate(parts):
            rebuilt[r::world_size] = part
        assert torch.equal(rebuilt, batch)


def test_rank_slice_rejects_bad_rank():
    with pytest.raises(ValueError):
        rank_slice(torch.arange(4), 2, 2)


def test_eval_shard_partitions_the_samples():
    shards = [eval_shard(10, r, 3) for r in range(3)]
    assert [s.tolist() for s in shards] == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert sorted(torch.cat(shards).tolist()) == list(range(10))
    assert eval_shard(10, 0, 1).tolist() == list(range(10))


def _epoch_batches(**kwargs) -> EpochBatches:
    probs = class_probabilities(COUNTS, 0.5)
    return EpochBatches(LABELS, 32, seed=4, sampling_fn=lambda e: None if e == 0 else probs, **kwargs)


@pytest.mark.parametrize("epoch", [0, 1])  # a permutation, then a class-aware draw
def test_epoch_batches_are_the_global_batches_of_the_draw(epoch):
    batches = _epoch_batches()
    batches.set_epoch(epoch)
    got = list(batches)
    expected = global_batches(draw_epoch(LABELS, 4, epoch, batches.sampling_fn(epoch)), 32, False)
    assert len(got) == len(batches) == len(expected) == 17  # 525 = 16 * 32 + 13
    assert all(torch.equal(g.indices, e) for g, e in zip(got, expected, strict=True))
    # keys count the draws of the epoch: epoch * N + position, whatever the batch
    assert torch.equal(torch.cat([g.keys for g in got]), epoch * 525 + torch.arange(525))


def test_epoch_batches_resume_inside_the_epoch_once():
    full = _epoch_batches()
    full.set_epoch(1)
    expected = list(full)
    resumed = _epoch_batches()
    resumed.load_state_dict({"epoch": 1, "batches_done": 5})
    resumed.set_epoch(1)
    rest = list(resumed)
    assert len(rest) == len(expected) - 5
    assert all(
        torch.equal(a.indices, b.indices) and torch.equal(a.keys, b.keys)
        for a, b in zip(rest, expected[5:], strict=True)
    )
    assert resumed.state_dict() == {"epoch": 1, "batches_done": len(expected)}
    assert len(list(resumed)) == len(expected)  # the resume position is used once, then the epoch restarts
    stale = _epoch_batches()
    stale.load_state_dict({"epoch": 0, "batches_done": 5})  # saved in another epoch: nothing to skip
    stale.set_epoch(1)
    assert len(list(stale)) == len(expected)


@pytest.mark.parametrize("world_size", [2, 3])
def test_epoch_batches_of_the_ranks_partition_the_single_process_batches(world_size):
    single = _epoch_batches()
    single.set_epoch(1)
    ranks = [_epoch_batches(rank=r, world_size=world_size) for r in range(world_size)]
    for r in ranks:
        r.set_epoch(1)
    for whole, *parts in zip(single, *ranks, strict=True):
        assert sorted(torch.cat([p.indices for p in parts]).tolist()) == sorted(whole.indices.tolist())
        assert sorted(torch.cat([p.keys for p in parts]).tolist()) == sorted(whole.keys.tolist())


def test_a_global_batch_smaller_than_two_per_process_is_a_config_error():
    with pytest.raises(ConfigError, match="dataset.batch_size=7"):
        EpochBatches(LABELS, 7, world_size=4)


def test_eval_batches_cover_the_shard_in_order():
    batches = EvalBatches(10, 3, rank=1, world_size=3)
    assert [b.indices.tolist() for b in batches] == [[1, 4, 7]] and len(batches) == 1
    assert all(b.keys is None for b in batches)
    assert [b.indices.tolist() for b in EvalBatches(7, 3)] == [[0, 1, 2], [3, 4, 5], [6]]
