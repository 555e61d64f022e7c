"""PHASE's multi-scale reweighting against a naive pairwise implementation and the paper's formulas."""

from __future__ import annotations

import torch

from lt_bench.methods.phase import global_weights, local_weights, mean_unit_similarity, msr_weights


def _clustered(counts, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats, labels = [], []
    for j, n in enumerate(counts):
        centre = torch.randn(dim, generator=g) * 3
        feats.append(centre + torch.randn(n, dim, generator=g))
        labels.append(torch.full((n,), j))
    return torch.cat(feats).double(), torch.cat(labels)


def _naive_similarity(features, labels):
    s = torch.empty(len(labels), dtype=torch.float64)
    for i in range(len(labels)):
        members = features[labels == labels[i]]
        mu = members.mean(0)
        u_i = (features[i] - mu) / (features[i] - mu).norm()
        total = 0.0
        for k in range(len(members)):
            u_k = (members[k] - mu) / (members[k] - mu).norm()
            total += float(u_i @ u_k)
        s[i] = total / len(members)
    return s


def test_mean_similarity_equals_pairwise_definition():
    features, labels = _clustered([30, 12, 5])
    fast = mean_unit_similarity(features, labels, 3)
    assert torch.allclose(fast, _naive_similarity(features, labels), atol=1e-10)


def test_global_weights_by_hand():
    # pi = (0.8, 0.2): pi^-1 = (1.25, 5), mean 3.125 -> (0.4, 1.6)
    w = global_weights(torch.tensor([80, 20]), gamma=1.0)
    assert torch.allclose(w, torch.tensor([0.4, 1.6], dtype=torch.float64))
    assert torch.allclose(
        global_weights(torch.tensor([80, 20]), gamma=0.0), torch.ones(2, dtype=torch.float64)
    )


def test_local_weights_mapped_have_mean_one_per_class_and_follow_formula():
    labels = torch.tensor([0, 0, 1, 1, 1])
    s = torch.tensor([0.5, -0.5, 0.2, 0.2, -1.0], dtype=torch.float64)
    w = local_weights(s, labels, 2)
    # class 0: 1/0.75, 1/0.25 -> (4/3, 4), mean 8/3 -> (0.5, 1.5)
    assert torch.allclose(w[:2], torch.tensor([0.5, 1.5], dtype=torch.float64))
    # class 1: 1/0.6, 1/0.6, 1/max(0, 1e-3) = 1000
    raw = torch.tensor([1 / 0.6, 1 / 0.6, 1000.0], dtype=torch.float64)
    assert torch.allclose(w[2:], raw / raw.mean())
    for j in (0, 1):
        assert torch.isclose(w[labels == j].mean(), torch.tensor(1.0, dtype=torch.float64))


def test_msr_weights_combine_global_and_local():
    features, labels = _clustered([40, 10, 4], seed=1)
    counts = [40, 10, 4]
    w = msr_weights(features, labels, counts, alpha=0.8, gamma=1.0)
    w_local = local_weights(_naive_similarity(features, labels), labels, 3)
    w_global = global_weights(torch.tensor(counts), 1.0)[labels]
    assert torch.allclose(w.double(), 0.8 * w_global + 0.2 * w_local, atol=1e-6)
    # alpha = 1 leaves only class weights; within a class they are constant
    only_global = msr_weights(features, labels, counts, alpha=1.0)
    assert torch.allclose(only_global[labels == 2], only_global[labels == 2][0].expand(4))
