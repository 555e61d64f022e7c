"""Long-tail evaluation: sum-reduced counts as the only state, every reported figure derived from them.

Every state is a sum over samples (per-class correct and total counts, the top-k hit count, the NLL sum,
per-group calibration bins, and — for few classes or on request — the confusion matrix), so distributed
evaluation is exact: the per-process states are summed, each sample counts once, and every figure (top-1,
balanced accuracy, group means, G-mean, top-5, ECE, NLL) comes from the same global sums.

Memory: the always-kept state is O(C) (2 x 8,142 int64 counts for iNaturalist, 130 kB). The C x C
confusion matrix (530 MB at 8,142 classes, all-reduced after every validation epoch) is kept only up to
:data:`CONFUSION_MAX_CLASSES` classes or when asked for; no reported figure needs it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from lt_bench.errors import ConfigError, DataError

#: Keys of :meth:`LongTailMetrics.compute` that are single numbers (``None`` when undefined). All are
#: fractions in [0, 1] except ``nll`` (nats per sample).
SCALAR_KEYS = ("top1", "balanced_acc", "many", "medium", "few", "gmean", "top5", "ece", "nll")
#: Figures for which lower is better (model selection and post-hoc selection minimise them).
LOWER_IS_BETTER = ("ece", "nll")
GROUP_BY = ("threshold", "thirds")
GROUPS = ("many", "medium", "few")
ECE_BINS = 15  # Guo et al. (2017): 15 equal-width confidence bins
TOP_K = 5
# Up to this many classes the confusion matrix is kept (and written to confusion_<split>.npy); above it
# only on request (``LongTailMetrics(confusion=True)``, ``python -m lt_bench.eval confusion=true``).
CONFUSION_MAX_CLASSES = 100


def class_groups(
    class_counts: Sequence[int],
    many_threshold: int = 100,
    few_threshold: int = 20,
    group_by: str = "threshold",
) -> dict[str, list[int]]:
    """Class indices of the many / medium / few groups, by TRAINING count.

    ``threshold``: many = count > many_threshold, medium = few_threshold <= count <= many_threshold,
    few = count < few_threshold (the ImageNet-LT convention with the defaults).
    ``thirds``: classes ranked by count (largest first; ties keep class-index order) and cut into
    three parts of sizes ``round(C/3)``, ``round(2C/3) - round(C/3)`` and the rest.
    Either way every class is in exactly one group.
    """
    num = len(class_counts)
    if group_by == "thirds":
        order = sorted(range(num), key=lambda j: -class_counts[j])  # stable: ties by class index
        a, b = round(num / 3), round(2 * num / 3)
        return {"many": order[:a], "medium": order[a:b], "few": order[b:]}
    if group_by == "threshold":
        return {
            "many": [j for j, n in enumerate(class_counts) if n > many_threshold],
            "medium": [j for j, n in enumerate(class_counts) if few_threshold <= n <= many_threshold],
            "few": [j for j, n in enumerate(class_counts) if n < few_threshold],
        }
    raise ConfigError(f"dataset.group_by={group_by!r} is not known; choose one of: {', '.join(GROUP_BY)}")


# -- pure functions of the summed state -------------------------------------------------------------------
def confidence_bin(confidence: Tensor, bins: int = ECE_BINS) -> Tensor:
    """Bin index of each confidence in (0, 1]: bin ``b`` holds ``(b/B, (b+1)/B]`` (Guo et al.'s
    ``lower < conf <= upper``); a confidence of exactly 0 (impossible for a softmax) would go to bin 0."""
    return (confidence * bins).ceil().long().clamp(1, bins) - 1


def expected_calibration_error(count: Tensor, confidence_sum: Tensor, correct: Tensor) -> float | None:
    """``ECE = sum_b (n_b / N) |acc_b - conf_b| = (1/N) sum_b |correct_b - confidence_sum_b|``;
    None when no sample was binned."""
    n = float(count.sum())
    if n == 0:
        return None
    return float((correct.double() - confidence_sum.double()).abs().sum()) / n


def reliability(count: Tensor, confidence_sum: Tensor, correct: Tensor) -> dict[str, Any]:
    """One reliability diagram: per bin its sample count, mean confidence and accuracy (None when the
    bin is empty), and the ECE."""
    counts = [int(c) for c in count.tolist()]

    def per_bin(sums: Tensor) -> list[float | None]:
        return [float(s) / c if c else None for s, c in zip(sums.tolist(), counts, strict=True)]

    return {
        "count": counts,
        "confidence": per_bin(confidence_sum),
        "accuracy": per_bin(correct),
        "ece": expected_calibration_error(count, confidence_sum, correct),
    }


def recall_figures(correct: Tensor, total: Tensor, groups: dict[str, list[int]]) -> dict[str, Any]:
    """Top-1, balanced accuracy, group means, G-mean and per-class recall from per-class counts.

    Classes without an evaluated sample have recall None and are left out of every mean. G-mean is
    exactly 0 when an evaluated class has recall 0.
    """
    support = total.double()
    present = support > 0
    recall = correct.double() / support.clamp_min(1)
    n = int(total.sum())
    per_class = [r if p else None for r, p in zip(recall.tolist(), present.tolist(), strict=True)]
    observed = recall[present]

    def group_mean(members: list[int]) -> float | None:
        vals = [per_class[j] for j in members if per_class[j] is not None]
        return sum(vals) / len(vals) if vals else None

    if n == 0:  # nothing evaluated: no figure is defined
        top1 = balanced = gmean = None
    else:
        top1 = float(correct.sum()) / n
        balanced = float(observed.mean())
        # one class never recognised makes the geometric mean 0; log space avoids underflow
        gmean = 0.0 if bool((observed == 0).any()) else math.exp(float(observed.log().mean()))
    return {
        "top1": top1,
        "balanced_acc": balanced,
        **{g: group_mean(groups[g]) for g in GROUPS},
        "gmean": gmean,
        "per_class": per_class,
        "n": n,
    }


class LongTailMetrics(Metric):
    """Per-class counts, top-k, calibration and NLL for long-tailed classification.

    States (all summed across processes): ``correct`` and ``total`` [C] int64 (top-1 hits and samples
    per true class); ``topk_correct`` [] int64 (samples whose class is among the ``min(5, C)`` highest
    logits); ``nll_sum`` [] float64; ``bin_count``, ``bin_confidence``, ``bin_correct`` [3, 15] (per
    many/medium/few group of the true class, per confidence bin); and ``confusion`` [C, C] int64 (rows =
    true class, columns = predicted) when ``confusion`` is True, or None and C <= CONFUSION_MAX_CLASSES.

    :meth:`update` takes logits: the prediction is their argmax, the probabilities their softmax.
    :meth:`compute` returns the keys of ``summary.json["test"]``: ``top1``, ``balanced_acc``, ``many``,
    ``medium``, ``few``, ``gmean``, ``top5``, ``ece``, ``nll``, ``per_class``, ``n``, ``calibration`` and
    ``confusion`` (a CPU tensor, or None when not kept; the run writes it beside summary.json).
    """

    # update() only adds counts, so torchmetrics may evaluate forward() on a fresh state and merge
    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    correct: Tensor
    total: Tensor
    topk_correct: Tensor
    nll_sum: Tensor
    bin_count: Tensor
    bin_confidence: Tensor
    bin_correct: Tensor
    confusion: Tensor

    def __init__(
        self,
        num_classes: int,
        class_counts: Sequence[int],
        many_threshold: int = 100,
        few_threshold: int = 20,
        group_by: str = "threshold",
        confusion: bool | None = None,
        **kwargs: Any,
    ) -> None:
        """``class_counts`` are the training counts that define the groups; ``confusion``: keep the
        confusion matrix (None: when ``num_classes <= CONFUSION_MAX_CLASSES``); ``kwargs`` go to Metric."""
        super().__init__(**kwargs)
        if num_classes < 1:
            raise ConfigError(f"num_classes={num_classes}: a classifier needs at least one class")
        counts = [int(n) for n in class_counts]
        if len(counts) != num_classes:
            raise ConfigError(
                f"{len(counts)} class counts were given for {num_classes} classes; "
                "pass one training count per class"
            )
        if any(n < 0 for n in counts):
            raise ConfigError(f"class counts must be >= 0, got {counts}")
        if few_threshold > many_threshold:
            raise ConfigError(
                f"dataset.few_threshold ({few_threshold}) must be <= "
                f"dataset.many_threshold ({many_threshold})"
            )
        self.settings = dict(
            num_classes=num_classes,
            class_counts=counts,
            many_threshold=many_threshold,
            few_threshold=few_threshold,
            group_by=group_by,
        )
        self.num_classes = num_classes
        self.class_counts = counts
        self.top_k = min(TOP_K, num_classes)
        self.groups = class_groups(counts, many_threshold, few_threshold, group_by)
        group_of = torch.empty(num_classes, dtype=torch.long)
        for g, name in enumerate(GROUPS):
            group_of[self.groups[name]] = g
        self.register_buffer("group_of", group_of, persistent=False)
        self.keeps_confusion = num_classes <= CONFUSION_MAX_CLASSES if confusion is None else bool(confusion)

        def state(name: str, shape: tuple[int, ...], dtype: torch.dtype) -> None:
            self.add_state(name, default=torch.zeros(shape, dtype=dtype), dist_reduce_fx="sum")

        state("correct", (num_classes,), torch.int64)
        state("total", (num_classes,), torch.int64)
        state("topk_correct", (), torch.int64)
        state("nll_sum", (), torch.float64)
        state("bin_count", (len(GROUPS), ECE_BINS), torch.int64)
        state("bin_confidence", (len(GROUPS), ECE_BINS), torch.float64)
        state("bin_correct", (len(GROUPS), ECE_BINS), torch.int64)
        if self.keeps_confusion:
            state("confusion", (num_classes, num_classes), torch.int64)

    def like(self, **changes: Any) -> LongTailMetrics:
        """A fresh metric with this one's settings, some changed (e.g. ``confusion=True``)."""
        return LongTailMetrics(**{**self.settings, "confusion": self.keeps_confusion, **changes})

    def update(self, logits: Tensor, targets: Tensor) -> None:
        """Count a batch of logits [B, C] (float) against integer targets [B]."""
        num = self.num_classes
        if logits.ndim != 2 or logits.shape[1] != num or not logits.is_floating_point():
            raise ValueError(
                f"logits of dtype {logits.dtype} and shape {tuple(logits.shape)} given to a {num}-class "
                f"metric; pass float scores [B, {num}]"
            )
        if targets.ndim != 1 or targets.shape[0] != logits.shape[0]:
            raise ValueError(
                f"targets of shape {tuple(targets.shape)} do not match {logits.shape[0]} predictions"
            )
        if targets.numel() == 0:
            return
        targets = targets.long()
        # a negative index would wrap round into another class silently, and a too-large one is a
        # device-side assert on CUDA (fatal to the process): name the problem instead
        if bool(((targets < 0) | (targets >= num)).any()):
            raise DataError(
                f"class indices must lie in [0, {num - 1}], got labels in "
                f"[{int(targets.min())}, {int(targets.max())}]; check the dataset's labels and num_classes"
            )
        # the prediction is the argmax of the logits as given (ties: lowest index). log p_j = z_j - lse(z)
        # in the logits' own precision (float64 would cost 5x at 8,142 classes and add nothing to float32
        # outputs); the sums over samples are float64, so they lose nothing however many samples there are
        preds = logits.argmax(dim=1)
        log_normaliser = logits.logsumexp(dim=1).double()

        def logit_of(index: Tensor) -> Tensor:
            return logits.gather(1, index[:, None]).squeeze(1).double()

        hit = preds == targets
        ones = torch.ones_like(targets)
        # accumulate into the touched entries only: nothing of size C x C is allocated per batch
        self.correct.index_put_((targets,), hit.long(), accumulate=True)
        self.total.index_put_((targets,), ones, accumulate=True)
        top = logits.topk(self.top_k, dim=1).indices
        self.topk_correct += (top == targets[:, None]).any(dim=1).sum()
        self.nll_sum += (log_normaliser - logit_of(targets)).sum()
        confidence = (logit_of(preds) - log_normaliser).exp()  # the predicted class's probability
        cell = (self.group_of[targets], confidence_bin(confidence))
        self.bin_count.index_put_(cell, ones, accumulate=True)
        self.bin_confidence.index_put_(cell, confidence, accumulate=True)
        self.bin_correct.index_put_(cell, hit.long(), accumulate=True)
        if self.keeps_confusion:
            self.confusion.index_put_((targets, preds), ones, accumulate=True)

    def compute(self) -> dict[str, Any]:
        """Every figure from the (globally summed) state; see the class docstring."""
        result = recall_figures(self.correct.detach().cpu(), self.total.detach().cpu(), self.groups)
        n = result["n"]
        bins = (self.bin_count, self.bin_confidence, self.bin_correct)
        count, conf, correct = (t.detach().cpu() for t in bins)
        calibration: dict[str, Any] = {"bins": ECE_BINS}
        calibration["all"] = reliability(count.sum(0), conf.sum(0), correct.sum(0))
        for g, name in enumerate(GROUPS):
            calibration[name] = reliability(count[g], conf[g], correct[g])
        result.update(
            top5=float(self.topk_correct) / n if n else None,
            ece=calibration["all"]["ece"],
            nll=float(self.nll_sum) / n if n else None,
            calibration=calibration,
            confusion=self.confusion.detach().cpu().clone() if self.keeps_confusion else None,
        )
        return result


def scalar_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The single-number figures of a :meth:`LongTailMetrics.compute` result, for logging (None skipped)."""
    return {k: float(result[k]) for k in SCALAR_KEYS if result.get(k) is not None}
