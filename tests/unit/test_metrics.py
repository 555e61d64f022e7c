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


def _scores(preds, num_classes: int) -> torch.Tensor:
    """Logits whose argmax is ``preds``: the metric takes logits, and the top-1 figures only their argmax."""
    return torch.nn.functional.one_hot(torch.as_tensor(preds), num_classes).double()


def _result(preds, targets, counts, **kw) -> dict:
    m = LongTailMetrics(len(counts), counts, **kw)
    m.update(_scores(preds, len(counts)), torch.as_tensor(targets))
    return m.compute()


def test_against_scikit_learn_on_random_predictions():
    preds, targets = _random()
    r = _result(preds, targets, [600, 300, 120, 50, 15, 5])
    y, p = targets.numpy(), preds.numpy()
    recalls = recall_score(y, p, average=None)
    assert r["top1"] == pytest.approx(accuracy_score(y, p))
    assert r["balanced_acc"] == pytest.approx(balanced_accuracy_score(y, p))
    assert r["per_class"] == pytest.approx(recalls.tolist())
    assert r["confusion"].tolist() == confusion_matrix(y, p).tolist()
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
    scalars = scalar_metrics(r)
    assert {k: scalars[k] for k in ("top1", "balanced_acc", "medium", "gmean")} == pytest.approx(
        {"top1": 2 / 3, "balanced_acc": 0.75, "medium": 0.75, "gmean": 0.5**0.5}
    )
    assert "many" not in scalars and "few" not in scalars  # undefined figures are not logged


def test_nothing_evaluated_defines_no_figure():
    m = LongTailMetrics(2, [10, 1])
    with pytest.warns(UserWarning, match="before the ``update``"):
        r = m.compute()
    assert r["n"] == 0 and r["top1"] is None and r["gmean"] is None and r["per_class"] == [None, None]
    assert scalar_metrics(r) == {}


def test_top1_figures_depend_on_the_argmax_only():
    logits = torch.randn(40, 3, generator=torch.Generator().manual_seed(1))
    targets = torch.arange(40) % 3
    m = LongTailMetrics(3, [30, 20, 10])
    m.update(logits, targets)
    r = m.compute()
    assert {k: r[k] for k in ("top1", "per_class", "gmean")} == {
        k: _result(logits.argmax(1), targets, [30, 20, 10])[k] for k in ("top1", "per_class", "gmean")
    }


def test_two_shards_merge_to_the_whole():
    preds, targets = _random(n=301, seed=3)
    counts = [900, 400, 150, 60, 25, 4]
    whole, a, b = (LongTailMetrics(6, counts) for _ in range(3))
    # two "ranks" with disjoint halves (uneven sizes: 151 and 150)
    scores = torch.randn(301, 6, generator=torch.Generator().manual_seed(4)) + 3 * _scores(preds, 6)
    whole.update(scores, targets)
    a.update(scores[::2], targets[::2])
    b.update(scores[1::2], targets[1::2])
    assert torch.equal(a.confusion + b.confusion, whole.confusion)  # what the sum all-reduce does
    assert torch.equal(a.correct + b.correct, whole.correct) and torch.equal(a.total + b.total, whole.total)
    a.merge_state(b)
    merged, expected = a.compute(), whole.compute()
    # counts are exact; the float sums (NLL, bin confidences) only differ by summation order
    for key in ("top1", "balanced_acc", "many", "medium", "few", "gmean", "top5", "per_class", "n"):
        assert merged[key] == expected[key], key
    assert torch.equal(merged["confusion"], expected["confusion"])
    assert merged["nll"] == pytest.approx(expected["nll"], rel=1e-12)
    assert merged["ece"] == pytest.approx(expected["ece"], rel=1e-12)
    assert merged["n"] == 301


def test_batches_accumulate_and_reset_clears():
    preds, targets = _random(n=100, seed=5)
    m = LongTailMetrics(6, [1] * 6)
    scores = _scores(preds, 6)
    for i in range(0, 100, 32):
        m(scores[i : i + 32], targets[i : i + 32])  # forward() as Lightning calls it
    assert m.compute()["confusion"].tolist() == confusion_matrix(targets.numpy(), preds.numpy()).tolist()
    m.reset()
    assert m.confusion.sum() == 0 and m.total.sum() == 0 and m.bin_count.sum() == 0 and m.nll_sum == 0


def test_bad_arguments_and_inputs():
    with pytest.raises(ConfigError, match="2 class counts"):
        LongTailMetrics(3, [1, 2])
    with pytest.raises(ConfigError, match="few_threshold"):
        LongTailMetrics(2, [1, 2], many_threshold=10, few_threshold=20)
    with pytest.raises(ConfigError, match="thirds"):
        LongTailMetrics(2, [1, 2], group_by="quartiles")
    m = LongTailMetrics(3, [3, 2, 1])
    two = torch.zeros(2, 3)
    with pytest.raises(DataError, match=r"\[0, 2\]"):
        m.update(two, torch.tensor([0, 3]))
    with pytest.raises(DataError):
        m.update(two, torch.tensor([0, -1]))  # -1 would otherwise wrap round to class 2
    with pytest.raises(ValueError, match="3-class"):
        m.update(torch.zeros(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="float scores"):
        m.update(torch.tensor([0, 1]), torch.tensor([0, 1]))  # class indices carry no probabilities
    with pytest.raises(ValueError, match="do not match"):
        m.update(two, torch.tensor([0, 1, 2]))
    assert m.confusion.sum() == 0 and m.total.sum() == 0  # rejected batches leave no trace


# -- top-5, calibration, NLL -------------------------------------------------------------------------------
def _probabilities_as_logits(rows: list[list[float]]) -> torch.Tensor:
    """log p: its softmax is p again (the rows sum to 1)."""
    return torch.tensor(rows, dtype=torch.float64).log()


def test_top5_against_scikit_learn():
    from sklearn.metrics import top_k_accuracy_score

    g = torch.Generator().manual_seed(7)
    logits = torch.randn(300, 12, generator=g)
    targets = torch.randint(0, 12, (300,), generator=g)
    m = LongTailMetrics(12, [50] * 12)
    for i in range(0, 300, 64):  # several batches
        m.update(logits[i : i + 64], targets[i : i + 64])
    r = m.compute()
    expected = top_k_accuracy_score(targets.numpy(), logits.numpy(), k=5, labels=list(range(12)))
    assert r["top5"] == pytest.approx(expected)
    assert r["top1"] == pytest.approx(top_k_accuracy_score(targets.numpy(), logits.numpy(), k=1))
    # with fewer than 5 classes top-k takes every class: always a hit
    small = LongTailMetrics(3, [5, 5, 5])
    small.update(torch.randn(9, 3, generator=g), torch.arange(9) % 3)
    assert small.compute()["top5"] == 1.0


def test_ece_nll_and_group_calibration_hand_computed():
    # class 0 is "many" (150 > 100), class 1 "few" (10 < 20); 15 bins of width 1/15
    #   a: p = (0.90, 0.10), y = 0 -> predicts 0, conf 0.90, right  (bin 13: (13/15, 14/15])
    #   b: p = (0.12, 0.88), y = 0 -> predicts 1, conf 0.88, wrong  (bin 13)
    #   c: p = (0.30, 0.70), y = 1 -> predicts 1, conf 0.70, right  (bin 10: (10/15, 11/15])
    #   d: p = (0.55, 0.45), y = 1 -> predicts 0, conf 0.55, wrong  (bin 8: (8/15, 9/15])
    logits = _probabilities_as_logits([[0.9, 0.1], [0.12, 0.88], [0.3, 0.7], [0.55, 0.45]])
    m = LongTailMetrics(2, [150, 10])
    m.update(logits, torch.tensor([0, 0, 1, 1]))
    r = m.compute()
    # ECE = sum_b |correct_b - confidence_b| / N = (|1 - 1.78| + |1 - 0.70| + |0 - 0.55|) / 4
    assert r["ece"] == pytest.approx((0.78 + 0.30 + 0.55) / 4)
    assert r["nll"] == pytest.approx(-(math.log(0.9) + math.log(0.12) + math.log(0.7) + math.log(0.45)) / 4)
    assert r["top1"] == 0.5
    cal = r["calibration"]
    assert cal["bins"] == 15
    assert cal["all"]["count"] == [0] * 8 + [1, 0, 1, 0, 0, 2, 0]
    assert cal["all"]["confidence"][13] == pytest.approx(0.89) and cal["all"]["accuracy"][13] == 0.5
    assert cal["all"]["accuracy"][8] == 0.0 and cal["all"]["confidence"][0] is None
    # per group of the true class: many = {a, b}, few = {c, d}, medium empty
    assert cal["many"]["ece"] == pytest.approx(0.78 / 2)
    assert cal["few"]["ece"] == pytest.approx((0.30 + 0.55) / 2)
    assert cal["medium"]["ece"] is None and sum(cal["medium"]["count"]) == 0


def test_ece_matches_a_direct_implementation_on_random_logits():
    # Guo et al.'s loop: bins (lower, upper] over linspace(0, 1, 16)
    g = torch.Generator().manual_seed(3)
    logits = 3 * torch.randn(2000, 7, generator=g, dtype=torch.float64)
    targets = torch.randint(0, 7, (2000,), generator=g)
    m = LongTailMetrics(7, [1] * 7)
    m.update(logits, targets)
    probs = logits.softmax(1)
    confidence, preds = probs.max(1)
    correct = (preds == targets).double()
    edges = torch.linspace(0, 1, 16, dtype=torch.float64)
    ece = 0.0
    for lower, upper in zip(edges[:-1], edges[1:], strict=True):
        inside = (confidence > lower) & (confidence <= upper)
        if inside.any():
            ece += float(inside.double().mean() * (correct[inside].mean() - confidence[inside].mean()).abs())
    assert m.compute()["ece"] == pytest.approx(ece, abs=1e-12)
    nll = torch.nn.functional.cross_entropy(logits, targets)
    assert m.compute()["nll"] == pytest.approx(float(nll), rel=1e-12)


def test_confusion_matrix_only_up_to_the_threshold_or_on_request():
    small, large = LongTailMetrics(100, [1] * 100), LongTailMetrics(101, [1] * 101)
    assert small.keeps_confusion and not large.keeps_confusion
    assert "confusion" not in dict(large.metric_state)  # not even allocated
    logits = torch.randn(5, 101, generator=torch.Generator().manual_seed(0))
    large.update(logits, torch.arange(5))
    assert large.compute()["confusion"] is None and large.compute()["n"] == 5
    asked = large.like(confusion=True)
    asked.update(logits, torch.arange(5))
    assert asked.compute()["confusion"].sum() == 5 and asked.compute()["confusion"].shape == (101, 101)
    assert not small.like(confusion=False).keeps_confusion


def test_state_stays_small_for_many_classes():
    # the iNaturalist case: O(C) counts, no C x C matrix (which would be 8142^2 x 8 bytes = 530 MB)
    m = LongTailMetrics(8142, [3] * 8142)
    state_bytes = sum(t.numel() * t.element_size() for t in m.metric_state.values())
    assert state_bytes < 200_000
