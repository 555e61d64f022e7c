"""Long-tail evaluation: one confusion-matrix state, every reported figure derived from it.

Keeping the confusion matrix as the only state makes distributed evaluation exact: the per-process
matrices are summed, so each test sample counts once and every derived figure (top-1, balanced
accuracy, group means, G-mean) is computed from the same global counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from lt_bench.errors import ConfigError, DataError

#: Keys of :meth:`LongTailMetrics.compute` that are single numbers (``None`` when undefined).
SCALAR_KEYS = ("top1", "balanced_acc", "many", "medium", "few", "gmean")
GROUP_BY = ("threshold", "thirds")


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


class LongTailMetrics(Metric):
    """Confusion-matrix metric for long-tailed classification.

    State: ``confusion`` [C, C] int64 (rows = true class, columns = predicted), summed across
    processes. :meth:`compute` returns the keys of ``summary.json["test"]``: ``top1``,
    ``balanced_acc``, ``many``, ``medium``, ``few``, ``gmean``, ``per_class``, ``n``, ``confusion``.
    """

    # update() only adds counts, so torchmetrics may evaluate forward() on a fresh state and merge
    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    confusion: Tensor

    def __init__(
        self,
        num_classes: int,
        class_counts: Sequence[int],
        many_threshold: int = 100,
        few_threshold: int = 20,
        group_by: str = "threshold",
        **kwargs: Any,
    ) -> None:
        """``class_counts`` are the training counts that define the groups; ``kwargs`` go to Metric."""
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
        self.num_classes = num_classes
        self.class_counts = counts
        self.groups = class_groups(counts, many_threshold, few_threshold, group_by)
        self.add_state(
            "confusion",
            default=torch.zeros(num_classes, num_classes, dtype=torch.int64),
            dist_reduce_fx="sum",
        )

    def update(self, preds: Tensor, targets: Tensor) -> None:
        """Count a batch: ``preds`` are logits/scores [B, C] (argmax taken) or class indices [B]."""
        num = self.num_classes
        if preds.ndim == 2:
            if preds.shape[1] != num:
                raise ValueError(f"scores of shape {tuple(preds.shape)} given to a {num}-class metric")
            preds = preds.argmax(dim=1)
        elif preds.ndim != 1 or preds.is_floating_point():
            raise ValueError(
                f"preds must be scores [B, {num}] or integer class indices [B], "
                f"got {preds.dtype} of shape {tuple(preds.shape)}"
            )
        if targets.ndim != 1 or targets.shape[0] != preds.shape[0]:
            raise ValueError(
                f"targets of shape {tuple(targets.shape)} do not match {preds.shape[0]} predictions"
            )
        if targets.numel() == 0:
            return
        preds, targets = preds.long(), targets.long()
        # a negative index would wrap round into another cell silently, and a too-large one is a
        # device-side assert on CUDA (fatal to the process): name the problem instead
        outside = (targets < 0) | (targets >= num) | (preds < 0) | (preds >= num)
        if bool(outside.any()):
            raise DataError(
                f"class indices must lie in [0, {num - 1}], got labels in "
                f"[{int(targets.min())}, {int(targets.max())}] and predictions in "
                f"[{int(preds.min())}, {int(preds.max())}]; check the dataset's labels and num_classes"
            )
        # accumulate into the B touched cells only: a bincount over all C*C cells would allocate the
        # whole matrix every batch (530 MB at iNaturalist's 8,142 classes)
        self.confusion.index_put_((targets, preds), torch.ones_like(targets), accumulate=True)

    def compute(self) -> dict[str, Any]:
        """Every figure from the (globally summed) confusion matrix; see the class docstring."""
        cm = self.confusion.detach().cpu()
        cmf = cm.double()
        support = cmf.sum(dim=1)
        present = support > 0
        recall = cmf.diag() / support.clamp_min(1)
        n = int(cm.sum())
        per_class = [r if p else None for r, p in zip(recall.tolist(), present.tolist(), strict=True)]
        observed = recall[present]

        def group_mean(members: list[int]) -> float | None:
            vals = [per_class[j] for j in members if per_class[j] is not None]
            return sum(vals) / len(vals) if vals else None

        if n == 0:  # nothing evaluated: no figure is defined
            top1 = balanced = gmean = None
        else:
            top1 = float(cmf.diag().sum()) / n
            balanced = float(observed.mean())
            # one class never recognised makes the geometric mean 0; log space avoids underflow
            gmean = 0.0 if bool((observed == 0).any()) else math.exp(float(observed.log().mean()))
        return {
            "top1": top1,
            "balanced_acc": balanced,
            "many": group_mean(self.groups["many"]),
            "medium": group_mean(self.groups["medium"]),
            "few": group_mean(self.groups["few"]),
            "gmean": gmean,
            "per_class": per_class,
            "n": n,
            "confusion": cm.tolist(),
        }


def scalar_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The single-number figures of a :meth:`LongTailMetrics.compute` result, for logging (None skipped)."""
    return {k: float(result[k]) for k in SCALAR_KEYS if result.get(k) is not None}
