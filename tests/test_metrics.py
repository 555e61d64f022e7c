"""LongTailMetrics against scikit-learn and hand-computed group means."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, recall_score

from lt_bench.errors import ConfigError
from lt_bench.metrics import LongTailMetrics


def _random(n=500, c=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, c, (n,), generator=g), torch.randint(0, c, (n,), generator=g)


def test_against_scikit_learn_on_random_predictions():
    preds, targets = _random()
    m = LongTailMetrics(6, [600, 300, 120, 50, 15, 5])
    m.update(preds, targets)
    r = m.compute()
    y, p = targets.numpy(), preds.numpy()
    assert r["top1"] == pytest.approx(accuracy_score(y, p))
    assert r["balanced_acc"] == pytest.approx(balanced_accuracy_score(y, p))
    assert r["per_class"] == pytest.approx(recall_score(y, p, average=None).tolist())
    assert r["confusion"] == confusion_matrix(y, p).tolist()
    assert r["n"] == 500
    recalls = recall_score(y, p, average=None)
    assert r["gmean"] == pytest.approx(math.exp(np.log(recalls).mean()))
    # many: > 100 -> classes 0,1,2; medium: 20..100 -> 3; few: < 20 -> 4,5
    assert r["many"] == pytest.approx(recalls[:3].mean())
    assert r["medium"] == pytest.approx(recalls[3])
    assert r["few"] == pytest.approx(recalls[4:].mean())


def test_hand_computed_groups_and_zero_recall_gmean():
    # class 0: 2/2 right, class 1: 1/2, class 2: 0/1
    m = LongTailMetrics(3, [150, 50, 10])
    m.update(torch.tensor([0, 0, 1, 0, 0]), torch.tensor([0, 0, 1, 1, 2]))
    r = m.compute()
    assert r["per_class"] == [1.0, 0.5, 0.0]
    assert (r["many"], r["medium"], r["few"]) == (1.0, 0.5, 0.0)
    assert r["balanced_acc"] == pytest.approx(0.5)
    assert r["top1"] == pytest.approx(3 / 5)
    assert r["gmean"] == 0.0  # a class with recall 0 makes the geometric mean 0: reported, not hidden


def test_logits_and_indices_agree_and_thirds_grouping():
    logits = torch.randn(40, 3, generator=torch.Generator().manual_seed(1))
    targets = torch.arange(40) % 3
    a, b = LongTailMetrics(3, [30, 20, 10], group_by="thirds"), LongTailMetrics(3, [30, 20, 10])
    a.update(logits, targets)
    b.update(logits.argmax(1), targets)
    ra, rb = a.compute(), b.compute()
    assert ra["confusion"] == rb["confusion"]
    assert ra["many"] == ra["per_class"][0] and ra["few"] == ra["per_class"][2]


def test_two_shards_merge_to_the_whole():
    preds, targets = _random(n=301, seed=3)
    whole, a, b = (LongTailMetrics(6, [9, 8, 7, 6, 5, 4]) for _ in range(3))
    whole.update(preds, targets)
    a.update(preds[::2], targets[::2])
    b.update(preds[1::2], targets[1::2])
    a.merge_state(b)
    assert a.compute()["confusion"] == whole.compute()["confusion"]
    assert a.compute()["n"] == 301


def test_bad_arguments():
    with pytest.raises(ConfigError):
        LongTailMetrics(3, [1, 2])
    with pytest.raises(ConfigError):
        LongTailMetrics(2, [1, 2], many_threshold=10, few_threshold=20)
