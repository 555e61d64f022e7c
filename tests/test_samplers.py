"""Samplers: class probabilities, epoch draws, global batches and rank slices."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chisquare

from lt_bench.data.samplers import (
    class_probabilities,
    draw_epoch,
    eval_shard,
    global_batches,
    mixture_probabilities,
    rank_slice,
)

COUNTS = [400, 100, 20, 5]
LABELS = torch.arange(4).repeat_interleave(torch.tensor(COUNTS))[
    torch.randperm(525, generator=torch.Generator().manual_seed(0))
]


def test_class_probabilities_hand_computed():
    assert torch.allclose(
        class_probabilities([100, 25, 4], 0.5), torch.tensor([10, 5, 2], dtype=torch.float64) / 17
    )
    assert torch.allclose(
        class_probabilities([100, 25, 4], 0.0), torch.full((3,), 1 / 3, dtype=torch.float64)
    )
    assert torch.allclose(
        class_probabilities([100, 25, 4], 1.0), torch.tensor([100, 25, 4], dtype=torch.float64) / 129
    )
    # an empty class is never drawn, even when class-balanced
    assert class_probabilities([10, 0, 10], 0.0).tolist() == [0.5, 0.0, 0.5]


def test_mixture_probabilities_hand_computed():
    # 0.5 * [0.75, 0.25] + 0.5 * [0.5, 0.5]
    assert torch.allclose(
        mixture_probabilities([30, 10], 0.5), torch.tensor([0.625, 0.375], dtype=torch.float64)
    )
    assert torch.allclose(mixture_probabilities([30, 10], 0.0), class_probabilities([30, 10], 1.0))
    assert torch.allclose(mixture_probabilities([30, 10], 1.0), class_probabilities([30, 10], 0.0))
    with pytest.raises(ValueError):
        mixture_probabilities([30, 10], 1.5)


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
    # a final batch smaller than the number of processes would leave a rank without data
    assert [len(b) for b in global_batches(order, 10, drop_last=False, world_size=3)] == [10, 10, 3]
    assert [len(b) for b in global_batches(order, 10, drop_last=False, world_size=4)] == [10, 10]
    assert global_batches(torch.arange(0), 10, drop_last=False, world_size=2) == []


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
