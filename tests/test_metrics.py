"""LongTailMetrics against scikit-learn and hand-computed figures."""

from __future__ import annotations

import math

import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, recall_score

from lt_bench.errors import ConfigError, DataError
from lt_bench.metrics import LongTailMetrics, class_groups, scalar_metrics


def _random(n: int = 500, c: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, c, (n,), generator=g), torch.randint(0, c, (n,), generator=g)


def _result(preds, targets, counts, **kw) -> dict:
    m = LongTailMetrics(len(counts), counts, **kw)
    m.update(torch.as_tensor(preds), torch.as_tensor(targets))
    return m.compute()


def test_against_scikit_learn_on_random_predictions():
    preds, targets = _random()
    r = _result(preds, targets, [600, 300, 120, 50, 15, 5])
    y, p = targets.numpy(), preds.numpy()
    recalls = recall_score(y, p, average=None)
    assert r["top1"] == pytest.approx(accuracy_score(y, p))
    assert r["balanced_acc"] == pytest.approx(balanced_accuracy_score(y, p))
    assert r["per_class"] == pytest.approx(recalls.tolist())
    assert r["confusion"] == confusion_matrix(y, p).tolist()
    assert r["n"] == 500 and isinstance(r["n"], int)
    # many: > 100 -> classes 0, 1, 2; medium: 20..100 -> 3; few: < 20 -> 4, 5
    assert r["many"] == pytest.approx(recalls[:3].mean())
    assert r["medium"] == pytest.approx(recalls[3])
    assert r["few"] == pytest.approx(recalls[4:].mean())
    assert all(type(r[k]) is float and 0.0 <= r[k] <= 1.0 for k in ("top1", "balanced_acc", "gmean"))


def test_gmean_hand_computed():
    # recalls: class 0 1/1, class 1 1/2, class 2 1/4 -> G-mean = (1 * 1/2 * 1/4)^(1/3) = 1/2
    targets = [0, 1, 1, 2, 2, 2, 2]
    preds = [0, 1, 0, 2, 0, 1, 1]
    r = _result(preds, targets, [10, 10, 10])
    assert r["per_class"] == pytest.approx([1.0, 0.5, 0.25])
    assert r["gmean"] == pytest.approx(0.5)
    assert r["balanced_acc"] == pytest.approx(1.75 / 3)
    assert r["top1"] == pytest.approx(3 / 7)


def test_gmean_stays_accurate_where_the_product_underflows():
    # 400 classes at recall 0.1: the plain product 1e-400 underflows float64, the log-space mean does not
    c = 400
    targets = torch.arange(c).repeat_interleave(10)
    preds = torch.where(torch.arange(c * 10) % 10 == 0, targets, (targets + 1) % c)
    r = _result(preds, targets, [5] * c)
    assert r["gmean"] == pytest.approx(0.1)


def test_zero_recall_class_gives_gmean_exactly_zero():
    # class 0: 2/2 right, class 1: 1/2, class 2: 0/1
    r = _result([0, 0, 1, 0, 0], [0, 0, 1, 1, 2], [150, 50, 10])
    assert r["per_class"] == [1.0, 0.5, 0.0]
    assert (r["many"], r["medium"], r["few"]) == (1.0, 0.5, 0.0)
    assert r["balanced_acc"] == pytest.approx(0.5)
    assert r["gmean"] == 0.0  # reported, not hidden


def test_threshold_groups_at_the_boundaries():
    # many: > 100; medium: 20 <= n <= 100 (both ends inclusive); few: < 20
    counts = [101, 100, 20, 19]
    assert class_groups(counts, 100, 20) == {"many": [0], "medium": [1, 2], "few": [3]}
    # recalls 1, 1/2, 0, 1/2 -> many 1, medium (1/2 + 0)/2 = 1/4, few 1/2
    r = _result([0, 1, 0, 0, 3, 0], [0, 1, 1, 2, 3, 3], counts)
    assert (r["many"], r["medium"], r["few"]) == (1.0, 0.25, 0.5)
    # CIFAR-10-LT convention of the PPL paper: head > 1200, medium 200..1200, tail < 200
    assert class_groups([5000, 1200, 200, 199], 1200, 200) == {"many": [0], "medium": [1, 2], "few": [3]}


def test_thirds_grouping_by_count_rank():
    counts = [5, 50, 10, 40, 1, 30]  # ranks: 1 (50), 3 (40), 5 (30), 2 (10), 0 (5), 4 (1)
    assert class_groups(counts, group_by="thirds") == {"many": [1, 3], "medium": [5, 2], "few": [0, 4]}
    targets = torch.arange(6).repeat_interleave(2)
    preds = targets.clone()
    preds[[0, 1, 2, 8]] = 5  # class 0: 0/2, class 1: 1/2, class 5: 2/2, class 4: 1/2; others 2/2
    r = _result(preds, targets, counts, group_by="thirds")
    assert r["per_class"] == [0.0, 0.5, 1.0, 1.0, 0.5, 1.0]
    assert r["many"] == pytest.approx(0.75)
    assert r["medium"] == pytest.approx(1.0)
    assert r["few"] == pytest.approx(0.25)


def test_classes_without_test_samples_and_empty_groups():
    # class 2 has no test sample: per_class None, left out of balanced accuracy and G-mean;
    # it is the only few class, so few is None too; no class is many (all counts <= 100)
    r = _result([0, 1, 1], [0, 1, 0], [50, 40, 10])
    assert r["per_class"] == [0.5, 1.0, None]
    assert r["balanced_acc"] == pytest.approx(0.75)
    assert r["gmean"] == pytest.approx(math.sqrt(0.5))
    assert r["many"] is None and r["few"] is None and r["medium"] == pytest.approx(0.75)
    assert scalar_metrics(r) == pytest.approx(
        {"top1": 2 / 3, "balanced_acc": 0.75, "medium": 0.75, "gmean": 0.5**0.5}
    )


def test_nothing_evaluated_defines_no_figure():
    m = LongTailMetrics(2, [10, 1])
    with pytest.warns(UserWarning, match="before the ``update``"):
        r = m.compute()
    assert r["n"] == 0 and r["top1"] is None and r["gmean"] is None and r["per_class"] == [None, None]
    assert scalar_metrics(r) == {}


def test_logits_and_indices_give_the_same_result():
    logits = torch.randn(40, 3, generator=torch.Generator().manual_seed(1))
    targets = torch.arange(40) % 3
    assert _result(logits, targets, [30, 20, 10]) == _result(logits.argmax(1), targets, [30, 20, 10])


def test_two_shards_merge_to_the_whole():
    preds, targets = _random(n=301, seed=3)
    counts = [900, 400, 150, 60, 25, 4]
    whole, a, b = (LongTailMetrics(6, counts) for _ in range(3))
    whole.update(preds, targets)
    # two "ranks" with disjoint halves (uneven sizes: 151 and 150)
    a.update(preds[::2], targets[::2])
    b.update(preds[1::2], targets[1::2])
    assert torch.equal(a.confusion + b.confusion, whole.confusion)  # what the sum all-reduce does
    a.merge_state(b)
    assert a.compute() == whole.compute()
    assert a.compute()["n"] == 301


def test_batches_accumulate_and_reset_clears():
    preds, targets = _random(n=100, seed=5)
    m = LongTailMetrics(6, [1] * 6)
    for i in range(0, 100, 32):
        m(preds[i : i + 32], targets[i : i + 32])  # forward() as Lightning calls it
    assert m.compute()["confusion"] == confusion_matrix(targets.numpy(), preds.numpy()).tolist()
    m.reset()
    assert m.confusion.sum() == 0


def test_bad_arguments_and_inputs():
    with pytest.raises(ConfigError, match="2 class counts"):
        LongTailMetrics(3, [1, 2])
    with pytest.raises(ConfigError, match="few_threshold"):
        LongTailMetrics(2, [1, 2], many_threshold=10, few_threshold=20)
    with pytest.raises(ConfigError, match="thirds"):
        LongTailMetrics(2, [1, 2], group_by="quartiles")
    m = LongTailMetrics(3, [3, 2, 1])
    with pytest.raises(DataError, match=r"\[0, 2\]"):
        m.update(torch.tensor([0, 1]), torch.tensor([0, 3]))
    with pytest.raises(DataError):
        m.update(torch.tensor([0, 1]), torch.tensor([0, -1]))  # -1 would otherwise wrap round to class 2
    with pytest.raises(ValueError, match="3-class"):
        m.update(torch.zeros(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="do not match"):
        m.update(torch.tensor([0, 1]), torch.tensor([0, 1, 2]))
    assert m.confusion.sum() == 0  # rejected batches leave no trace
